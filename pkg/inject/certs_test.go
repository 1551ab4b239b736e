package inject

import (
	"crypto/x509"
	"testing"
	"time"

	"github.com/fleetmesh/fleetmesh/pkg/pki"
)

// verify checks the serving certificate as the API server does: against
// the caBundle, for the Service's name, at time now.
func verify(t *testing.T, data map[string][]byte, now time.Time) *x509.Certificate {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data[keyCACert]) {
		t.Fatal("no CA in the bundle")
	}
	leaf := pki.ParseCert(data[keyCert])
	if leaf == nil {
		t.Fatal("no serving certificate")
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "fleetmesh-controller.fleetmesh-system.svc", CurrentTime: now}); err != nil {
		t.Fatalf("the serving certificate does not verify: %v", err)
	}
	return leaf
}

func TestCertificatesAreIssuedRenewedAndTheCARotatesWithOverlap(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	m := NewCertManager(nil, CertOptions{Namespace: "fleetmesh-system", ServiceName: "fleetmesh-controller", Validity: 30 * 24 * time.Hour})
	at := func(d time.Duration) time.Time { return start.Add(d) }

	m.now = func() time.Time { return start }
	first, changed, err := m.renew(nil)
	if err != nil || !changed {
		t.Fatalf("first issue: %v %v", changed, err)
	}
	leaf1 := verify(t, first, start)

	// Early on, nothing changes.
	m.now = func() time.Time { return at(5 * 24 * time.Hour) }
	if _, changed, _ := m.renew(first); changed {
		t.Error("renewed a fresh certificate")
	}

	// With a third of its life left the serving certificate is renewed
	// under the same CA: the caBundle does not change.
	m.now = func() time.Time { return at(21 * 24 * time.Hour) }
	second, changed, err := m.renew(first)
	if err != nil || !changed {
		t.Fatalf("renewal: %v %v", changed, err)
	}
	leaf2 := verify(t, second, at(21*24*time.Hour))
	if leaf2.SerialNumber.Cmp(leaf1.SerialNumber) == 0 || string(second[keyCACert]) != string(first[keyCACert]) {
		t.Error("want a new serving certificate under the same CA")
	}

	// Near the CA's end a new CA signs; the bundle keeps the old one while
	// it is valid, so a replica still serving the old certificate is
	// trusted during the rollout.
	late := at(250 * 24 * time.Hour)
	m.now = func() time.Time { return late }
	third, changed, err := m.renew(second)
	if err != nil || !changed {
		t.Fatalf("CA rotation: %v %v", changed, err)
	}
	verify(t, third, late)
	verify(t, map[string][]byte{keyCACert: third[keyCACert], keyCert: second[keyCert]}, at(21*24*time.Hour))
	if n := len(pki.ParseCerts(third[keyCACert])); n != 2 {
		t.Errorf("the bundle holds %d CAs, want the old and the new", n)
	}
}
