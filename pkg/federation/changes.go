package federation

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
)

// A sync recomputes and writes only what changed. The plan of one service
// (namespace/name) depends on nothing but that service's objects in the
// members: its Services (the exported one and those derived for it), its
// EndpointSlices, and its exports and imports of either group (Compute
// plans each service apart). A change to one of those queues the service,
// and the next sync reads, plans and writes that service alone, in every
// member. Everything else queues the whole fleet: a member joining,
// leaving, or becoming reachable or unreachable; a member's namespaces,
// Ingresses (an export's rules may collide with any of them), roots or
// mirrored Clusters; the control plane's Clusters and Secrets; a sync
// that failed; and the periodic resync, the safety net that recomputes
// everything however little changed.

// request is what a sync recomputes: one service, by namespace/name, or
// the whole fleet (an empty service).
type request struct{ service string }

// fleet is the request for everything.
var fleet = request{}

// scopeOf is the services a batch of requests asks for, nil for the whole
// fleet: when one asks for it, or when there are too many to plan alone.
func scopeOf(batch []request) map[string]bool {
	scope := map[string]bool{}
	for _, r := range batch {
		if r == fleet || len(scope) >= maxScoped {
			return nil
		}
		scope[r.service] = true
	}
	return scope
}

// maxScoped is the most services a sync plans alone: beyond it, reading
// every object of the members costs less than reading each service's.
const maxScoped = 200

// serviceOf is the service (namespace/name) a member's object belongs
// to: "" for none (an EndpointSlice of no Service), all for an object on
// which more than one service may depend.
func serviceOf(obj any) (key string, all bool) {
	if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	o, ok := obj.(client.Object)
	if !ok {
		return "", true
	}
	name := ""
	switch o := o.(type) {
	case *corev1.Service:
		name = o.Name
		if owner := o.Labels[fmv1alpha1.LabelServiceName]; owner != "" && isOurs(o.Labels) {
			name = owner // a clusterset Service derived under another name
		}
	case *discoveryv1.EndpointSlice:
		name = sliceService(o)
		if name == "" {
			return "", false
		}
	case *fmv1alpha1.ServiceExport, *fmv1alpha1.ServiceImport, *mcsv1beta1.ServiceExport, *mcsv1beta1.ServiceImport:
		name = o.GetName()
	default:
		return "", true
	}
	return o.GetNamespace() + "/" + name, false
}

// sliceService is the name of the service an EndpointSlice belongs to:
// for the federation's MCS copies the exported service's (the Service
// they join may be derived under another name), else its Service's.
func sliceService(s *discoveryv1.EndpointSlice) string {
	if s.Labels[discoveryv1.LabelManagedBy] == fmv1alpha1.EndpointSliceManagedByFederation {
		return s.Labels[fmv1alpha1.LabelServiceName]
	}
	return s.Labels[discoveryv1.LabelServiceName]
}

// sliceServiceField indexes a member's EndpointSlices by sliceService, as
// namespace/name.
const sliceServiceField = "fleetmesh.io/service"

func indexSliceService(obj client.Object) []string {
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return nil
	}
	if name := sliceService(s); name != "" {
		return []string{s.Namespace + "/" + name}
	}
	return nil
}

// memberHandler queues what a change to a member's object changes.
func (f *Federation) memberHandler() toolscache.ResourceEventHandlerFuncs {
	changed := func(obj any) {
		switch key, all := serviceOf(obj); {
		case all:
			f.queue.Add(fleet)
		case key != "":
			f.queue.Add(request{service: key})
		}
	}
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc: changed, DeleteFunc: changed,
		// An object may have moved from one service to another (a
		// relabelled EndpointSlice): both change.
		UpdateFunc: func(prev, obj any) { changed(prev); changed(obj) },
	}
}

// readScope reads, from a member's cache, the objects of the services in
// scope (namespace/name) and the namespaces they are in, and all its
// Ingresses: an export's rules are checked against every one.
func readScope(ctx context.Context, r client.Reader, m *Member, scope map[string]bool) error {
	namespaces := map[string]bool{}
	for key := range scope {
		ns, name, _ := strings.Cut(key, "/")
		if !namespaces[ns] {
			namespaces[ns] = true
			if err := getInto(ctx, r, client.ObjectKey{Name: ns}, &m.Namespaces); err != nil {
				return fmt.Errorf("read namespace %s in %s: %w", ns, m.name(), err)
			}
		}
		k := client.ObjectKey{Namespace: ns, Name: name}
		errs := []error{
			getInto(ctx, r, k, &m.Services),
			getInto(ctx, r, client.ObjectKey{Namespace: ns, Name: DerivedName(ns, name)}, &m.Services),
			getInto(ctx, r, k, &m.Exports),
			getInto(ctx, r, k, &m.Imports),
		}
		if m.MCS {
			errs = append(errs, getInto(ctx, r, k, &m.MCSExports), getInto(ctx, r, k, &m.MCSImports))
		}
		var slices discoveryv1.EndpointSliceList
		errs = append(errs, r.List(ctx, &slices, client.MatchingFields{sliceServiceField: key}))
		for _, err := range errs {
			if err != nil {
				return fmt.Errorf("read service %s in %s: %w", key, m.name(), err)
			}
		}
		m.EndpointSlices = append(m.EndpointSlices, slices.Items...)
	}
	var ing networkingv1.IngressList
	if err := r.List(ctx, &ing); err != nil {
		return fmt.Errorf("list Ingresses in %s: %w", m.name(), err)
	}
	m.Ingresses = ing.Items
	return nil
}

// getInto reads the object of key, if there is one, onto items.
func getInto[T any, PT interface {
	*T
	client.Object
}](ctx context.Context, r client.Reader, key client.ObjectKey, items *[]T) error {
	var obj T
	err := r.Get(ctx, key, PT(&obj))
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return err
	}
	*items = append(*items, obj)
	return nil
}
