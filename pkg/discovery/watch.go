package discovery

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
	"github.com/fleetmesh/fleetmesh/pkg/model"
)

// Options configure a Watcher.
type Options struct {
	// ClusterName is the local cluster's name.
	ClusterName string
	// DebounceAfter is the quiet period a rebuild waits for after an event.
	DebounceAfter time.Duration
	// DebounceMax bounds how long a burst of events can delay a rebuild.
	DebounceMax time.Duration
	// Publish receives every new mesh with the pods' IPs; it returns, per
	// policy (namespace/name), the targets that match no exporting cluster.
	Publish func(m *model.Mesh, pods map[string]string) map[string][]string
	Log     logr.Logger
}

// Watcher rebuilds and publishes the mesh whenever the cluster changes.
type Watcher struct {
	opts  Options
	cache interface {
		client.Reader
	}
	client  client.Client
	trigger chan struct{}
}

// watched are the kinds the mesh is made of.
var watched = []client.Object{
	&corev1.Service{}, &discoveryv1.EndpointSlice{}, &corev1.Pod{},
	&fmv1alpha1.Cluster{}, &fmv1alpha1.ServiceImport{}, &fmv1alpha1.ServiceExport{}, &fmv1alpha1.GlobalTrafficPolicy{},
	&networkingv1.Ingress{},
}

// New registers a Watcher with the manager; it runs when the manager starts.
func New(ctx context.Context, mgr ctrl.Manager, opts Options) (*Watcher, error) {
	if opts.ClusterName == "" {
		return nil, fmt.Errorf("discovery: the local cluster's name is required")
	}
	if opts.DebounceAfter <= 0 {
		opts.DebounceAfter = 100 * time.Millisecond
	}
	if opts.DebounceMax < opts.DebounceAfter {
		opts.DebounceMax = 10 * opts.DebounceAfter
	}
	w := &Watcher{opts: opts, cache: mgr.GetCache(), client: mgr.GetClient(), trigger: make(chan struct{}, 1)}
	handler := toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { w.poke() },
		UpdateFunc: func(any, any) { w.poke() },
		DeleteFunc: func(any) { w.poke() },
	}
	for _, obj := range watched {
		inf, err := mgr.GetCache().GetInformer(ctx, obj)
		if err != nil {
			return nil, fmt.Errorf("discovery: watch %T: %w", obj, err)
		}
		if _, err := inf.AddEventHandler(handler); err != nil {
			return nil, fmt.Errorf("discovery: watch %T: %w", obj, err)
		}
	}
	if err := mgr.Add(w); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *Watcher) poke() {
	select {
	case w.trigger <- struct{}{}:
	default:
	}
}

// NeedLeaderElection is false: every replica serves its own proxies.
func (w *Watcher) NeedLeaderElection() bool { return false }

// Start runs the rebuild loop until ctx ends.
func (w *Watcher) Start(ctx context.Context) error {
	w.poke() // an empty cluster still gets a mesh
	var quiet, deadline <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.trigger:
			quiet = time.After(w.opts.DebounceAfter)
			if deadline == nil {
				deadline = time.After(w.opts.DebounceMax)
			}
			continue
		case <-quiet:
		case <-deadline:
		}
		quiet, deadline = nil, nil
		if err := w.rebuild(ctx); err != nil {
			w.opts.Log.Error(err, "rebuild the mesh")
			w.poke() // try again after the quiet period
		}
	}
}

func (w *Watcher) rebuild(ctx context.Context) error {
	var (
		clusters fmv1alpha1.ClusterList
		services corev1.ServiceList
		epSlices discoveryv1.EndpointSliceList
		imports  fmv1alpha1.ServiceImportList
		exports  fmv1alpha1.ServiceExportList
		policies fmv1alpha1.GlobalTrafficPolicyList
		pods     corev1.PodList
		ingress  networkingv1.IngressList
	)
	for _, l := range []client.ObjectList{&clusters, &services, &epSlices, &imports, &exports, &policies, &pods, &ingress} {
		if err := w.cache.List(ctx, l); err != nil {
			return fmt.Errorf("list %T: %w", l, err)
		}
	}
	mesh, podIPs := Build(&Objects{
		ClusterName: w.opts.ClusterName,
		Clusters:    clusters.Items, Services: services.Items, EndpointSlices: epSlices.Items,
		Imports: imports.Items, Exports: exports.Items, Policies: policies.Items, Pods: pods.Items,
		Ingresses: ingress.Items,
	})
	if err := mesh.Validate(); err != nil {
		return fmt.Errorf("the mesh built from cluster %s is inconsistent: %w", w.opts.ClusterName, err)
	}
	unmatched := w.opts.Publish(mesh, podIPs)
	return w.writePolicyStatus(ctx, policies.Items, unmatched)
}

// writePolicyStatus records, on every policy whose status is out of date,
// the generation read and the targets that match no exporting cluster.
func (w *Watcher) writePolicyStatus(ctx context.Context, policies []fmv1alpha1.GlobalTrafficPolicy, unmatched map[string][]string) error {
	for i := range policies {
		p := &policies[i]
		targets := unmatched[p.Namespace+"/"+p.Name]
		want := p.DeepCopy()
		want.Status.ObservedGeneration = p.Generation
		want.Status.UnmatchedTargets = nil
		for _, t := range targets {
			want.Status.UnmatchedTargets = append(want.Status.UnmatchedTargets, fmv1alpha1.ClusterKey(t))
		}
		cond := metav1.Condition{
			Type: fmv1alpha1.ConditionAccepted, Status: metav1.ConditionTrue, Reason: "Accepted",
			Message: "every target exports the service", ObservedGeneration: p.Generation,
		}
		if len(targets) > 0 {
			cond.Reason = fmv1alpha1.ReasonUnknownTargets
			cond.Message = fmt.Sprintf("ignored: %v name no cluster exporting %s/%s", targets, p.Namespace, p.Name)
		}
		meta.SetStatusCondition(&want.Status.Conditions, cond)
		if p.Status.ObservedGeneration == want.Status.ObservedGeneration &&
			slices.Equal(p.Status.UnmatchedTargets, want.Status.UnmatchedTargets) &&
			conditionsEqual(p.Status.Conditions, want.Status.Conditions) {
			continue
		}
		if err := w.client.Status().Patch(ctx, want, client.MergeFrom(p)); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("write status of GlobalTrafficPolicy %s/%s in %s: %w", p.Namespace, p.Name, w.opts.ClusterName, err)
		}
	}
	return nil
}

func conditionsEqual(a, b []metav1.Condition) bool {
	return slices.EqualFunc(a, b, func(x, y metav1.Condition) bool {
		return x.Type == y.Type && x.Status == y.Status && x.Reason == y.Reason && x.Message == y.Message && x.ObservedGeneration == y.ObservedGeneration
	})
}
