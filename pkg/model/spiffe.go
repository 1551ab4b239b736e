package model

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// WorkloadID is the SPIFFE ID of a ServiceAccount in trustDomain:
// spiffe://<trust domain>/ns/<namespace>/sa/<name>. It fails on a trust
// domain, namespace or name a SPIFFE ID cannot hold.
func WorkloadID(trustDomain, namespace, serviceAccount string) (spiffeid.ID, error) {
	td, err := spiffeid.TrustDomainFromString(trustDomain)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("trust domain %q: %w", trustDomain, err)
	}
	id, err := spiffeid.FromSegments(td, "ns", namespace, "sa", serviceAccount)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("the identity of %s/%s: %w", namespace, serviceAccount, err)
	}
	return id, nil
}

// ParseWorkloadID reads the namespace and ServiceAccount a workload's
// SPIFFE ID names, which must be of trustDomain and of the form
// WorkloadID writes.
func ParseWorkloadID(u *url.URL, trustDomain string) (namespace, serviceAccount string, err error) {
	id, err := spiffeid.FromURI(u)
	if err != nil {
		return "", "", fmt.Errorf("%s is not a SPIFFE ID: %w", u, err)
	}
	if id.TrustDomain().Name() != trustDomain {
		return "", "", fmt.Errorf("%s is not an identity of trust domain %s", u, trustDomain)
	}
	// A SPIFFE ID's segments are never empty.
	parts := strings.Split(strings.TrimPrefix(id.Path(), "/"), "/")
	if len(parts) != 4 || parts[0] != "ns" || parts[2] != "sa" {
		return "", "", fmt.Errorf("%s is not spiffe://%s/ns/<namespace>/sa/<service account>", u, trustDomain)
	}
	return parts[1], parts[3], nil
}
