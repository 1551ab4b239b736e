package federation

import (
	"context"
	"crypto/sha256"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
	"github.com/fleetmesh/fleetmesh/pkg/signer"
)

// The fleet's trust. Each member's workload signer has a CA of its own and
// publishes its roots in the ConfigMap signer.RootsConfigMap of its
// namespace. For a pod of one member to take mesh mTLS from a pod of
// another, it must trust that member's roots too: the federation reads
// every member's roots and writes the others' into each member, as the
// ConfigMap signer.FleetRootsConfigMap (a key <member>.pem each). The
// member's signer publishes them to its pods (a ClusterTrustBundle of its
// signer, which the pods' identity volumes project beside its own).
//
// A member that cannot be reached keeps its roots trusted (the last ones
// read); a member that leaves the fleet (its Cluster is deleted) is no
// longer trusted anywhere.

// rootsCache scopes a member's cache of ConfigMaps to its roots: the
// federation may read no other ConfigMap.
func rootsCache(namespace string) cache.ByObject {
	return signer.ConfigMapCache(namespace, signer.RootsConfigMap)
}

// readRoots reads a member's roots, with its CA's endorsements of its
// renewals after them (the other members' signers trust a renewed CA by
// them: they are carried with the roots), and the trust domain its signer
// issues identities in, from its cache: nothing when it has no workload
// signer.
func readRoots(ctx context.Context, r client.Reader, namespace string) ([]byte, string, error) {
	cm := &corev1.ConfigMap{}
	err := r.Get(ctx, client.ObjectKey{Namespace: namespace, Name: signer.RootsConfigMap}, cm)
	if err != nil {
		return nil, "", client.IgnoreNotFound(err)
	}
	roots := cm.Data[signer.RootsKey]
	if e := cm.Data[signer.EndorsementsKey]; e != "" {
		roots = strings.TrimRight(roots, "\n") + "\n" + e
	}
	return []byte(roots), cm.Data[signer.TrustDomainKey], nil
}

// trustDomainOutliers names the known members whose signers issue
// identities in another trust domain than the fleet's (the one most
// members use; of equals, the first by name), with theirs. A fleet has one
// trust domain: a workload accepts mTLS only from identities of its own.
func trustDomainOutliers(members []*Member) (fleet string, outliers map[string]string) {
	count := map[string]int{}
	for _, m := range members {
		if m.Known && m.TrustDomain != "" {
			count[m.TrustDomain]++
		}
	}
	for _, td := range slices.Sorted(maps.Keys(count)) {
		if count[td] > count[fleet] {
			fleet = td
		}
	}
	outliers = map[string]string{}
	for _, m := range members {
		if m.Known && m.TrustDomain != "" && m.TrustDomain != fleet {
			outliers[m.name()] = m.TrustDomain
		}
	}
	return fleet, outliers
}

// warnTrustDomains records a Warning on the Cluster of each member whose
// trust domain is not the fleet's, once for each domain it takes.
func (f *Federation) warnTrustDomains(clusters []fmv1alpha1.Cluster, members []*Member) {
	fleet, outliers := trustDomainOutliers(members)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.warnedTrustDomain == nil {
		f.warnedTrustDomain = map[string]string{}
	}
	for i := range clusters {
		c := &clusters[i]
		td, ok := outliers[c.Name]
		if !ok {
			delete(f.warnedTrustDomain, c.Name)
			continue
		}
		if f.warnedTrustDomain[c.Name] == td {
			continue
		}
		f.warnedTrustDomain[c.Name] = td
		f.events.Eventf(c, nil, corev1.EventTypeWarning, ReasonTrustDomainMismatch, "CheckTrust",
			"the member's workload signer issues identities in trust domain %q, the rest of the fleet in %q: its workloads and the others' refuse each other's mTLS; give every member's fleetmesh-controller the same --trust-domain", td, fleet)
	}
}

// ReasonTrustDomainMismatch is the Warning event of a member whose trust
// domain is not the fleet's.
const ReasonTrustDomainMismatch = "TrustDomainMismatch"

// keepRoots records the roots of the members read in this sync, keeps
// those of the members that could not be, forgets those of members that
// left, and returns what each member's fleet roots ConfigMap should hold:
// every other member's roots, by member name.
func (f *Federation) keepRoots(members []*Member) map[string]map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.roots == nil {
		f.roots = map[string][]byte{}
	}
	present := map[string]bool{}
	for _, m := range members {
		present[m.name()] = true
		if m.Known {
			if len(m.Roots) > 0 {
				f.roots[m.name()] = m.Roots
			} else {
				delete(f.roots, m.name())
			}
		}
	}
	for name := range f.roots {
		if !present[name] {
			delete(f.roots, name)
		}
	}
	out := map[string]map[string]string{}
	for _, m := range members {
		data := map[string]string{}
		for name, roots := range f.roots {
			if name != m.name() {
				data[name+".pem"] = string(roots)
			}
		}
		out[m.name()] = data
	}
	return out
}

// fleetRootsObject is the ConfigMap of a member's fleet roots.
func fleetRootsObject(namespace string, data map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{
			Namespace: namespace, Name: signer.FleetRootsConfigMap,
			Labels: map[string]string{fmv1alpha1.ManagedByLabel: fmv1alpha1.ManagedByValue},
		},
		Data: data,
	}
}

// rootsHash identifies a fleet roots ConfigMap's content.
func rootsHash(data map[string]string) [32]byte {
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k + "\x00" + data[k] + "\x00")
	}
	return sha256.Sum256([]byte(b.String()))
}

// fleetRoots queues the write of a member's fleet roots, unless this
// federation already wrote the same.
func (q *writeQueue) fleetRoots(ctx context.Context, f *Federation, w *writer, m *Member, namespace string, data map[string]string) {
	sum := rootsHash(data)
	f.mu.Lock()
	done := f.rootsWritten[m.name()] == sum
	f.mu.Unlock()
	if done {
		return
	}
	q.add(phaseObjects, "write the fleet's workload roots", func() error {
		if err := w.apply(ctx, fleetRootsObject(namespace, data)); err != nil {
			return err
		}
		f.mu.Lock()
		if f.rootsWritten == nil {
			f.rootsWritten = map[string][32]byte{}
		}
		f.rootsWritten[m.name()] = sum
		f.mu.Unlock()
		return nil
	})
}
