package federation

import (
	"maps"
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
)

// TestEachMemberTrustsTheOthersRoots walks the fleet's trust through its
// members' lives: each member gets every other member's roots; one that
// cannot be reached stays trusted with its last roots; one that stops
// publishing roots, or leaves the fleet, is trusted no more.
func TestEachMemberTrustsTheOthersRoots(t *testing.T) {
	f := &Federation{}
	member := func(name string, known bool, roots string) *Member {
		return &Member{Cluster: fmv1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: name}}, Known: known, Roots: []byte(roots)}
	}
	keys := func(data map[string]string) []string { return slices.Sorted(maps.Keys(data)) }

	got := f.keepRoots([]*Member{member("c1", true, "R1"), member("c2", true, "R2"), member("c3", true, "R3")})
	if k := keys(got["c1"]); !slices.Equal(k, []string{"c2.pem", "c3.pem"}) || got["c1"]["c2.pem"] != "R2" {
		t.Fatalf("c1 gets %v (%v), want c2's and c3's roots", k, got["c1"])
	}
	// c3 cannot be reached: its last roots stay trusted, and it is still
	// given the others'.
	got = f.keepRoots([]*Member{member("c1", true, "R1"), member("c2", true, "R2b"), member("c3", false, "")})
	if got["c1"]["c3.pem"] != "R3" || got["c1"]["c2.pem"] != "R2b" {
		t.Fatalf("with c3 unreachable, c1 gets %v, want c3's last roots R3 and c2's new R2b", got["c1"])
	}
	if k := keys(got["c3"]); !slices.Equal(k, []string{"c1.pem", "c2.pem"}) {
		t.Fatalf("c3 gets %v", k)
	}
	// c2 no longer publishes roots (its signer is off): nobody trusts it.
	got = f.keepRoots([]*Member{member("c1", true, "R1"), member("c2", true, ""), member("c3", false, "")})
	if _, ok := got["c1"]["c2.pem"]; ok {
		t.Fatalf("c1 still trusts c2, which publishes no roots: %v", got["c1"])
	}
	// c3 leaves the fleet (its Cluster is deleted).
	got = f.keepRoots([]*Member{member("c1", true, "R1"), member("c2", true, "")})
	if k := keys(got["c2"]); !slices.Equal(k, []string{"c1.pem"}) {
		t.Fatalf("after c3 left, c2 gets %v, want c1's roots only", k)
	}
}

// TestAMemberOfAnotherTrustDomainIsNamed finds the member whose signer
// issues identities in another trust domain than the rest of the fleet.
func TestAMemberOfAnotherTrustDomainIsNamed(t *testing.T) {
	member := func(name, td string, known bool) *Member {
		return &Member{Cluster: fmv1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: name}}, TrustDomain: td, Known: known}
	}
	fleet, outliers := trustDomainOutliers([]*Member{
		member("c1", "fleet.example", true), member("c2", "cluster.local", true), member("c3", "fleet.example", true),
		member("c4", "", true), member("c5", "other", false),
	})
	if fleet != "fleet.example" || len(outliers) != 1 || outliers["c2"] != "cluster.local" {
		t.Fatalf("fleet %q, outliers %v; want fleet.example and c2 (cluster.local) only", fleet, outliers)
	}
	if _, outliers := trustDomainOutliers([]*Member{member("c1", "a", true), member("c2", "a", true)}); len(outliers) != 0 {
		t.Fatalf("one trust domain, outliers %v", outliers)
	}
}
