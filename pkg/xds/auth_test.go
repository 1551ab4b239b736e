package xds

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"net/url"
	"strings"
	"testing"

	"github.com/fleetmesh/fleetmesh/pkg/xds/syncz"
)

func TestAWorkloadCertificateNamesItsIdentity(t *testing.T) {
	cert := func(cn string, uris ...string) *x509.Certificate {
		c := &x509.Certificate{Subject: pkix.Name{CommonName: cn}}
		for _, u := range uris {
			parsed, err := url.Parse(u)
			if err != nil {
				t.Fatal(err)
			}
			c.URIs = append(c.URIs, parsed)
		}
		return c
	}
	got, err := identityOf(cert("curl-1", "spiffe://cluster.local/ns/curl/sa/curl"), "cluster.local")
	if err != nil || !got.same(Identity{Namespace: "curl", ServiceAccount: "curl", Pod: "curl-1"}) ||
		got.Credential.Kind != syncz.CredentialCertificate || got.Credential.Identity != "spiffe://cluster.local/ns/curl/sa/curl" {
		t.Fatalf("identityOf = %+v, %v", got, err)
	}
	for _, tt := range []struct {
		cert *x509.Certificate
		want string
	}{
		{cert(""), "0 URI names"},
		{cert("", "spiffe://cluster.local/ns/a/sa/b", "spiffe://cluster.local/ns/c/sa/d"), "2 URI names"},
		{cert("", "spiffe://other.domain/ns/a/sa/b"), "not an identity of trust domain cluster.local"},
		{cert("", "https://cluster.local/ns/a/sa/b"), "is not a SPIFFE ID"},
		{cert("", "spiffe://cluster.local/ns/a"), "not spiffe://cluster.local/ns/<namespace>/sa/<service account>"},
		{cert("", "spiffe://cluster.local/ns//sa/b"), "empty segments"},
		{cert("", "spiffe://cluster.local/sa/b/ns/a"), "not spiffe://"},
	} {
		if _, err := identityOf(tt.cert, "cluster.local"); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: err = %v, want one saying %q", tt.cert.URIs, err, tt.want)
		}
	}
}
