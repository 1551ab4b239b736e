package pki

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"net/url"
	"testing"
	"time"
)

func TestACAIsRenewedWithAThirdLeftAndTheOldOneStaysTrusted(t *testing.T) {
	now := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	first, bundle, key, changed, err := EnsureCA("test-ca", nil, nil, now, 30*24*time.Hour)
	if err != nil || !changed || first.Cert == nil {
		t.Fatalf("a missing CA is made: %v %v", changed, err)
	}
	same, _, _, changed, err := EnsureCA("test-ca", bundle, key, now.Add(10*24*time.Hour), 30*24*time.Hour)
	if err != nil || changed || !same.Cert.Equal(first.Cert) {
		t.Fatalf("a CA with two thirds left is kept: changed %v, %v", changed, err)
	}
	renewed, bundle2, _, changed, err := EnsureCA("test-ca", bundle, key, now.Add(21*24*time.Hour), 30*24*time.Hour)
	if err != nil || !changed || renewed.Cert.Equal(first.Cert) {
		t.Fatalf("a CA with under a third left is renewed: changed %v, %v", changed, err)
	}
	if got := ParseCerts(bundle2); len(got) != 2 || !got[0].Equal(first.Cert) || !got[1].Equal(renewed.Cert) {
		t.Errorf("the bundle after renewal holds %d certificates, want the old one then the new one", len(got))
	}
}

func TestAWorkloadCertificateCarriesOnlyItsSPIFFEID(t *testing.T) {
	now := time.Now()
	ca, _, _, _, err := EnsureCA("test-ca", nil, nil, now, time.Hour*24)
	if err != nil {
		t.Fatal(err)
	}
	id := mustURL(t, "spiffe://cluster.local/ns/shop/sa/web")
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	small, _ := rsa.GenerateKey(rand.Reader, 2048)
	for name, tt := range map[string]struct {
		pub any
		ok  bool
	}{
		"ECDSA P-256": {&ec.PublicKey, true},
		"Ed25519":     {edPub, true},
		"RSA 2048":    {&small.PublicKey, false},
	} {
		der, err := Sign(Workload(id, now, now.Add(time.Hour)), tt.pub, ca)
		if !tt.ok {
			if !errors.Is(err, ErrUnsupportedKey) {
				t.Errorf("%s: err = %v, want ErrUnsupportedKey", name, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		leaf, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		if len(leaf.URIs) != 1 || leaf.URIs[0].String() != id.String() || len(leaf.DNSNames)+len(leaf.IPAddresses)+len(leaf.EmailAddresses) != 0 || leaf.Subject.CommonName != "" {
			t.Errorf("%s: the certificate names %v %v %v %q", name, leaf.URIs, leaf.DNSNames, leaf.IPAddresses, leaf.Subject.CommonName)
		}
		roots := x509.NewCertPool()
		roots.AddCert(ca.Cert)
		for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth} {
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestARenewedCAIsTrustedBeforeItSigns walks a CA through a renewal in
// two steps: staged (published, not signing) for the overlap, then
// signing, the old certificate still trusted.
func TestARenewedCAIsTrustedBeforeItSigns(t *testing.T) {
	now := time.Now()
	const validity, overlap = 30 * 24 * time.Hour, time.Hour
	o := StageOptions{Validity: validity, Overlap: overlap, MaxTTL: 24 * time.Hour}
	rotate := o
	rotate.Rotate = true
	files, first, changed, err := StageCA("test-ca", CAFiles{}, now, o)
	if err != nil || !changed || first.Cert == nil {
		t.Fatalf("no CA made: %v %v", changed, err)
	}
	// Fresh: nothing to do, even later.
	if _, ca, changed, _ := StageCA("test-ca", files, now.Add(10*24*time.Hour), o); changed || !ca.Cert.Equal(first.Cert) {
		t.Fatal("a fresh CA was changed")
	}
	// Asked to rotate: a new CA is staged; the first still signs.
	staged, ca, changed, err := StageCA("test-ca", files, now.Add(time.Minute), rotate)
	if err != nil || !changed || !ca.Cert.Equal(first.Cert) || len(staged.NextCert) == 0 {
		t.Fatalf("rotation: changed %v, signs with the first %v, staged %d bytes: %v", changed, ca.Cert.Equal(first.Cert), len(staged.NextCert), err)
	}
	if roots := ParseCerts(staged.Roots()); len(roots) != 2 {
		t.Fatalf("the staged CA is not published: %d roots", len(roots))
	}
	// Asked again within the overlap: nothing more.
	if _, ca, changed, _ := StageCA("test-ca", staged, now.Add(30*time.Minute), rotate); changed || !ca.Cert.Equal(first.Cert) {
		t.Fatal("a second rotation within the overlap changed the CA")
	}
	// After the overlap the staged CA signs; the first stays trusted.
	done, ca, changed, err := StageCA("test-ca", staged, now.Add(62*time.Minute), o)
	if err != nil || !changed || ca.Cert.Equal(first.Cert) || len(done.NextCert) != 0 {
		t.Fatalf("after the overlap: changed %v, still the first %v, staged left %d: %v", changed, ca.Cert.Equal(first.Cert), len(done.NextCert), err)
	}
	if !ParseCerts(staged.NextCert)[0].Equal(ca.Cert) {
		t.Fatal("what signs is not the CA that was staged")
	}
	if roots := ParseCerts(done.Roots()); len(roots) != 2 || !roots[0].Equal(first.Cert) {
		t.Fatalf("after the renewal the roots are %d, want the first and the new", len(roots))
	}
	// A workload certificate's life after it stopped signing, the first
	// CA is no longer trusted: nothing it signed is valid any more.
	if _, ca, changed, _ := StageCA("test-ca", done, now.Add(62*time.Minute+23*time.Hour), o); changed || len(ca.Bundle) != 2 {
		t.Fatalf("the first CA was dropped %s after it stopped signing, before what it signed expired", 23*time.Hour)
	}
	done, ca, changed, _ = StageCA("test-ca", done, now.Add(62*time.Minute+24*time.Hour), o)
	if !changed || len(ca.Bundle) != 1 || ca.Bundle[0].Equal(first.Cert) || len(ParseCerts(done.Roots())) != 1 {
		t.Fatalf("the first CA is still trusted a workload certificate's life after it stopped signing (%d roots)", len(ParseCerts(done.Roots())))
	}
	// A third of its life left: staged by itself.
	auto, ca, changed, _ := StageCA("test-ca", done, now.Add(62*time.Minute+21*24*time.Hour), o)
	if !changed || len(auto.NextCert) == 0 || ca.Cert.Equal(ParseCerts(auto.NextCert)[0]) {
		t.Fatal("a CA with a third of its life left was not staged")
	}
}

// TestACompromisedCAIsReplacedAtOnce: an emergency rotation makes a CA
// that signs at once and is the only one trusted, staged CA and older ones
// dropped.
func TestACompromisedCAIsReplacedAtOnce(t *testing.T) {
	now := time.Now()
	o := StageOptions{Validity: 30 * 24 * time.Hour, Overlap: time.Hour, MaxTTL: 24 * time.Hour}
	files, first, _, err := StageCA("test-ca", CAFiles{}, now, o)
	if err != nil {
		t.Fatal(err)
	}
	o.Rotate = true
	files, _, _, _ = StageCA("test-ca", files, now.Add(time.Minute), o)
	o.Rotate, o.Emergency = false, true
	files, ca, changed, err := StageCA("test-ca", files, now.Add(2*time.Minute), o)
	if err != nil || !changed {
		t.Fatalf("emergency: changed %v, %v", changed, err)
	}
	roots := ParseCerts(files.Roots())
	if len(roots) != 1 || !roots[0].Equal(ca.Cert) || ca.Cert.Equal(first.Cert) || len(files.NextCert) != 0 {
		t.Fatalf("after an emergency rotation %d roots are trusted, want the new CA alone", len(roots))
	}
}

// TestCAsStoredBeforeRetirementTimesAreRetiredAWorkloadLifeLater: a
// bundle stored before retirement times (an upgrade) keeps its old CAs a
// workload certificate's life from the first check, not the years to
// their expiry.
func TestCAsStoredBeforeRetirementTimesAreRetiredAWorkloadLifeLater(t *testing.T) {
	now := time.Now()
	o := StageOptions{Validity: 30 * 24 * time.Hour, Overlap: time.Hour, MaxTTL: 24 * time.Hour, Rotate: true}
	files, _, _, _ := StageCA("test-ca", CAFiles{}, now, o)
	files, _, _, _ = StageCA("test-ca", files, now, o)
	o.Rotate = false
	files, _, _, _ = StageCA("test-ca", files, now.Add(2*time.Hour), o)
	files.Retire = nil // as stored before
	upgraded, ca, changed, _ := StageCA("test-ca", files, now.Add(3*time.Hour), o)
	if !changed || len(ca.Bundle) != 2 || len(upgraded.Retire) != 1 {
		t.Fatalf("upgrade: changed %v, %d trusted, %d retirement times", changed, len(ca.Bundle), len(upgraded.Retire))
	}
	if _, ca, _, _ := StageCA("test-ca", upgraded, now.Add(27*time.Hour), o); len(ca.Bundle) != 1 {
		t.Fatalf("the old CA is trusted %s after the upgrade found it", 24*time.Hour)
	}
}
