package signer

import (
	"context"
	"crypto/x509"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/fleetmesh/fleetmesh/pkg/internal/recovered"
	"github.com/fleetmesh/fleetmesh/pkg/pki"
)

// The fleet's trust, as a member takes it. The federation carries every
// member's roots to the others (FleetRootsConfigMap), but whoever holds
// the federation's credentials must not be able to make a member's pods
// trust a CA of their own: a CA trusted there vouches for any SPIFFE ID.
// So the signer publishes to its pods only the CAs it accepted, and keeps
// what it accepted, per member, in FleetTrustConfigMap, which the
// federation may not write (the member's admission policy):
//   - a member's first roots are accepted when it is first seen
//     (FleetTrustFirstUse), or once this member's operator approves them
//     (FleetTrustPinned: `fleetmesh trust approve MEMBER`);
//   - a CA offered later for a member is accepted only when a CA already
//     accepted for it endorsed it (pki.Endorse: its signer endorses each
//     renewal with the key that signs until then); else it waits for the
//     operator, and is not published;
//   - a CA no longer offered (retired) is no longer published, and no
//     longer accepted once a CA of the member is offered still: offering
//     nothing for a member makes nothing new acceptable for it.

// FleetTrust is how a signer takes a member's first roots.
type FleetTrust string

// The ways of taking a member's first roots.
const (
	// FleetTrustFirstUse accepts a member's roots when it is first seen.
	// Whoever holds the federation's credentials cannot replace a known
	// member's CA, but can bring in a member of its own.
	FleetTrustFirstUse FleetTrust = "first-use"
	// FleetTrustPinned accepts a member's first roots only once this
	// member's operator approved them.
	FleetTrustPinned FleetTrust = "pinned"
)

// FleetTrustConfigMap is where, in the signer's namespace, it keeps what
// it accepted of the fleet's roots, <member>.accepted.pem, and what waits
// for its operator, <member>.pending.pem.
const FleetTrustConfigMap = "fleetmesh-fleet-trust"

// Keys of FleetTrustConfigMap.
const (
	acceptedSuffix = ".accepted.pem"
	pendingSuffix  = ".pending.pem"
)

// AcceptedKey is the key of a member's accepted CAs in
// FleetTrustConfigMap.
func AcceptedKey(member string) string { return member + acceptedSuffix }

// PendingKey is the key of a member's CAs that wait for approval in
// FleetTrustConfigMap.
func PendingKey(member string) string { return member + pendingSuffix }

// ParseFleetTrustKey is the member a key of FleetTrustConfigMap is of,
// and whether it holds CAs that wait (else those accepted); ok is false
// for a key of neither form.
func ParseFleetTrustKey(key string) (member string, pending, ok bool) {
	if member, ok = strings.CutSuffix(key, acceptedSuffix); ok {
		return member, false, true
	}
	member, ok = strings.CutSuffix(key, pendingSuffix)
	return member, ok, ok
}

// FleetTrustDecision is what a signer makes of the roots the federation
// offers.
type FleetTrustDecision struct {
	// Accepted and Pending are the new record, by member.
	Accepted, Pending map[string][]*x509.Certificate
	// Publish are the CAs the pods trust: those accepted and offered.
	Publish []*x509.Certificate
}

// DecideFleetTrust takes the roots offered, by member (PEM: certificates
// and the member's endorsements), and what was accepted before, and
// decides as the package doc says.
func DecideFleetTrust(mode FleetTrust, offered map[string][]byte, accepted map[string][]*x509.Certificate) FleetTrustDecision {
	d := FleetTrustDecision{Accepted: map[string][]*x509.Certificate{}, Pending: map[string][]*x509.Certificate{}}
	// What was accepted for a member not offered now stays on record.
	for m, certs := range accepted {
		if _, ok := offered[m]; !ok {
			d.Accepted[m] = certs
		}
	}
	for _, m := range slices.Sorted(maps.Keys(offered)) {
		certs := pki.ParseCerts(offered[m])
		before := accepted[m]
		if len(before) == 0 {
			if mode == FleetTrustFirstUse {
				d.Accepted[m] = certs
				d.Publish = append(d.Publish, certs...)
			} else if len(certs) > 0 {
				d.Pending[m] = certs
			}
			continue
		}
		// Offered and accepted before, then whatever those endorse, and
		// what the newly accepted endorse in turn.
		trusted := slices.DeleteFunc(slices.Clone(certs), func(c *x509.Certificate) bool { return !slices.ContainsFunc(before, c.Equal) })
		if len(trusted) == 0 {
			// Nothing of the member's known CAs is offered: nothing new
			// may be accepted by them, and the record stays.
			d.Accepted[m] = before
			d.Pending[m] = certs
			continue
		}
		for grew := true; grew; {
			grew = false
			for _, c := range certs {
				if !slices.ContainsFunc(trusted, c.Equal) && pki.Endorsed(c, offered[m], trusted) {
					trusted, grew = append(trusted, c), true
				}
			}
		}
		d.Accepted[m] = trusted
		d.Publish = append(d.Publish, trusted...)
		for _, c := range certs {
			if !slices.ContainsFunc(trusted, c.Equal) {
				d.Pending[m] = append(d.Pending[m], c)
			}
		}
	}
	return d
}

// fleetTrustData is the record's ConfigMap data.
func fleetTrustData(d FleetTrustDecision) map[string]string {
	out := map[string]string{}
	for m, certs := range d.Accepted {
		if len(certs) > 0 {
			out[AcceptedKey(m)] = pki.PEMCerts(certs)
		}
	}
	for m, certs := range d.Pending {
		if len(certs) > 0 {
			out[PendingKey(m)] = pki.PEMCerts(certs)
		}
	}
	return out
}

// readFleetTrust is the record of what was accepted, by member.
func readFleetTrust(cm *corev1.ConfigMap) map[string][]*x509.Certificate {
	out := map[string][]*x509.Certificate{}
	for k, v := range cm.Data {
		if m, pending, ok := ParseFleetTrustKey(k); ok && !pending {
			out[m] = pki.ParseCerts([]byte(v))
		}
	}
	return out
}

// fleetRecheck is how often a signer with roots waiting for approval
// looks for the approval.
const fleetRecheck = 30 * time.Second

// publishFleetRoots publishes, as the signer's second ClusterTrustBundle
// FleetTrustBundle, the other members' CAs it accepted of those the
// federation wrote into FleetRootsConfigMap (DecideFleetTrust), and keeps
// its record in FleetTrustConfigMap: pods project every trust bundle of
// the signer, so they trust the fleet's workload certificates. The bundle
// is deleted when there are none.
func (s *Signer) publishFleetRoots(ctx context.Context, _ reconcile.Request) (reconcile.Result, error) {
	var res reconcile.Result
	err := recovered.Call(func() error {
		cm := &corev1.ConfigMap{}
		err := s.reader.Get(ctx, client.ObjectKey{Namespace: s.opts.Namespace, Name: FleetRootsConfigMap}, cm)
		if client.IgnoreNotFound(err) != nil {
			return err
		}
		offered := map[string][]byte{}
		for k, v := range cm.Data {
			if m, ok := strings.CutSuffix(k, ".pem"); ok {
				offered[m] = []byte(v)
			}
		}
		record := &corev1.ConfigMap{}
		err = s.reader.Get(ctx, client.ObjectKey{Namespace: s.opts.Namespace, Name: FleetTrustConfigMap}, record)
		switch {
		case apierrors.IsNotFound(err):
			record = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: s.opts.Namespace, Name: FleetTrustConfigMap, Labels: managedBy()}}
		case err != nil:
			return fmt.Errorf("read ConfigMap %s/%s: %w", s.opts.Namespace, FleetTrustConfigMap, err)
		}
		d := DecideFleetTrust(s.fleetTrust(), offered, readFleetTrust(record))
		if data := fleetTrustData(d); !maps.Equal(data, record.Data) {
			for _, m := range slices.Sorted(maps.Keys(d.Pending)) {
				if record.Data[PendingKey(m)] != data[PendingKey(m)] {
					s.opts.Log.Info("fleet roots not trusted: not endorsed by a CA this member trusts for that member, or not approved; approve them with `fleetmesh trust approve` in this member if they are the member's",
						"member", m, "certificates", len(d.Pending[m]))
				}
			}
			record.Data = data
			if record.ResourceVersion == "" {
				err = s.client.Create(ctx, record)
			} else {
				err = s.client.Update(ctx, record)
			}
			if err != nil {
				return fmt.Errorf("record the fleet's trust in ConfigMap %s/%s: %w", s.opts.Namespace, FleetTrustConfigMap, err)
			}
		}
		if len(d.Pending) > 0 {
			res.RequeueAfter = fleetRecheck
		}
		if len(d.Publish) == 0 {
			err := s.client.Delete(ctx, &certificatesv1.ClusterTrustBundle{ObjectMeta: metav1.ObjectMeta{Name: FleetTrustBundle}})
			return client.IgnoreNotFound(err)
		}
		slices.SortFunc(d.Publish, func(a, b *x509.Certificate) int { return strings.Compare(pki.Fingerprint(a), pki.Fingerprint(b)) })
		d.Publish = slices.CompactFunc(d.Publish, func(a, b *x509.Certificate) bool { return a.Equal(b) })
		return s.publishBundle(ctx, FleetTrustBundle, []byte(pki.PEMCerts(d.Publish)))
	})
	return res, err
}

// fleetTrust is the signer's way of taking first roots.
func (s *Signer) fleetTrust() FleetTrust {
	if s.opts.FleetTrust == "" {
		return FleetTrustFirstUse
	}
	return s.opts.FleetTrust
}
