// Package syncz holds what the debug API's /debug/syncz serves: every
// connected proxy and, per resource type, what it was sent, acknowledged
// and refused. It imports nothing of fleetmesh, so clients of the debug
// API (the CLI, tests) read it without the xDS server.
package syncz

import "time"

// TypeStatus is what one proxy was sent, acknowledged and refused of one
// resource type.
type TypeStatus struct {
	Sent       string    `json:"sent,omitempty"`
	SentAt     time.Time `json:"sentAt,omitzero"`
	Resources  int       `json:"resources"`
	Acked      string    `json:"acked,omitempty"`
	AckedAt    time.Time `json:"ackedAt,omitzero"`
	Nacked     string    `json:"nacked,omitempty"`
	NackedAt   time.Time `json:"nackedAt,omitzero"`
	NackError  string    `json:"nackError,omitempty"`
	Subscribed int       `json:"subscribed,omitempty"`
}

// State says whether the proxy holds what it was last sent: SYNCED,
// STALE (sent, not yet acknowledged) or NACKED (refused).
func (t *TypeStatus) State() string {
	switch {
	case t.Nacked != "" && t.Nacked == t.Sent:
		return "NACKED"
	case t.Sent != "" && t.Acked != t.Sent:
		return "STALE"
	}
	return "SYNCED"
}

// ProxyStatus is one connected proxy and its sync state per type.
type ProxyStatus struct {
	ID          string                 `json:"id"`
	Role        string                 `json:"role"`
	Cluster     string                 `json:"cluster,omitempty"`
	Namespace   string                 `json:"namespace,omitempty"`
	Pod         string                 `json:"pod,omitempty"`
	Delta       bool                   `json:"delta"`
	ConnectedAt time.Time              `json:"connectedAt"`
	Types       map[string]*TypeStatus `json:"types"`
	// Credential is what the proxy authenticated its stream with, when
	// the server authenticates proxies.
	Credential *Credential `json:"credential,omitempty"`
}

// The kinds of credential a proxy authenticates with.
const (
	CredentialCertificate = "certificate"
	CredentialToken       = "token"
)

// Credential is the credential a proxy presented on its xDS stream: a
// workload certificate or a ServiceAccount token.
type Credential struct {
	Kind string `json:"kind"`
	// Identity is the certificate's SPIFFE ID, or the token's user
	// (system:serviceaccount:<namespace>:<name>).
	Identity string `json:"identity"`
	// Serial is the certificate's serial number, in hex.
	Serial string `json:"serial,omitempty"`
	// NotBefore and NotAfter are when the credential was issued and when
	// it expires.
	NotBefore time.Time `json:"notBefore,omitzero"`
	NotAfter  time.Time `json:"notAfter,omitzero"`
}

// ExpiringShare is how little of its life a credential may have left
// before it is flagged EXPIRING: the kubelet renews pod certificates at
// about half their life and tokens at 80%, and a proxy reconnects (with
// what it holds then) at least every --xds-max-connection-age, so a
// stream whose credential is this close to its end belongs to a proxy
// that is not picking up renewals.
const ExpiringShare = 10

// Expiry says whether the credential is EXPIRED, EXPIRING (less than
// 1/ExpiringShare of its life left) or OK; "" when its life is unknown.
func (c *Credential) Expiry(now time.Time) string {
	switch {
	case c == nil || c.NotAfter.IsZero():
		return ""
	case !now.Before(c.NotAfter):
		return "EXPIRED"
	case !c.NotBefore.IsZero() && c.NotAfter.Sub(now) < c.NotAfter.Sub(c.NotBefore)/ExpiringShare:
		return "EXPIRING"
	}
	return "OK"
}
