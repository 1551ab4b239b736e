package federation

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
)

// FieldOwner is the field manager of every write the federation makes.
const FieldOwner = "fleetmesh-federation"

// writer writes to one member, counting and recording what it does.
type writer struct {
	client  client.Client
	metrics *metrics
	events  events.EventRecorder

	mu sync.Mutex
	// services are the Services it applied, by namespace/name, as the API
	// server holds them now (with the addresses it gave them).
	services map[string]*corev1.Service
}

func (w *writer) apply(ctx context.Context, obj client.Object) error {
	w.metrics.writes.WithLabelValues(kindOf(obj), "apply").Inc()
	u, err := apply(ctx, w.client, obj, FieldOwner)
	if _, ok := obj.(*corev1.Service); err != nil || !ok {
		return err
	}
	// A clusterset Service's addresses are its MCS import's, written in
	// the same sync.
	got := &corev1.Service{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, got); err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.services == nil {
		w.services = map[string]*corev1.Service{}
	}
	w.services[got.Namespace+"/"+got.Name] = got
	return nil
}

// applied is the Service of key (namespace/name) as this writer applied
// it, nil when it did not.
func (w *writer) applied(key string) *corev1.Service {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.services[key]
}

func (w *writer) applyStatus(ctx context.Context, obj client.Object) error {
	w.metrics.writes.WithLabelValues(kindOf(obj), "apply-status").Inc()
	return ApplyStatus(ctx, w.client, obj, FieldOwner)
}

func (w *writer) delete(ctx context.Context, obj client.Object) error {
	w.metrics.writes.WithLabelValues(kindOf(obj), "delete").Inc()
	return w.client.Delete(ctx, obj)
}

func kindOf(obj client.Object) string {
	if k := obj.GetObjectKind().GroupVersionKind().Kind; k != "" {
		return k
	}
	t := fmt.Sprintf("%T", obj)
	return t[strings.LastIndexByte(t, '.')+1:]
}

// Apply writes obj's metadata and spec (never its status) by server-side
// apply as field manager owner, taking over fields others set.
func Apply(ctx context.Context, c client.Client, obj client.Object, owner string) error {
	_, err := apply(ctx, c, obj, owner)
	return err
}

// apply is Apply, returning the object as the API server holds it now.
func apply(ctx context.Context, c client.Client, obj client.Object, owner string) (*unstructured.Unstructured, error) {
	u, err := toApply(obj)
	if err != nil {
		return nil, err
	}
	delete(u.Object, "status")
	return u, c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(owner), client.ForceOwnership)
}

// ApplyStatus writes obj's status (never its metadata or spec) by
// server-side apply as field manager owner, taking over fields others
// set.
func ApplyStatus(ctx context.Context, c client.Client, obj client.Object, owner string) error {
	u, err := toApply(obj)
	if err != nil {
		return err
	}
	delete(u.Object, "spec")
	return c.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(owner), client.ForceOwnership)
}

func toApply(obj client.Object) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{Object: m}
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(u.Object, "metadata", "resourceVersion")
	unstructured.RemoveNestedField(u.Object, "metadata", "managedFields")
	return u, nil
}

// hasLabels reports whether have carries every label of want.
func hasLabels(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

// applyMember writes one reachable member's share of the plan, touching
// only what differs, and deletes what fleetmesh wrote there before and no
// longer wants, except what came from a member that cannot be reached
// now. A user's objects are never touched. It returns every error,
// having tried every write. A member read for some services (its scope)
// is written those services' objects alone.
func applyMember(ctx context.Context, w *writer, m *Member, d *Desired, unknown map[string]bool) error {
	q := &writeQueue{member: m.name()}
	q.namespaces(ctx, w.client, m, d)
	if m.scope == nil {
		q.clusters(ctx, w, d)
	}
	q.imports(ctx, w, m, d, unknown)
	q.mcsImports(ctx, w, m, d, unknown)
	q.services(ctx, w, m, d, unknown)
	q.slices(ctx, w, m, d, unknown)
	q.ingresses(ctx, w, m, d)
	return q.run(ctx)
}

// writeExportStatus writes the conditions of the member's exports of
// either group, once every member's share of the plan is written.
func writeExportStatus(ctx context.Context, w *writer, m *Member, exports map[string][]metav1.Condition) error {
	q := &writeQueue{member: m.name()}
	q.exportStatus(ctx, w, m, exports)
	q.mcsExportStatus(ctx, w, m, exports)
	return q.run(ctx)
}

// phase orders a member's writes: the writes of one phase run side by
// side, and a phase starts once the one before it is done.
type phase int

const (
	// phaseNamespaces creates the namespaces the objects go in.
	phaseNamespaces phase = iota
	// phaseObjects writes imports, derived Services, EndpointSlices,
	// Ingresses and mirrored Clusters.
	phaseObjects
	// phaseClusterset writes what needs the Services the phase before
	// may have created: the MCS imports, whose clusterset IPs are their
	// addresses, and the EndpointSlices that join them (a member lets
	// the federation write a slice only for a Service it derived).
	phaseClusterset
	// phaseStatus writes their status. The exports' conditions are
	// written after, from what every member's writes did
	// (writeExportStatus).
	phaseStatus
	// phaseDeletes deletes what is no longer wanted and releases derived
	// Services users took over; what is already gone is done.
	phaseDeletes
	phases
)

// writeQueue is one member's writes, by phase, and their errors.
type writeQueue struct {
	member string
	ops    [phases][]func()
	mu     sync.Mutex
	errs   []error
}

// add queues a write; what names it in errors.
func (q *writeQueue) add(p phase, what string, write func() error) {
	q.ops[p] = append(q.ops[p], func() {
		err := write()
		if err == nil || (p == phaseDeletes && apierrors.IsNotFound(err)) {
			return
		}
		q.mu.Lock()
		q.errs = append(q.errs, fmt.Errorf("%s in %s: %w", what, q.member, err))
		q.mu.Unlock()
	})
}

// run runs the phases in order, writeWorkers writes at a time.
func (q *writeQueue) run(ctx context.Context) error {
	for _, ops := range q.ops {
		var g errgroup.Group
		g.SetLimit(writeWorkers)
		for _, op := range ops {
			if ctx.Err() != nil {
				break
			}
			g.Go(func() error { op(); return nil })
		}
		_ = g.Wait() // every write's error is in q.errs
	}
	if err := ctx.Err(); err != nil {
		q.errs = append(q.errs, fmt.Errorf("writing to %s: %w", q.member, err))
	}
	return errors.Join(q.errs...)
}

// kindSync is one kind's desired and existing objects in a member, by
// namespace/name (or name), and the rules of writing them.
type kindSync[T client.Object] struct {
	kind     string
	desired  map[string]T
	existing map[string]T
	// after, when set, is the phase its applies run in (else
	// phaseObjects).
	after phase
	// upToDate: cur needs no write to be want (or may not be written).
	upToDate func(cur, want T) bool
	// keep: cur, no longer desired, stays (a user's, or an unknown
	// member's contribution).
	keep func(key string, cur T) bool
}

// reconcileKind queues the applies of what is desired and not up to
// date, and the deletes of what exists, is not desired and is not kept.
func reconcileKind[T client.Object](ctx context.Context, q *writeQueue, w *writer, k kindSync[T]) {
	for key, want := range k.desired {
		if cur, ok := k.existing[key]; ok && k.upToDate(cur, want) {
			continue
		}
		q.add(max(k.after, phaseObjects), "apply "+k.kind+" "+key, func() error { return w.apply(ctx, want) })
	}
	for key, cur := range k.existing {
		if _, ok := k.desired[key]; !ok && !k.keep(key, cur) {
			q.add(phaseDeletes, "delete "+k.kind+" "+key, func() error { return w.delete(ctx, cur) })
		}
	}
}

func byKey[T client.Object](items []T, include func(T) bool) map[string]T {
	out := make(map[string]T, len(items))
	for _, o := range items {
		if include == nil || include(o) {
			key := o.GetName()
			if ns := o.GetNamespace(); ns != "" {
				key = ns + "/" + key
			}
			out[key] = o
		}
	}
	return out
}

// pointers is a slice's elements, as pointers.
func pointers[T any](items []T) []*T {
	out := make([]*T, len(items))
	for i := range items {
		out[i] = &items[i]
	}
	return out
}

func (q *writeQueue) namespaces(ctx context.Context, c client.Client, m *Member, d *Desired) {
	have := map[string]bool{}
	for _, ns := range m.Namespaces {
		have[ns.Name] = true
	}
	for _, ns := range d.Namespaces {
		if !have[ns] {
			obj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{fmv1alpha1.ManagedByLabel: fmv1alpha1.ManagedByValue}}}
			q.add(phaseNamespaces, "create namespace "+ns, func() error {
				if err := c.Create(ctx, obj); !apierrors.IsAlreadyExists(err) {
					return err
				}
				return nil
			})
		}
	}
}

// clusters: the mirrored Clusters. A member that holds the real Cluster
// of a name (it is also the control plane) keeps it.
func (q *writeQueue) clusters(ctx context.Context, w *writer, d *Desired) {
	var list fmv1alpha1.ClusterList
	if err := w.client.List(ctx, &list); err != nil {
		q.add(phaseObjects, "list clusters", func() error { return err })
		return
	}
	existing := byKey(pointers(list.Items), nil)
	reconcileKind(ctx, q, w, kindSync[*fmv1alpha1.Cluster]{
		kind: "cluster", desired: d.Clusters, existing: existing,
		upToDate: func(cur, want *fmv1alpha1.Cluster) bool {
			return !cur.Spec.Mirrored || (hasLabels(cur.Labels, want.Labels) && equality.Semantic.DeepEqual(cur.Spec, want.Spec))
		},
		keep: func(_ string, cur *fmv1alpha1.Cluster) bool { return !cur.Spec.Mirrored || !isOurs(cur.Labels) },
	})
	for name, want := range d.Clusters {
		cur := existing[name]
		if cur != nil && !cur.Spec.Mirrored {
			continue
		}
		if cur == nil || cur.Status.GatewayIP != want.Status.GatewayIP || cur.Status.ClusterKey != want.Status.ClusterKey {
			q.add(phaseStatus, "apply cluster status "+name, func() error { return w.applyStatus(ctx, want) })
		}
	}
}

// imports: an existing ServiceImport of the name is adopted. The
// federation writes the exporting clusters of the status; the conditions
// are the member's control plane's.
func (q *writeQueue) imports(ctx context.Context, w *writer, m *Member, d *Desired, unknown map[string]bool) {
	existing := byKey(pointers(m.Imports), nil)
	reconcileKind(ctx, q, w, kindSync[*fmv1alpha1.ServiceImport]{
		kind: "import", desired: d.Imports, existing: existing,
		upToDate: func(cur, want *fmv1alpha1.ServiceImport) bool {
			return hasLabels(cur.Labels, want.Labels) && equality.Semantic.DeepEqual(cur.Spec, want.Spec)
		},
		keep: func(_ string, cur *fmv1alpha1.ServiceImport) bool {
			return !isOurs(cur.Labels) || listsUnknown(cur.Status.Clusters, fmCluster, unknown)
		},
	})
	for key, want := range d.Imports {
		if cur := existing[key]; cur == nil || !equality.Semantic.DeepEqual(cur.Status.Clusters, want.Status.Clusters) {
			q.add(phaseStatus, "apply import status "+key, func() error { return w.applyStatus(ctx, want) })
		}
	}
}

// mcsImports: the MCS API's ServiceImports, adopted as fleetmesh.io's
// are, written once their clusterset Services are (phaseClusterset), with
// the addresses those got; their conditions carry their transition times
// over.
func (q *writeQueue) mcsImports(ctx context.Context, w *writer, m *Member, d *Desired, unknown map[string]bool) {
	existing := byKey(pointers(m.MCSImports), nil)
	// Only deletes are reconciled generically: an import waiting for its
	// clusterset IP is known once its Service is written.
	reconcileKind(ctx, q, w, kindSync[*mcsv1beta1.ServiceImport]{
		kind: "mcs import", existing: existing,
		keep: func(key string, cur *mcsv1beta1.ServiceImport) bool {
			return d.MCSImports[key] != nil || !isOurs(cur.Labels) || listsUnknown(cur.Status.Clusters, mcsCluster, unknown)
		},
	})
	for key, want := range d.MCSImports {
		cur := existing[key]
		waiting := want.Spec.Type == mcsv1beta1.ClusterSetIP && len(want.Spec.IPs) == 0
		if !waiting && cur != nil && mcsImportUpToDate(cur, want) && mcsImportStatusUpToDate(cur, want) {
			continue
		}
		q.add(phaseClusterset, "apply mcs import "+key, func() error {
			if svc := w.applied(want.Namespace + "/" + want.Annotations[DerivedServiceAnnotation]); svc != nil && waiting {
				want = want.DeepCopy() // the plan's stays as planned
				clustersetAddresses(want, svc)
			}
			if cur == nil || !mcsImportUpToDate(cur, want) {
				if err := w.apply(ctx, want); err != nil {
					return err
				}
			}
			if cur != nil && mcsImportStatusUpToDate(cur, want) {
				return nil
			}
			next := want.DeepCopy()
			if cur != nil {
				next.Status.Conditions = withConditions(cur.Status.Conditions, want.Status.Conditions)
			} else {
				next.Status.Conditions = withConditions(nil, want.Status.Conditions)
			}
			return w.applyStatus(ctx, next)
		})
	}
}

// services: the derived Services. A user's Service is never touched; a
// derived one a user has given a selector is released (our label
// dropped).
func (q *writeQueue) services(ctx context.Context, w *writer, m *Member, d *Desired, unknown map[string]bool) {
	existing := byKey(pointers(m.Services), nil)
	released := map[string]bool{}
	for key, cur := range existing {
		if isOurs(cur.Labels) && cur.Spec.Selector != nil {
			patch := client.MergeFrom(cur.DeepCopy())
			next := cur.DeepCopy()
			delete(next.Labels, fmv1alpha1.ManagedByLabel)
			q.add(phaseDeletes, "release service "+key, func() error { return w.client.Patch(ctx, next, patch) })
			released[key] = true
		}
	}
	reconcileKind(ctx, q, w, kindSync[*corev1.Service]{
		kind: "service", desired: d.Services, existing: existing,
		upToDate: func(cur, want *corev1.Service) bool {
			return !isOurs(cur.Labels) ||
				(samePorts(cur.Spec.Ports, want.Spec.Ports) && (cur.Spec.ClusterIP == corev1.ClusterIPNone) == (want.Spec.ClusterIP == corev1.ClusterIPNone))
		},
		keep: func(key string, cur *corev1.Service) bool {
			return !isOurs(cur.Labels) || released[key] || importedFromUnknown(key, m, unknown)
		},
	})
}

// slices: the MCS EndpointSlices the federation copies.
func (q *writeQueue) slices(ctx context.Context, w *writer, m *Member, d *Desired, unknown map[string]bool) {
	reconcileKind(ctx, q, w, kindSync[*discoveryv1.EndpointSlice]{
		kind: "endpointslice", desired: d.Slices, after: phaseClusterset,
		existing: byKey(pointers(m.EndpointSlices), func(s *discoveryv1.EndpointSlice) bool {
			return s.Labels[discoveryv1.LabelManagedBy] == fmv1alpha1.EndpointSliceManagedByFederation
		}),
		upToDate: func(cur, want *discoveryv1.EndpointSlice) bool {
			return hasLabels(cur.Labels, want.Labels) && equality.Semantic.DeepEqual(cur.Endpoints, want.Endpoints) && equality.Semantic.DeepEqual(cur.Ports, want.Ports)
		},
		keep: func(_ string, cur *discoveryv1.EndpointSlice) bool {
			return unknown[cur.Labels[fmv1alpha1.LabelSourceCluster]]
		},
	})
}

// ingresses: those of export rules.
func (q *writeQueue) ingresses(ctx context.Context, w *writer, m *Member, d *Desired) {
	reconcileKind(ctx, q, w, kindSync[*networkingv1.Ingress]{
		kind: "ingress", desired: d.Ingresses,
		existing: byKey(pointers(m.Ingresses), func(i *networkingv1.Ingress) bool {
			return isOurs(i.Labels) && (m.scope == nil || m.scope[i.Namespace+"/"+i.Name])
		}),
		upToDate: func(cur, want *networkingv1.Ingress) bool {
			return equality.Semantic.DeepEqual(cur.Spec.Rules, want.Spec.Rules)
		},
		keep: func(string, *networkingv1.Ingress) bool { return false },
	})
}

// exportStatus writes the conditions of the member's exports, with an
// event when one turns bad.
func (q *writeQueue) exportStatus(ctx context.Context, w *writer, m *Member, exports map[string][]metav1.Condition) {
	for i := range m.Exports {
		e := &m.Exports[i]
		next := e.DeepCopy()
		next.Status.Conditions = withConditions(e.Status.Conditions, exports[e.Namespace+"/"+e.Name])
		w.exportEvents(e, e.Status.Conditions, next.Status.Conditions)
		if !equality.Semantic.DeepEqual(e.Status, next.Status) {
			q.add(phaseStatus, "write status of export "+e.Namespace+"/"+e.Name, func() error {
				return w.client.Status().Patch(ctx, next, client.MergeFrom(e), client.FieldOwner(FieldOwner))
			})
		}
	}
}

// mcsExportStatus writes the conditions of the member's MCS exports, in
// the MCS API's reasons; the events are the fleetmesh.io export's, or
// these when there is none.
func (q *writeQueue) mcsExportStatus(ctx context.Context, w *writer, m *Member, exports map[string][]metav1.Condition) {
	fm := byKey(pointers(m.Exports), nil)
	for i := range m.MCSExports {
		e := &m.MCSExports[i]
		key := e.Namespace + "/" + e.Name
		next := e.DeepCopy()
		next.Status.Conditions = withConditions(e.Status.Conditions, mcsConditions(exports[key], e.Generation))
		if fm[key] == nil {
			w.exportEvents(e, e.Status.Conditions, next.Status.Conditions)
		}
		if !equality.Semantic.DeepEqual(e.Status, next.Status) {
			q.add(phaseStatus, "write status of mcs export "+key, func() error {
				return w.client.Status().Patch(ctx, next, client.MergeFrom(e), client.FieldOwner(FieldOwner))
			})
		}
	}
}

// exportEvents tells an export's user, in an event, of a condition that
// turned bad: not Valid, or in Conflict.
func (w *writer) exportEvents(e runtime.Object, prev, next []metav1.Condition) {
	for _, cond := range next {
		was := meta.FindStatusCondition(prev, cond.Type)
		changed := was == nil || was.Status != cond.Status || was.Reason != cond.Reason
		bad := (cond.Type == fmv1alpha1.ConditionValid && cond.Status == metav1.ConditionFalse) ||
			(cond.Type == fmv1alpha1.ConditionConflict && cond.Status == metav1.ConditionTrue)
		if changed && bad {
			w.events.Eventf(e, nil, corev1.EventTypeWarning, cond.Reason, "Export", "%s", cond.Message)
		}
	}
}

// writeWorkers is how many writes to one member run at once.
const writeWorkers = 8

// listsUnknown reports whether an import's status.clusters (of either
// group) lists an unreachable member: it stays until that member is heard
// from.
func listsUnknown[T any](clusters []T, name func(T) string, unknown map[string]bool) bool {
	return slices.ContainsFunc(clusters, func(c T) bool { return unknown[name(c)] })
}

func fmCluster(c fmv1alpha1.ClusterStatusRef) string { return c.Cluster }

func mcsCluster(c mcsv1beta1.ClusterStatus) string { return c.Cluster }

func importedFromUnknown(key string, m *Member, unknown map[string]bool) bool {
	for i := range m.Imports {
		if m.Imports[i].Namespace+"/"+m.Imports[i].Name == key && listsUnknown(m.Imports[i].Status.Clusters, fmCluster, unknown) {
			return true
		}
	}
	return false
}

func samePorts(a, b []corev1.ServicePort) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || a[i].Port != b[i].Port || a[i].Protocol != b[i].Protocol {
			return false
		}
	}
	return true
}
