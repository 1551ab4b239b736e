package model

import (
	"cmp"
	"strings"
	"time"
)

// PathClaim is a path of a cluster's gateway, who claimed it (an Ingress
// of the gateway's class, or an export's) and when. A gateway serves every
// namespace on one host, so its paths belong to their first claimers: the
// federation marks a newer export that would take one PathCollision, and
// discovery leaves a newer Ingress path that would take one out.
type PathClaim struct {
	Namespace, Name string
	Path            string
	// Prefix says the path matches everything under it, not only itself.
	Prefix bool
	Since  time.Time
}

// Owner is the claimer's namespace/name.
func (c PathClaim) Owner() string { return c.Namespace + "/" + c.Name }

// Compare orders claims by age, the older first, then by owner (claims
// made in the same second).
func (c PathClaim) Compare(o PathClaim) int {
	return cmp.Or(c.Since.Compare(o.Since), cmp.Compare(c.Owner(), o.Owner()))
}

// Keeps reports whether the claim c, made first, keeps path from a newer
// claimer in namespace: the same path, or, from another namespace, a path
// under c's prefix (a longer prefix is matched first on the shared host,
// so it would take part of c's traffic). Within one namespace, longer
// prefixes under one's own are one's own to route.
func (c PathClaim) Keeps(namespace, path string) bool {
	if c.Path == path {
		return true
	}
	return c.Prefix && c.Namespace != namespace && c.Path != "/" && strings.HasPrefix(path, strings.TrimSuffix(c.Path, "/")+"/")
}
