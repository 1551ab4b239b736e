package model

import (
	"testing"
	"time"
)

func TestAPathClaimKeepsItsPathAndAnotherNamespacesPathsUnderIt(t *testing.T) {
	shop := PathClaim{Namespace: "shop", Name: "web", Path: "/shop", Prefix: true}
	for _, tt := range []struct {
		claim     PathClaim
		namespace string
		path      string
		keeps     bool
	}{
		{shop, "other", "/shop", true},
		{shop, "shop", "/shop", true},
		{shop, "other", "/shop/admin", true},
		{shop, "shop", "/shop/admin", false},
		{shop, "other", "/shopping", false},
		{PathClaim{Namespace: "shop", Path: "/shop/", Prefix: true}, "other", "/shop/admin", true},
		{PathClaim{Namespace: "shop", Path: "/shop"}, "other", "/shop/admin", false},
		{PathClaim{Namespace: "shop", Path: "/", Prefix: true}, "other", "/shop", false},
	} {
		if got := tt.claim.Keeps(tt.namespace, tt.path); got != tt.keeps {
			t.Errorf("%+v keeps %s of namespace %s: %v, want %v", tt.claim, tt.path, tt.namespace, got, tt.keeps)
		}
	}
	older := PathClaim{Namespace: "b", Name: "x", Since: time.Unix(100, 0)}
	newer := PathClaim{Namespace: "a", Name: "x", Since: time.Unix(200, 0)}
	sameSecond := PathClaim{Namespace: "a", Name: "x", Since: time.Unix(100, 0)}
	if older.Compare(newer) >= 0 || sameSecond.Compare(older) >= 0 {
		t.Errorf("claims are ordered by age, then by owner")
	}
}
