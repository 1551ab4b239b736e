package model

import (
	"net/url"
	"strings"
	"testing"
)

func TestAWorkloadIDIsWrittenAndReadTheSameWay(t *testing.T) {
	id, err := WorkloadID("fleet.example", "shop", "web")
	if err != nil || id.String() != "spiffe://fleet.example/ns/shop/sa/web" {
		t.Fatalf("WorkloadID = %v, %v", id, err)
	}
	ns, sa, err := ParseWorkloadID(id.URL(), "fleet.example")
	if err != nil || ns != "shop" || sa != "web" {
		t.Errorf("ParseWorkloadID = %q, %q, %v", ns, sa, err)
	}
	for _, tt := range []struct{ td, ns, sa, want string }{
		{"Fleet.Example", "shop", "web", "trust domain"},
		{"fleet.example", "shop", "a/b", "shop/a/b"},
		{"fleet.example", "", "web", "/web"},
	} {
		if _, err := WorkloadID(tt.td, tt.ns, tt.sa); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("WorkloadID(%q, %q, %q) = %v, want an error naming %q", tt.td, tt.ns, tt.sa, err, tt.want)
		}
	}
	if got := (&Mesh{TrustDomain: "fleet.example"}).SPIFFEID("shop", "a/b"); got != "" {
		t.Errorf("a name no identity can hold gave %q", got)
	}
	other, _ := url.Parse("spiffe://other.example/ns/shop/sa/web")
	if _, _, err := ParseWorkloadID(other, "fleet.example"); err == nil {
		t.Error("an identity of another trust domain was read")
	}
}
