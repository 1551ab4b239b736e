package federation

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

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

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
)

// FieldOwner is the field manager of every write the federation makes.
const FieldOwner = "fleetmesh-federation"

// writer writes to one member, counting and recording what it does.
type writer struct {
	client  client.Client
	metrics *metrics
	events  events.EventRecorder
}

func (w *writer) apply(ctx context.Context, obj client.Object) error {
	w.metrics.writes.WithLabelValues(kindOf(obj), "apply").Inc()
	return applyObject(ctx, w.client, obj)
}

func (w *writer) applyStatus(ctx context.Context, obj client.Object) error {
	w.metrics.writes.WithLabelValues(kindOf(obj), "apply-status").Inc()
	return applyStatus(ctx, w.client, obj)
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

// applyObject writes obj by server-side apply: only the fields the
// federation sets, owned by FieldOwner.
func applyObject(ctx context.Context, c client.Client, obj client.Object) error {
	return Apply(ctx, c, obj, FieldOwner)
}

// Apply writes obj's metadata and spec (never its status) by server-side
// apply as field manager owner, taking over fields others set.
func Apply(ctx context.Context, c client.Client, obj client.Object, owner string) error {
	u, err := toApply(obj)
	if err != nil {
		return err
	}
	delete(u.Object, "status")
	return c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(owner), client.ForceOwnership)
}

// applyStatus writes obj's status by server-side apply.
func applyStatus(ctx context.Context, c client.Client, obj client.Object) error {
	u, err := toApply(obj)
	if err != nil {
		return err
	}
	delete(u.Object, "spec")
	return c.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(FieldOwner), client.ForceOwnership)
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
// now. It returns every error, having tried every write.
func applyMember(ctx context.Context, w *writer, m *Member, d *Desired, exports map[string][]metav1.Condition, unknown map[string]bool) error {
	c := w.client
	// Writes run in phases (namespaces; objects; statuses; deletes), each
	// phase's writes side by side: a member's writes are bound by the API
	// server's latency, not by work here.
	var (
		mu     sync.Mutex
		errs   []error
		phases [4][]func()
		phase  = 1
	)
	record := func(what string, err error) {
		// A delete of what is already gone is done.
		gone := apierrors.IsNotFound(err) && strings.HasPrefix(what, "delete ")
		if err != nil && !gone {
			mu.Lock()
			errs = append(errs, fmt.Errorf("%s in %s: %w", what, m.name(), err))
			mu.Unlock()
		}
	}
	// try queues a write in the current phase; what names it for errors.
	try := func(what string, write func() error) {
		p := phase
		switch {
		case strings.HasPrefix(what, "delete "), strings.HasPrefix(what, "release "):
			p = 3
		case strings.Contains(what, " status "), strings.HasPrefix(what, "write status"):
			p = 2
		}
		phases[p] = append(phases[p], func() { record(what, write()) })
	}

	have := map[string]bool{}
	for _, ns := range m.Namespaces {
		have[ns.Name] = true
	}
	for _, ns := range d.Namespaces {
		if !have[ns] {
			obj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{fmv1alpha1.ManagedByLabel: fmv1alpha1.ManagedByValue}}}
			phases[0] = append(phases[0], func() {
				if err := c.Create(ctx, obj); !apierrors.IsAlreadyExists(err) {
					record("create namespace "+ns, err)
				}
			})
		}
	}

	// Mirrored Clusters.
	var existingClusters fmv1alpha1.ClusterList
	if err := c.List(ctx, &existingClusters); err != nil {
		record("list clusters", err)
	}
	for name, want := range d.Clusters {
		var cur *fmv1alpha1.Cluster
		for i := range existingClusters.Items {
			if existingClusters.Items[i].Name == name {
				cur = &existingClusters.Items[i]
			}
		}
		if cur != nil && !cur.Spec.Mirrored {
			continue // this member holds the real Cluster (it is also the control plane)
		}
		if cur == nil || !hasLabels(cur.Labels, want.Labels) || !equality.Semantic.DeepEqual(cur.Spec, want.Spec) {
			try("apply cluster "+name, func() error { return w.apply(ctx, want) })
		}
		if cur == nil || cur.Status.GatewayIP != want.Status.GatewayIP || cur.Status.ClusterKey != want.Status.ClusterKey {
			try("apply cluster status "+name, func() error { return w.applyStatus(ctx, want) })
		}
	}
	for i := range existingClusters.Items {
		cur := &existingClusters.Items[i]
		if cur.Spec.Mirrored && isOurs(cur.Labels) && d.Clusters[cur.Name] == nil {
			try("delete cluster "+cur.Name, func() error { return w.delete(ctx, cur) })
		}
	}

	// ServiceImports: adopted when one exists under the name.
	existingImports := map[string]*fmv1alpha1.ServiceImport{}
	for i := range m.Imports {
		existingImports[m.Imports[i].Namespace+"/"+m.Imports[i].Name] = &m.Imports[i]
	}
	for key, want := range d.Imports {
		cur := existingImports[key]
		if cur == nil || !hasLabels(cur.Labels, want.Labels) || !equality.Semantic.DeepEqual(cur.Spec, want.Spec) {
			try("apply import "+key, func() error { return w.apply(ctx, want) })
		}
		// The federation owns the exporting clusters; the conditions are
		// the member control plane's.
		if cur == nil || !equality.Semantic.DeepEqual(cur.Status.Clusters, want.Status.Clusters) {
			try("apply import status "+key, func() error { return w.applyStatus(ctx, want) })
		}
	}
	for key, cur := range existingImports {
		if isOurs(cur.Labels) && d.Imports[key] == nil && !fromUnknown(cur, unknown) {
			try("delete import "+key, func() error { return w.delete(ctx, cur) })
		}
	}

	// Derived Services: a user's Service is never touched; a derived one a
	// user has given a selector is released (our label dropped).
	existingServices := map[string]*corev1.Service{}
	for i := range m.Services {
		existingServices[m.Services[i].Namespace+"/"+m.Services[i].Name] = &m.Services[i]
	}
	for key, cur := range existingServices {
		if isOurs(cur.Labels) && cur.Spec.Selector != nil {
			patch := client.MergeFrom(cur.DeepCopy())
			released := cur.DeepCopy()
			delete(released.Labels, fmv1alpha1.ManagedByLabel)
			try("release service "+key, func() error { return c.Patch(ctx, released, patch) })
			continue
		}
		if isOurs(cur.Labels) && d.Services[key] == nil && !importedFromUnknown(key, m, unknown) {
			try("delete service "+key, func() error { return w.delete(ctx, cur) })
		}
	}
	for key, want := range d.Services {
		cur := existingServices[key]
		if cur != nil && !isOurs(cur.Labels) {
			continue
		}
		if cur == nil || !samePorts(cur.Spec.Ports, want.Spec.Ports) || (cur.Spec.ClusterIP == corev1.ClusterIPNone) != (want.Spec.ClusterIP == corev1.ClusterIPNone) {
			try("apply service "+key, func() error { return w.apply(ctx, want) })
		}
	}

	// MCS EndpointSlices.
	existingSlices := map[string]*discoveryv1.EndpointSlice{}
	for i := range m.EndpointSlices {
		s := &m.EndpointSlices[i]
		if s.Labels[discoveryv1.LabelManagedBy] == fmv1alpha1.EndpointSliceManagedByFederation {
			existingSlices[s.Namespace+"/"+s.Name] = s
		}
	}
	for key, want := range d.Slices {
		cur := existingSlices[key]
		if cur == nil || !hasLabels(cur.Labels, want.Labels) || !equality.Semantic.DeepEqual(cur.Endpoints, want.Endpoints) || !equality.Semantic.DeepEqual(cur.Ports, want.Ports) {
			try("apply endpointslice "+key, func() error { return w.apply(ctx, want) })
		}
	}
	for key, cur := range existingSlices {
		if d.Slices[key] == nil && !unknown[cur.Labels[fmv1alpha1.LabelSourceCluster]] {
			try("delete endpointslice "+key, func() error { return w.delete(ctx, cur) })
		}
	}

	// Ingresses of export rules.
	existingIngresses := map[string]*networkingv1.Ingress{}
	for i := range m.Ingresses {
		if isOurs(m.Ingresses[i].Labels) {
			existingIngresses[m.Ingresses[i].Namespace+"/"+m.Ingresses[i].Name] = &m.Ingresses[i]
		}
	}
	for key, want := range d.Ingresses {
		cur := existingIngresses[key]
		if cur == nil || !equality.Semantic.DeepEqual(cur.Spec.Rules, want.Spec.Rules) {
			try("apply ingress "+key, func() error { return w.apply(ctx, want) })
		}
	}
	for key, cur := range existingIngresses {
		if d.Ingresses[key] == nil {
			try("delete ingress "+key, func() error { return w.delete(ctx, cur) })
		}
	}

	// Export conditions.
	for i := range m.Exports {
		e := &m.Exports[i]
		conds := exports[e.Namespace+"/"+e.Name]
		next := e.DeepCopy()
		for _, cond := range conds {
			prev := meta.FindStatusCondition(e.Status.Conditions, cond.Type)
			changed := prev == nil || prev.Status != cond.Status || prev.Reason != cond.Reason
			bad := (cond.Type == fmv1alpha1.ConditionValid && cond.Status == metav1.ConditionFalse) ||
				(cond.Type == fmv1alpha1.ConditionConflict && cond.Status == metav1.ConditionTrue)
			if changed && bad {
				w.events.Eventf(e, nil, corev1.EventTypeWarning, cond.Reason, "Export", "%s", cond.Message)
			}
			meta.SetStatusCondition(&next.Status.Conditions, cond)
		}
		if !equality.Semantic.DeepEqual(e.Status, next.Status) {
			try("write status of export "+e.Namespace+"/"+e.Name, func() error { return c.Status().Patch(ctx, next, client.MergeFrom(e), client.FieldOwner(FieldOwner)) })
		}
	}
	for _, ops := range phases {
		var wg sync.WaitGroup
		sem := make(chan struct{}, writeWorkers)
		for _, op := range ops {
			if ctx.Err() != nil {
				break
			}
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				op()
			})
		}
		wg.Wait()
	}
	if err := ctx.Err(); err != nil {
		errs = append(errs, fmt.Errorf("writing to %s: %w", m.name(), err))
	}
	return errors.Join(errs...)
}

// writeWorkers is how many writes to one member run at once.
const writeWorkers = 8

// fromUnknown reports whether an import lists an unreachable member: it
// stays until that member is heard from.
func fromUnknown(imp *fmv1alpha1.ServiceImport, unknown map[string]bool) bool {
	for _, c := range imp.Status.Clusters {
		if unknown[c.Cluster] {
			return true
		}
	}
	return false
}

func importedFromUnknown(key string, m *Member, unknown map[string]bool) bool {
	for i := range m.Imports {
		if m.Imports[i].Namespace+"/"+m.Imports[i].Name == key && fromUnknown(&m.Imports[i], unknown) {
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
