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
