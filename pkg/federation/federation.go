package federation

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
	"github.com/fleetmesh/fleetmesh/pkg/internal/batchqueue"
)

// Options configure the federation.
type Options struct {
	Scheme *runtime.Scheme
	Log    logr.Logger
	// Debounce is the quiet period before a sync after a change.
	Debounce time.Duration
	// DebounceMax bounds how long changes that keep coming (constant
	// EndpointSlice churn in one member) may delay a sync; 10 × Debounce
	// when 0.
	DebounceMax time.Duration
	// ProbeInterval is how often every member's API server is probed.
	ProbeInterval time.Duration
	// Resolve turns a gateway host into an IP (net.DefaultResolver when
	// nil).
	Resolve func(ctx context.Context, host string) (string, error)
	// Registry receives the federation's metrics; nil keeps them unexposed.
	Registry prometheus.Registerer
	// SecretNamespace, when set, is the only namespace a
	// kubeconfigSecretRef may name.
	SecretNamespace string
	// TokenTTL is the life of a member token the federation renews;
	// TokenRenewBefore is how long before its expiry it renews it.
	TokenTTL, TokenRenewBefore time.Duration
	// MemberNamespace is where fleetmesh runs in every member (its
	// workload roots are read there, the fleet's written there);
	// fleetmesh-system when empty.
	MemberNamespace string
	// Resync is how often the whole fleet is recomputed however little
	// changed (a change to one service recomputes that service alone);
	// 30 s when 0. Members' lastSyncTime moves at least as often.
	Resync time.Duration
}

// Federation keeps the members of the control-plane cluster's Cluster
// objects in sync.
type Federation struct {
	opts    Options
	hub     client.Client
	events  events.EventRecorder
	metrics *metrics
	// queue holds what the next sync must recompute.
	queue *batchqueue.Queue[request]

	// renewedAt is when each member's token was last renewed: a member
	// that caps token lives below the renewal threshold is not asked at
	// every sync.
	renewedAt map[string]time.Time

	mu      sync.Mutex
	members map[string]*memberConn
	// roots are the members' workload roots last read; rootsWritten what
	// was last written as each member's fleet roots.
	roots        map[string][]byte
	rootsWritten map[string][32]byte
	// warnedTrustDomain is, by member, the trust domain it was last warned
	// of taking against the fleet's.
	warnedTrustDomain map[string]string
}

// New registers the federation with the control-plane cluster's manager.
func New(ctx context.Context, mgr ctrl.Manager, opts Options) (*Federation, error) {
	if opts.Scheme == nil {
		opts.Scheme = mgr.GetScheme()
	}
	if opts.Debounce <= 0 {
		opts.Debounce = 100 * time.Millisecond
	}
	if opts.DebounceMax < opts.Debounce {
		opts.DebounceMax = 10 * opts.Debounce
	}
	if opts.ProbeInterval <= 0 {
		opts.ProbeInterval = 2 * time.Second
	}
	if opts.Resync <= 0 {
		opts.Resync = 30 * time.Second
	}
	if opts.MemberNamespace == "" {
		opts.MemberNamespace = "fleetmesh-system"
	}
	if opts.Resolve == nil {
		opts.Resolve = resolve
	}
	if opts.TokenTTL <= 0 {
		opts.TokenTTL = DefaultTokenTTL
	}
	if opts.TokenRenewBefore <= 0 {
		opts.TokenRenewBefore = DefaultTokenRenewBefore
	}
	if opts.TokenRenewBefore >= opts.TokenTTL {
		return nil, fmt.Errorf("member tokens would be renewed at once: renew-before %s is not shorter than their life %s", opts.TokenRenewBefore, opts.TokenTTL)
	}
	f := &Federation{
		opts: opts, hub: mgr.GetClient(), events: mgr.GetEventRecorder("fleetmesh-federation"), metrics: newMetrics(opts.Registry),
		members: map[string]*memberConn{},
	}
	f.queue = batchqueue.New[request](batchqueue.Options{
		Name: "federation", Quiet: opts.Debounce, Max: opts.DebounceMax,
		// A failing sync is retried sooner than the periodic resync
		// would, and never later.
		RetryBase: time.Second, RetryMax: opts.Resync,
		OnError: func(err error) {
			f.metrics.syncErrors.Inc()
			opts.Log.Error(err, "federation sync")
		},
	})
	for _, obj := range []client.Object{&fmv1alpha1.Cluster{}, &corev1.Secret{}} {
		inf, err := mgr.GetCache().GetInformer(ctx, obj)
		if err != nil {
			return nil, err
		}
		if _, err := inf.AddEventHandler(f.everythingHandler()); err != nil {
			return nil, err
		}
	}
	return f, mgr.Add(f)
}

// everythingHandler recomputes the fleet on any change of the objects it
// watches, but the status the federation writes on Clusters.
func (f *Federation) everythingHandler() toolscache.ResourceEventHandlerFuncs {
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { f.poke() }, DeleteFunc: func(any) { f.poke() },
		UpdateFunc: func(prev, obj any) {
			if onlyStatus(prev, obj) {
				return
			}
			f.poke()
		},
	}
}

// onlyStatus reports whether a Cluster's update changed its status
// alone: the federation's own write, which changes no plan.
func onlyStatus(prev, obj any) bool {
	a, ok := prev.(*fmv1alpha1.Cluster)
	b, ok2 := obj.(*fmv1alpha1.Cluster)
	return ok && ok2 && a.Generation == b.Generation && maps.Equal(a.Labels, b.Labels) && maps.Equal(a.Annotations, b.Annotations) &&
		a.DeletionTimestamp.Equal(b.DeletionTimestamp)
}

// poke asks for a sync of the whole fleet.
func (f *Federation) poke() { f.queue.Add(fleet) }

// NeedLeaderElection is true: one federation writes at a time.
func (f *Federation) NeedLeaderElection() bool { return true }

// Start runs the sync loop until ctx ends.
func (f *Federation) Start(ctx context.Context) error {
	defer f.disconnectAll()
	// Probes run apart from syncs: a sync stuck on a member that stopped
	// answering must not keep the federation from noticing.
	go wait.UntilWithContext(ctx, func(ctx context.Context) {
		if f.probeAll(ctx) {
			f.poke()
		}
	}, f.opts.ProbeInterval)
	go wait.UntilWithContext(ctx, func(context.Context) { f.poke() }, f.opts.Resync)
	// A failed sync is retried whole: a failed write may have left any
	// part of the fleet behind.
	return f.queue.Run(ctx, fleet, func(ctx context.Context, batch []request) error {
		scope := scopeOf(batch)
		start, kind := time.Now(), syncKind(scope)
		err := f.sync(ctx, scope)
		f.metrics.syncs.WithLabelValues(kind).Inc()
		f.metrics.syncSeconds.WithLabelValues(kind).Observe(time.Since(start).Seconds())
		return err
	})
}

// syncKind names a sync in the metrics: full, or scoped to services.
func syncKind(scope map[string]bool) string {
	if scope == nil {
		return "full"
	}
	return "services"
}

// sync computes the plan and writes it: of the whole fleet when scope is
// nil (connecting to the members, resolving their gateways and writing
// their Clusters' status and the fleet's roots too), else of the services
// in scope (namespace/name) alone.
func (f *Federation) sync(ctx context.Context, scope map[string]bool) error {
	var clusters fmv1alpha1.ClusterList
	if err := f.hub.List(ctx, &clusters); err != nil {
		return fmt.Errorf("list Clusters in the control plane: %w", err)
	}
	var members []*Member
	var errs []error
	if scope == nil {
		members, errs = f.readFleet(ctx, clusters.Items)
	} else {
		members, errs = f.readServices(ctx, clusters.Items, scope)
	}
	plan := Compute(members)
	var fleetRoots map[string]map[string]string
	if scope == nil {
		fleetRoots = f.keepRoots(members)
		f.warnTrustDomains(clusters.Items, members)
		f.count(members, plan)
	}
	return errors.Join(append(errs, f.writeMembers(ctx, members, plan, fleetRoots))...)
}

// readFleet connects to every member, resolves its gateway, reads its
// objects and roots, and writes its Cluster's status.
func (f *Federation) readFleet(ctx context.Context, clusters []fmv1alpha1.Cluster) ([]*Member, []error) {
	var members []*Member
	var errs []error
	seen := map[string]bool{}
	// Members are connected side by side: one slow to answer delays no
	// other.
	conns := make([]*memberConn, len(clusters))
	var connecting sync.WaitGroup
	for i := range clusters {
		if c := &clusters[i]; !c.Spec.Mirrored {
			connecting.Go(func() { conns[i] = f.connect(ctx, c) })
		}
	}
	connecting.Wait()
	for i := range clusters {
		c := &clusters[i]
		if c.Spec.Mirrored {
			continue // a copy the federation wrote, not a member
		}
		seen[c.Name] = true
		conn := conns[i]
		m := &Member{Cluster: *c}
		ip, err := f.opts.Resolve(ctx, c.Spec.GatewayHost)
		gatewayCond := condition("GatewayResolved", err == nil, "Resolved", "gateway host resolved to "+ip, c.Generation)
		if err != nil {
			gatewayCond.Reason, gatewayCond.Message = fmv1alpha1.ReasonUnresolvableHost, err.Error()
		}
		m.GatewayIP = ip
		f.mu.Lock()
		usable := conn.state.reachable && conn.state.synced
		m.MCS = conn.info.mcs
		conn.info.gatewayIP = ip
		f.mu.Unlock()
		if usable {
			f.renewToken(ctx, c, conn)
			if err := readMember(ctx, conn.cluster.GetCache(), m); err != nil {
				errs = append(errs, err)
			} else if m.Roots, m.TrustDomain, err = readRoots(ctx, conn.cluster.GetCache(), f.opts.MemberNamespace); err != nil {
				errs = append(errs, fmt.Errorf("read the workload roots of %s: %w", m.name(), err))
			} else {
				m.Known = true
			}
		}
		members = append(members, m)
		errs = append(errs, f.writeClusterStatus(ctx, c, conn, gatewayCond, ip, m.Known))
	}
	f.disconnectGone(seen)
	return members, errs
}

// readServices reads the objects of the services in scope from every
// member connected now; the members' connections, gateways and roots are
// the last full sync's.
func (f *Federation) readServices(ctx context.Context, clusters []fmv1alpha1.Cluster, scope map[string]bool) ([]*Member, []error) {
	var members []*Member
	var errs []error
	for i := range clusters {
		c := &clusters[i]
		if c.Spec.Mirrored {
			continue
		}
		m := &Member{Cluster: *c, scope: scope}
		members = append(members, m)
		conn := f.member(c.Name)
		if conn == nil {
			continue // not connected since it joined: a full sync will
		}
		f.mu.Lock()
		usable := conn.state.reachable && conn.state.synced
		m.MCS, m.GatewayIP = conn.info.mcs, conn.info.gatewayIP
		f.mu.Unlock()
		if usable {
			if err := readScope(ctx, conn.cluster.GetCache(), m, scope); err != nil {
				errs = append(errs, err)
			} else {
				m.Known = true
			}
		}
	}
	return members, errs
}

// writeMembers writes every known member's share of the plan, and the
// fleet's roots where given; then, from what those writes did, the
// exports' conditions. Members are written side by side, each within a
// deadline, so a member that stops answering mid-sync delays no other.
func (f *Federation) writeMembers(ctx context.Context, members []*Member, plan *Plan, fleetRoots map[string]map[string]string) error {
	unknown := map[string]bool{}
	for _, m := range members {
		if !m.Known {
			unknown[m.name()] = true
		}
	}
	failures := f.eachMember(ctx, members, func(ctx context.Context, w *writer, m *Member) error {
		err := applyMember(ctx, w, m, plan.Members[m.name()], unknown)
		if fleetRoots != nil && len(m.Roots) > 0 {
			// A member without a workload signer has no use for them.
			q := &writeQueue{member: m.name()}
			q.fleetRoots(ctx, f, w, m, f.opts.MemberNamespace, fleetRoots[m.name()])
			err = errors.Join(err, q.run(ctx))
		}
		return err
	})
	// An export is Ready where this sync's writes made it so, never where
	// the plan only hoped to.
	markFailedImports(plan, failures)
	statusFailures := f.eachMember(ctx, members, func(ctx context.Context, w *writer, m *Member) error {
		return writeExportStatus(ctx, w, m, plan.Exports[m.name()])
	})
	var errs []error
	for _, m := range members {
		errs = append(errs, failures[m.name()], statusFailures[m.name()])
	}
	return errors.Join(errs...)
}

// eachMember calls write for every known member, side by side, each
// within applyTimeout (cut short when a probe finds the member gone), and
// returns the errors by member.
func (f *Federation) eachMember(ctx context.Context, members []*Member, write func(context.Context, *writer, *Member) error) map[string]error {
	var wg sync.WaitGroup
	errs := make([]error, len(members))
	for i, m := range members {
		if !m.Known {
			continue
		}
		conn := f.member(m.name())
		wg.Go(func() {
			actx, cancel := context.WithTimeout(ctx, applyTimeout)
			defer cancel()
			f.mu.Lock()
			conn.stopApply = cancel
			f.mu.Unlock()
			w := &writer{client: conn.client, metrics: f.metrics, events: conn.cluster.GetEventRecorder("fleetmesh-federation")}
			errs[i] = write(actx, w, m)
			f.mu.Lock()
			conn.stopApply = nil
			f.mu.Unlock()
		})
	}
	wg.Wait()
	failures := map[string]error{}
	for i, err := range errs {
		if err != nil {
			failures[members[i].name()] = err
		}
	}
	return failures
}

// markFailedImports turns Ready false on every export whose import a
// member failed to write, naming the member and why: an export must not
// say it is imported where it is not.
func markFailedImports(plan *Plan, failures map[string]error) {
	if len(failures) == 0 {
		return
	}
	for exporter, exports := range plan.Exports {
		for key, conds := range exports {
			var failed []string
			for importer, d := range plan.Members {
				if err := failures[importer]; err != nil && importer != exporter && (d.Imports[key] != nil || d.MCSImports[key] != nil) {
					failed = append(failed, fmt.Sprintf("%s (%s)", importer, firstLine(err)))
				}
			}
			if len(failed) == 0 {
				continue
			}
			slices.Sort(failed)
			for i := range conds {
				if conds[i].Type == fmv1alpha1.ConditionReady && conds[i].Status == metav1.ConditionTrue {
					conds[i].Status, conds[i].Reason = metav1.ConditionFalse, fmv1alpha1.ReasonImportFailed
					conds[i].Message = "imports could not be written in " + strings.Join(failed, ", ")
				}
			}
		}
	}
}

// firstLine is an error's first line, cut short: a condition message, not
// a log.
func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// readMember lists the member's objects from its cache.
func readMember(ctx context.Context, r client.Reader, m *Member) error {
	var (
		ns  corev1.NamespaceList
		svc corev1.ServiceList
		eps discoveryv1.EndpointSliceList
		ing networkingv1.IngressList
		exp fmv1alpha1.ServiceExportList
		imp fmv1alpha1.ServiceImportList
	)
	lists := []client.ObjectList{&ns, &svc, &eps, &ing, &exp, &imp}
	var mcsExp mcsv1beta1.ServiceExportList
	var mcsImp mcsv1beta1.ServiceImportList
	if m.MCS {
		lists = append(lists, &mcsExp, &mcsImp)
	}
	for _, l := range lists {
		if err := r.List(ctx, l); err != nil {
			return fmt.Errorf("list %T in %s: %w", l, m.name(), err)
		}
	}
	m.Namespaces, m.Services, m.EndpointSlices, m.Ingresses, m.Exports, m.Imports = ns.Items, svc.Items, eps.Items, ing.Items, exp.Items, imp.Items
	m.MCSExports, m.MCSImports = mcsExp.Items, mcsImp.Items
	return nil
}
