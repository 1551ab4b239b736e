package cli

import (
	"testing"
	"time"

	"github.com/fleetmesh/fleetmesh/pkg/xds/syncz"
)

func TestACredentialNearItsEndIsFlagged(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	cert := func(issued, expires time.Duration) *syncz.Credential {
		return &syncz.Credential{Kind: syncz.CredentialCertificate, NotBefore: now.Add(issued), NotAfter: now.Add(expires)}
	}
	for _, tt := range []struct {
		c    *syncz.Credential
		want string
	}{
		{nil, "<none>"},
		{&syncz.Credential{Kind: syncz.CredentialToken}, "token"},
		{cert(-time.Minute, 59*time.Minute), "certificate 59m"},
		{cert(-55*time.Minute, 5*time.Minute), "certificate 5m EXPIRING"},
		{cert(-20*time.Hour, 4*time.Hour), "certificate 4h"},
		{cert(-23*time.Hour, time.Hour), "certificate 60m EXPIRING"},
		{cert(-2*time.Hour, -time.Second), "certificate EXPIRED"},
		{&syncz.Credential{Kind: syncz.CredentialToken, NotAfter: now.Add(time.Minute)}, "token 60s"},
	} {
		if got := credentialCell(tt.c, now); got != tt.want {
			t.Errorf("%+v: %q, want %q", tt.c, got, tt.want)
		}
	}
}
