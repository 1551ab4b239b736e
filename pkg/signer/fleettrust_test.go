package signer

import (
	"crypto/x509"
	"slices"
	"testing"
	"time"

	"github.com/fleetmesh/fleetmesh/pkg/pki"
)

// member is a member's CA as its signer keeps it, renewed by StageCA.
type member struct {
	files pki.CAFiles
	now   time.Time
}

func newMember(t *testing.T) *member {
	t.Helper()
	m := &member{now: time.Now()}
	m.stage(t, pki.StageOptions{})
	return m
}

func (m *member) stage(t *testing.T, o pki.StageOptions) {
	t.Helper()
	o.Validity, o.Overlap, o.MaxTTL = 30*24*time.Hour, time.Hour, 24*time.Hour
	files, _, _, err := pki.StageCA("test-ca", m.files, m.now, o)
	if err != nil {
		t.Fatal(err)
	}
	m.files = files
}

// offer is what the federation carries of the member: its roots and
// endorsements.
func (m *member) offer() []byte {
	return append(m.files.Roots(), m.files.Endorsements...)
}

func (m *member) roots() []*x509.Certificate { return pki.ParseCerts(m.files.Roots()) }

func published(d FleetTrustDecision, certs ...*x509.Certificate) bool {
	if len(d.Publish) != len(certs) {
		return false
	}
	for _, c := range certs {
		if !slices.ContainsFunc(d.Publish, c.Equal) {
			return false
		}
	}
	return true
}

func TestAMembersCAIsTrustedFirstByUseOrApprovalThenByItsOwnEndorsement(t *testing.T) {
	one := newMember(t)
	first := one.roots()

	d := DecideFleetTrust(FleetTrustFirstUse, map[string][]byte{"cluster-1": one.offer()}, nil)
	if !published(d, first...) || len(d.Pending) != 0 {
		t.Fatalf("first-use: a member first seen is not trusted: %d published, %d pending", len(d.Publish), len(d.Pending))
	}
	if d := DecideFleetTrust(FleetTrustPinned, map[string][]byte{"cluster-1": one.offer()}, nil); len(d.Publish) != 0 || len(d.Pending["cluster-1"]) != 1 {
		t.Fatalf("pinned: a member first seen is trusted before it is approved: %d published, %d pending", len(d.Publish), len(d.Pending["cluster-1"]))
	}
	accepted := d.Accepted

	// The member renews its CA: the new one is staged, endorsed by the
	// old, and trusted by it.
	one.stage(t, pki.StageOptions{Rotate: true})
	renewed := one.roots()
	if len(renewed) != 2 {
		t.Fatalf("the renewal staged %d roots", len(renewed))
	}
	d = DecideFleetTrust(FleetTrustPinned, map[string][]byte{"cluster-1": one.offer()}, accepted)
	if !published(d, renewed...) || len(d.Pending) != 0 {
		t.Fatalf("a renewed CA endorsed by the trusted one is not trusted: %d published, pending %v", len(d.Publish), d.Pending)
	}
	accepted = d.Accepted

	// The old CA retires: the record follows.
	one.now = one.now.Add(2 * time.Hour)
	one.stage(t, pki.StageOptions{})
	one.now = one.now.Add(25 * time.Hour)
	one.stage(t, pki.StageOptions{})
	if len(one.roots()) != 1 {
		t.Fatalf("the old CA did not retire: %d roots", len(one.roots()))
	}
	d = DecideFleetTrust(FleetTrustPinned, map[string][]byte{"cluster-1": one.offer()}, accepted)
	if !published(d, one.roots()...) || len(d.Accepted["cluster-1"]) != 1 {
		t.Fatalf("after the old CA retired: %d published, %d accepted", len(d.Publish), len(d.Accepted["cluster-1"]))
	}
	accepted = d.Accepted
	current := one.roots()

	// Whoever holds the federation's credentials offers CAs of its own.
	evil := newMember(t)
	evil.stage(t, pki.StageOptions{Rotate: true}) // endorsed, by its own key
	for name, offer := range map[string][]byte{
		"in place of the member's CA, endorsed by its own": evil.offer(),
		"beside the member's CA, endorsed by its own":      append(one.offer(), evil.offer()...),
		"beside the member's CA, unendorsed":               append(one.offer(), pki.PEMCert(evil.roots()[1].Raw)...),
	} {
		d := DecideFleetTrust(FleetTrustFirstUse, map[string][]byte{"cluster-1": offer}, accepted)
		for _, c := range evil.roots() {
			if slices.ContainsFunc(d.Publish, c.Equal) {
				t.Errorf("%s: a CA the member never endorsed is trusted for it", name)
			}
		}
		if len(d.Pending["cluster-1"]) == 0 {
			t.Errorf("%s: nothing waits for approval", name)
		}
		if !slices.ContainsFunc(d.Accepted["cluster-1"], current[0].Equal) {
			t.Errorf("%s: the member's own CA left the record", name)
		}
	}
	// Offering nothing of the member, then a CA of its own, is the same.
	d = DecideFleetTrust(FleetTrustFirstUse, map[string][]byte{}, accepted)
	if len(d.Publish) != 0 || !slices.ContainsFunc(d.Accepted["cluster-1"], current[0].Equal) {
		t.Fatal("a member no longer offered is forgotten: it could be brought back with any CA")
	}
	d = DecideFleetTrust(FleetTrustFirstUse, map[string][]byte{"cluster-1": evil.offer()}, d.Accepted)
	if len(d.Publish) != 0 {
		t.Fatal("a member offered again with a CA of another's is trusted")
	}
	// A compromised CA is replaced at once, unendorsed: the fleet waits
	// for its operators.
	one.stage(t, pki.StageOptions{Emergency: true})
	if d := DecideFleetTrust(FleetTrustFirstUse, map[string][]byte{"cluster-1": one.offer()}, accepted); len(d.Publish) != 0 || len(d.Pending["cluster-1"]) != 1 {
		t.Fatalf("an emergency rotation's CA is trusted without approval: %d published", len(d.Publish))
	}
}
