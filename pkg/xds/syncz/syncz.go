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
}
