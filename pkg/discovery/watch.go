package discovery

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/client-go/discovery"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
	"github.com/fleetmesh/fleetmesh/pkg/internal/batchqueue"
	"github.com/fleetmesh/fleetmesh/pkg/internal/capabilities"
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
	// Publish receives every new mesh. Discovery writes the status of
	// what the mesh came from itself; nothing comes back.
	Publish func(m *model.Mesh)
	Log     logr.Logger
	// Events receives, from the elected replica, a Warning on the Service
	// (else the ServiceImport) of a service left out of the mesh or kept
	// at its last good configuration; nil records none.
	Events events.EventRecorder
	// Registry receives the discovery metrics; nil makes a new one.
	Registry prometheus.Registerer
	// TrustDomain is the fleet's SPIFFE trust domain (default
	// cluster.local); GatewayNamespace and GatewayServiceAccount who the
	// cluster's gateways run as.
	TrustDomain           string
	GatewayNamespace      string
	GatewayServiceAccount string
}

// Watcher rebuilds and publishes the mesh whenever the cluster changes.
type Watcher struct {
	opts  Options
	cache interface {
		client.Reader
	}
	queue   *batchqueue.Queue[struct{}]
	status  *statusWriter
	metrics *metrics
	// lastGood is every service's last valid definition, by key: a
	// service that turns invalid is published as it was.
	lastGood map[string]model.Service
	// reported is the problem last reported per service, so a problem
	// is logged once, not at every rebuild; warnings are the services'
	// problems now, which the elected replica records as events.
	reported map[string]string
	warnings map[string]Warning

	// mcs is set once the cluster's MCS ServiceExports are watched: the
	// cluster serves the MCS API and this controller may read it.
	mcs       atomic.Bool
	informers cache.Informers
	apiReader client.Reader
	discovery discovery.DiscoveryInterface
	handler   toolscache.ResourceEventHandlerFuncs
}

// mcsPollInterval is how often a cluster that does not serve the MCS API
// is asked again.
const mcsPollInterval = 30 * time.Second

// watched are the kinds the mesh is made of.
var watched = []client.Object{
	&corev1.Service{}, &discoveryv1.EndpointSlice{}, &corev1.Pod{}, &corev1.Namespace{},
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
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	if opts.TrustDomain == "" {
		opts.TrustDomain = "cluster.local"
	}
	w := &Watcher{
		opts: opts, cache: mgr.GetCache(),
		queue: batchqueue.New[struct{}](batchqueue.Options{
			Name: "discovery", Quiet: opts.DebounceAfter, Max: opts.DebounceMax,
			OnError: func(err error) { opts.Log.Error(err, "rebuild the mesh") },
		}),
		status:  newStatusWriter(mgr.GetClient(), mgr.GetCache(), opts.ClusterName, opts.Events, func(err error) { opts.Log.Error(err, "write status") }),
		metrics: newMetrics(opts.Registry), lastGood: map[string]model.Service{}, reported: map[string]string{},
		warnings: map[string]Warning{},
	}
	w.handler = toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { w.poke() },
		UpdateFunc: func(any, any) { w.poke() },
		DeleteFunc: func(any) { w.poke() },
	}
	for _, obj := range watched {
		inf, err := mgr.GetCache().GetInformer(ctx, obj)
		if err != nil {
			return nil, fmt.Errorf("discovery: watch %T: %w", obj, err)
		}
		if _, err := inf.AddEventHandler(w.handler); err != nil {
			return nil, fmt.Errorf("discovery: watch %T: %w", obj, err)
		}
	}
	dc, err := discovery.NewDiscoveryClientForConfig(mgr.GetConfig())
	if err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	w.informers, w.apiReader, w.discovery = mgr.GetCache(), mgr.GetAPIReader(), dc
	for _, r := range []manager.Runnable{w, w.status} {
		if err := mgr.Add(r); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// poke asks for a rebuild.
func (w *Watcher) poke() { w.queue.Add(struct{}{}) }

// NeedLeaderElection is false: every replica serves its own proxies (and
// only the leader writes status).
func (w *Watcher) NeedLeaderElection() bool { return false }

// Start runs the rebuild loop until ctx ends.
func (w *Watcher) Start(ctx context.Context) error {
	w.poke() // an empty cluster still gets a mesh
	go capabilities.PollMCS(ctx, w.discovery, mcsPollInterval, func() { w.watchMCS(ctx) })
	return w.queue.Run(ctx, struct{}{}, func(ctx context.Context, _ []struct{}) error { return w.rebuild(ctx) })
}

// watchMCS starts watching the cluster's MCS ServiceExports, once it
// serves the MCS API, if this controller may read them (else it says
// what to grant: the cluster's gateway then serves fleetmesh.io exports
// only).
func (w *Watcher) watchMCS(ctx context.Context) {
	if err := w.apiReader.List(ctx, &mcsv1beta1.ServiceExportList{}, client.Limit(1)); err != nil {
		w.opts.Log.Error(err, "the cluster serves the MCS API, but its ServiceExports cannot be read: grant list and watch on serviceexports.multicluster.x-k8s.io (manifests/base does); until then MCS exports are not served by this cluster's gateway")
		return
	}
	inf, err := w.informers.GetInformer(ctx, &mcsv1beta1.ServiceExport{})
	if err == nil {
		_, err = inf.AddEventHandler(w.handler)
	}
	if err != nil {
		w.opts.Log.Error(err, "watch the cluster's MCS ServiceExports")
		return
	}
	w.mcs.Store(true)
	w.opts.Log.Info("the cluster serves the MCS API: its ServiceExports are read")
	w.poke()
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
		nss      corev1.NamespaceList
	)
	for _, l := range []client.ObjectList{&clusters, &services, &epSlices, &imports, &exports, &policies, &pods, &ingress, &nss} {
		if err := w.cache.List(ctx, l); err != nil {
			return fmt.Errorf("list %T: %w", l, err)
		}
	}
	var mcsExports mcsv1beta1.ServiceExportList
	if w.mcs.Load() {
		if err := w.cache.List(ctx, &mcsExports); err != nil {
			return fmt.Errorf("list MCS ServiceExports: %w", err)
		}
	}
	in := &Objects{
		ClusterName: w.opts.ClusterName,
		Clusters:    clusters.Items, Services: services.Items, EndpointSlices: epSlices.Items, MCSExports: mcsExports.Items,
		Imports: imports.Items, Exports: exports.Items, Policies: policies.Items, Pods: pods.Items,
		Ingresses: ingress.Items, Namespaces: nss.Items,
		TrustDomain: w.opts.TrustDomain, GatewayNamespace: w.opts.GatewayNamespace, GatewayServiceAccount: w.opts.GatewayServiceAccount,
	}
	mesh := Build(in)
	for _, p := range MTLSModeProblems(in) {
		if w.reported[p] == "" {
			w.opts.Log.Info("invalid mTLS mode", "problem", p)
			w.reported[p] = p
		}
	}
	problems := mesh.Problems()
	if problems.Mesh != nil {
		return fmt.Errorf("the mesh built from cluster %s is inconsistent: %w", w.opts.ClusterName, problems.Mesh)
	}
	mesh = w.isolate(mesh, problems.Services, &services, &imports)
	w.opts.Publish(mesh)
	inconsistent := make(map[string]string, len(problems.Services))
	for key := range problems.Services {
		inconsistent[key] = w.reported[key]
	}
	st := decideStatus(w.opts.ClusterName, imports.Items, policies.Items, mesh, inconsistent)
	st.Warnings = maps.Clone(w.warnings)
	w.status.set(st)
	w.metrics.rebuilds.Inc()
	return nil
}

// isolate keeps one bad service from holding back the others: a service
// with problems is published as it last was valid, or left out if it
// never was; the problem is logged, counted and recorded as a Warning
// event on its Service (else its ServiceImport) once.
func (w *Watcher) isolate(mesh *model.Mesh, bad map[string]error, services *corev1.ServiceList, imports *fmv1alpha1.ServiceImportList) *model.Mesh {
	kept, left := 0, 0
	out := *mesh
	out.Services = make([]model.Service, 0, len(mesh.Services))
	current := make(map[string]bool, len(mesh.Services))
	for _, svc := range mesh.Services {
		key := svc.Key()
		current[key] = true
		err := bad[key]
		if err == nil {
			w.lastGood[key] = svc
			out.Services = append(out.Services, svc)
			if len(svc.LeftOut) == 0 {
				delete(w.reported, key)
				delete(w.warnings, key)
				continue
			}
			w.report(&svc, strings.Join(svc.LeftOut, "; "), nil, services, imports)
			continue
		}
		last, ok := w.lastGood[key]
		what := "it is left out of the mesh until it is fixed"
		if ok {
			out.Services = append(out.Services, last)
			what = "its last valid configuration is kept until it is fixed"
			kept++
		} else {
			left++
		}
		w.report(&svc, fmt.Sprintf("service %s is inconsistent: %v; %s", key, err, what), err, services, imports)
	}
	for key := range w.lastGood {
		if !current[key] {
			delete(w.lastGood, key)
		}
	}
	for key := range w.reported {
		if !current[key] {
			delete(w.reported, key)
			delete(w.warnings, key)
		}
	}
	w.metrics.inconsistent.WithLabelValues("kept").Set(float64(kept))
	w.metrics.inconsistent.WithLabelValues("left out").Set(float64(left))
	return &out
}

// report logs a service's problem once for as long as it lasts, and
// keeps it as a warning for the elected replica to record as an event on
// its Service (else its ServiceImport).
func (w *Watcher) report(svc *model.Service, msg string, err error, services *corev1.ServiceList, imports *fmv1alpha1.ServiceImportList) {
	key := svc.Key()
	if w.reported[key] == msg {
		return
	}
	w.reported[key] = msg
	reason := fmv1alpha1.ReasonInconsistent
	if err != nil {
		w.opts.Log.Error(err, "service is inconsistent", "service", key, "published", msg)
	} else {
		reason = fmv1alpha1.ReasonLeftOut
		w.opts.Log.Info("part of a service is left out", "service", key, "why", msg)
	}
	delete(w.warnings, key)
	if obj := ownerOf(svc.Namespace, svc.Name, services, imports); obj != nil {
		w.warnings[key] = Warning{Object: obj, Reason: reason, Message: msg}
	}
}

// ownerOf is the object a service's problems are recorded on: its
// Service, else its ServiceImport.
func ownerOf(ns, name string, services *corev1.ServiceList, imports *fmv1alpha1.ServiceImportList) client.Object {
	for i := range services.Items {
		if s := &services.Items[i]; s.Namespace == ns && s.Name == name {
			return s
		}
	}
	for i := range imports.Items {
		if s := &imports.Items[i]; s.Namespace == ns && s.Name == name {
			return s
		}
	}
	return nil
}
