package federation

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/cluster"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
	"github.com/fleetmesh/fleetmesh/pkg/internal/batchqueue"
	"github.com/fleetmesh/fleetmesh/pkg/internal/capabilities"
	"github.com/fleetmesh/fleetmesh/pkg/signer"
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

// memberConn is the federation's connection to one member.
type memberConn struct {
	name       string
	configHash [32]byte
	client     client.Client
	cluster    cluster.Cluster
	cancel     context.CancelFunc
	probe      func(ctx context.Context) error
	synced     bool
	reachable  bool
	// dialing says a connection is being made in the background.
	dialing bool
	// stopApply cancels the writes of a sync under way to this member, when
	// a probe finds it gone.
	stopApply context.CancelFunc
	// retryAt is when a failed connection may be tried again.
	retryAt    time.Time
	reason     string
	message    string
	staleSince *metav1.Time
	// gatewayIP is the member's gateway host as the last full sync
	// resolved it.
	gatewayIP string
	// mcs says the member serves the MCS API; redial asks for a new
	// connection (the MCS API appeared since). version is its Kubernetes
	// version and capabilities the conditions saying what it offers
	// (MCSAPI, PodCertificates, NativeSidecars), found when it was
	// connected.
	mcs          bool
	redial       bool
	version      string
	capabilities []metav1.Condition
}

// memberQPS is the request rate the federation allows itself per member.
const memberQPS = 200

// applyTimeout bounds the writes to one member in one sync.
const applyTimeout = 2 * time.Minute

// retryAfter is how long a member that could not be connected to waits
// before the next try.
const retryAfter = 10 * time.Second

// watchedInMembers are the kinds the federation reads in every member.
var watchedInMembers = []client.Object{
	&corev1.Namespace{}, &corev1.Service{}, &discoveryv1.EndpointSlice{}, &networkingv1.Ingress{},
	&fmv1alpha1.ServiceExport{}, &fmv1alpha1.ServiceImport{}, &fmv1alpha1.Cluster{},
}

// mcsKinds are the MCS API's kinds the federation reads in the members
// that serve it.
var mcsKinds = []client.Object{&mcsv1beta1.ServiceExport{}, &mcsv1beta1.ServiceImport{}}

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
		usable := conn.reachable && conn.synced
		m.MCS = conn.mcs
		conn.gatewayIP = ip
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
		usable := conn.reachable && conn.synced
		m.MCS, m.GatewayIP = conn.mcs, conn.gatewayIP
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

func (f *Federation) member(name string) *memberConn {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.members[name]
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

// kubeconfig returns a Cluster's kubeconfig, inline or from its Secret.
func (f *Federation) kubeconfig(ctx context.Context, c *fmv1alpha1.Cluster) ([]byte, error) {
	if ref := c.Spec.KubeconfigSecretRef; ref != nil && f.opts.SecretNamespace != "" && ref.Namespace != f.opts.SecretNamespace {
		return nil, fmt.Errorf("spec.kubeconfigSecretRef.namespace %q: fleetmesh reads member credentials only from namespace %s", ref.Namespace, f.opts.SecretNamespace)
	}
	return Kubeconfig(ctx, f.hub, c)
}

// MemberConfig is the client configuration of a Cluster's kubeconfig
// (Kubeconfig), sanitised (SanitizeKubeconfig): an error names the field
// of the Cluster it came from and the field of the kubeconfig.
func MemberConfig(ctx context.Context, r client.Reader, c *fmv1alpha1.Cluster) (*rest.Config, error) {
	data, err := Kubeconfig(ctx, r, c)
	if err != nil {
		return nil, err
	}
	return memberRESTConfig(c, data)
}

// memberRESTConfig is MemberRESTConfig of c's kubeconfig, data, its error
// naming where in c the kubeconfig is.
func memberRESTConfig(c *fmv1alpha1.Cluster, data []byte) (*rest.Config, error) {
	cfg, err := MemberRESTConfig(data)
	if err == nil {
		return cfg, nil
	}
	if ref := c.Spec.KubeconfigSecretRef; c.Spec.Kubeconfig == "" && ref != nil {
		return nil, fmt.Errorf("spec.kubeconfigSecretRef (Secret %s/%s, key %s): %w", ref.Namespace, ref.Name, cmp.Or(ref.Key, "kubeconfig"), err)
	}
	return nil, fmt.Errorf("spec.kubeconfig: %w", err)
}

// Kubeconfig returns a Cluster's kubeconfig, inline or from the Secret of
// spec.kubeconfigSecretRef (key "kubeconfig" by default), read from the
// control-plane cluster r.
func Kubeconfig(ctx context.Context, r client.Reader, c *fmv1alpha1.Cluster) ([]byte, error) {
	if c.Spec.Kubeconfig != "" {
		return []byte(c.Spec.Kubeconfig), nil
	}
	ref := c.Spec.KubeconfigSecretRef
	if ref == nil {
		return nil, errors.New("spec.kubeconfig and spec.kubeconfigSecretRef are both empty")
	}
	var s corev1.Secret
	if err := r.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, &s); err != nil {
		return nil, fmt.Errorf("spec.kubeconfigSecretRef: get Secret %s/%s: %w", ref.Namespace, ref.Name, err)
	}
	key := ref.Key
	if key == "" {
		key = "kubeconfig"
	}
	data, ok := s.Data[key]
	if !ok {
		return nil, fmt.Errorf("spec.kubeconfigSecretRef: Secret %s/%s has no key %q", ref.Namespace, ref.Name, key)
	}
	return data, nil
}

// connect returns the member's connection. A new member, or one whose
// kubeconfig changed or whose last try failed a while ago, is connected to
// in the background: the sync goes on without it (its last contributions
// kept), and the connection pokes a sync once it is made or has failed. A
// slow API server thus delays no other member.
func (f *Federation) connect(ctx context.Context, c *fmv1alpha1.Cluster) *memberConn {
	data, err := f.kubeconfig(ctx, c)
	hash := sha256.Sum256(data)
	var cfg *rest.Config
	if err == nil {
		// Refused here, what the kubeconfig would run or read never is.
		cfg, err = memberRESTConfig(c, data)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	cur := f.members[c.Name]
	if cur != nil && cur.configHash == hash && !cur.redial && (cur.cluster != nil || cur.dialing || time.Now().Before(cur.retryAt)) {
		return cur // connected, connecting, or failed a moment ago
	}
	if cur != nil {
		f.disconnect(cur)
	}
	cctx, cancel := context.WithCancel(ctx)
	conn := &memberConn{
		name: c.Name, configHash: hash, cancel: cancel, dialing: true,
		reason: fmv1alpha1.ReasonConnecting, message: "connecting to the member's API server",
	}
	f.members[c.Name] = conn
	if err != nil {
		conn.dialing, conn.retryAt = false, time.Now().Add(retryAfter)
		conn.reason, conn.message = fmv1alpha1.ReasonBadKubeconfig, err.Error()
		return conn
	}
	go f.dial(cctx, conn, cfg)
	return conn
}

// dial connects to a member: checks that its API server answers and lets
// the credentials read what the federation watches, then reads its
// objects (as long as that takes), and pokes a sync.
func (f *Federation) dial(ctx context.Context, conn *memberConn, cfg *rest.Config) {
	defer f.poke()
	fail := func(reason, message string) {
		f.mu.Lock()
		defer f.mu.Unlock()
		conn.dialing, conn.retryAt = false, time.Now().Add(retryAfter)
		conn.reason, conn.message = reason, message
	}
	cfg.Timeout = 5 * time.Second
	// client-go's default of 5 requests a second would make a fleet of a
	// thousand services take minutes to write.
	cfg.QPS, cfg.Burst = memberQPS, 2*memberQPS
	probeCfg := rest.CopyConfig(cfg)
	probeCfg.Timeout = 3 * time.Second
	pc, err := discovery.NewDiscoveryClientForConfig(probeCfg)
	if err != nil {
		fail(fmv1alpha1.ReasonBadKubeconfig, err.Error())
		return
	}
	info, err := pc.ServerVersion()
	if err != nil {
		fail(probeReason(err))
		return
	}
	c, err := client.New(cfg, client.Options{Scheme: f.opts.Scheme})
	if err != nil {
		fail(fmv1alpha1.ReasonBadKubeconfig, err.Error())
		return
	}
	mcs, caps, err := memberCapabilities(pc, info)
	if err != nil {
		fail(fmv1alpha1.ReasonUnreachable, err.Error())
		return
	}
	watched := slices.Clone(watchedInMembers)
	if mcs {
		watched = append(watched, mcsKinds...)
	}
	// A cache that may not list waits out its sync timeout and says
	// nothing of why: ask first, so the Cluster names what is refused.
	if reason, message := f.checkAccess(ctx, c, watched); reason != "" {
		fail(reason, message)
		return
	}
	cl, err := cluster.New(cfg, func(o *cluster.Options) {
		o.Scheme, o.Logger = f.opts.Scheme, f.opts.Log.WithValues("member", conn.name)
		o.Cache.ByObject = map[client.Object]cache.ByObject{&corev1.ConfigMap{}: rootsCache(f.opts.MemberNamespace)}
	})
	if err != nil {
		fail(fmv1alpha1.ReasonBadKubeconfig, err.Error())
		return
	}
	// A change to one service's objects recomputes that service; the
	// roots, the fleet.
	if err := cl.GetFieldIndexer().IndexField(ctx, &discoveryv1.EndpointSlice{}, sliceServiceField, indexSliceService); err != nil {
		fail(fmv1alpha1.ReasonUnreachable, "index EndpointSlices: "+err.Error())
		return
	}
	for _, obj := range append(watched, &corev1.ConfigMap{}) {
		inf, err := cl.GetCache().GetInformer(ctx, obj)
		if err == nil {
			handler := f.memberHandler()
			if _, roots := obj.(*corev1.ConfigMap); roots {
				handler = f.everythingHandler()
			}
			_, err = inf.AddEventHandler(handler)
		}
		if err != nil {
			fail(fmv1alpha1.ReasonUnreachable, fmt.Sprintf("watch %T: %v", obj, err))
			return
		}
	}
	f.mu.Lock()
	conn.client, conn.cluster = c, cl
	conn.mcs, conn.version, conn.capabilities = mcs, info.GitVersion, caps
	conn.probe = func(context.Context) error {
		if _, err := pc.ServerVersion(); err != nil {
			return err
		}
		if !mcs {
			// The MCS API installed since: connect again to read it.
			if now, err := capabilities.ServesMCS(pc); err == nil && now {
				f.mu.Lock()
				conn.redial = true
				f.mu.Unlock()
				f.poke()
			}
		}
		return nil
	}
	conn.message = "reading the member's objects"
	f.mu.Unlock()
	go func() { _ = cl.Start(ctx) }()
	// The first read may take long (a slow API server, a big cluster);
	// it ends when every object is read or the connection is dropped.
	f.setSynced(conn, cl.GetCache().WaitForCacheSync(ctx))
}

// memberCapabilities asks a member's API server what it offers that
// fleetmesh depends on and older Kubernetes lacks: whether it serves the
// MCS API, and the Cluster conditions saying so (MCSAPI, PodCertificates,
// NativeSidecars; each False with what to do).
func memberCapabilities(d discovery.DiscoveryInterface, info *version.Info) (bool, []metav1.Condition, error) {
	capability := func(typ string, ok bool, yes, no, message, why string) metav1.Condition {
		if ok {
			return metav1.Condition{Type: typ, Status: metav1.ConditionTrue, Reason: yes, Message: message}
		}
		return metav1.Condition{Type: typ, Status: metav1.ConditionFalse, Reason: no, Message: why}
	}
	mcs, mcsWhy, err := capabilities.MCS(d)
	if err != nil {
		return false, nil, fmt.Errorf("the member's API server did not say whether it serves the MCS API: %w", err)
	}
	certs, certsWhy, err := capabilities.PodCertificates(d)
	if err != nil {
		return false, nil, fmt.Errorf("the member's API server did not say whether it serves PodCertificateRequests: %w", err)
	}
	sidecars, sidecarsWhy := capabilities.NativeSidecars(info)
	return mcs, []metav1.Condition{
		capability(fmv1alpha1.ConditionMCSAPI, mcs, fmv1alpha1.ReasonServed, fmv1alpha1.ReasonNotServed,
			"the member serves multicluster.x-k8s.io/v1beta1: its MCS exports are read and imports written", mcsWhy),
		capability(fmv1alpha1.ConditionPodCertificates, certs, fmv1alpha1.ReasonServed, fmv1alpha1.ReasonNotServed,
			"the member issues pod certificates: manifests/member's proxies get workload certificates", certsWhy),
		capability(fmv1alpha1.ConditionNativeSidecars, sidecars, fmv1alpha1.ReasonSupported, fmv1alpha1.ReasonUnsupported,
			"the member runs native sidecars: the injected proxy is one", sidecarsWhy),
	}, nil
}

// setSynced records that a member's objects have been read (or could not
// be).
func (f *Federation) setSynced(conn *memberConn, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	conn.dialing = false
	conn.synced, conn.reachable = ok, ok
	if ok {
		conn.reason, conn.message = "", ""
	}
	f.opts.Log.Info("member connected", "member", conn.name, "synced", ok)
}

// checkAccess lists one object of each kind the federation watches in a
// member and returns, for the first its credentials may not read, the
// reason Forbidden and what to grant.
func (f *Federation) checkAccess(ctx context.Context, c client.Client, watched []client.Object) (string, string) {
	for _, obj := range watched {
		gvk, err := c.GroupVersionKindFor(obj)
		if err != nil {
			continue
		}
		list := &metav1.PartialObjectMetadataList{}
		list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
		err = c.List(ctx, list, client.Limit(1))
		switch {
		case apierrors.IsForbidden(err):
			return fmv1alpha1.ReasonForbidden, fmt.Sprintf("the member's credentials may not list %s: apply manifests/member there (ClusterRole fleetmesh-federation-member) and join it again, or use credentials that may (%v)", strings.ToLower(gvk.Kind)+"s", err)
		case err != nil && !meta.IsNoMatchError(err) && !apierrors.IsNotFound(err):
			// It answered its health check but not this: too slow, or
			// gone since.
			return fmv1alpha1.ReasonUnreachable, fmt.Sprintf("the member's API server did not list %s: %v", strings.ToLower(gvk.Kind)+"s", err)
		}
	}
	// The workload roots, read as rootsCache does.
	roots := rootsCache(f.opts.MemberNamespace)
	err := c.List(ctx, &corev1.ConfigMapList{}, client.InNamespace(f.opts.MemberNamespace), client.MatchingFieldsSelector{Selector: roots.Field}, client.Limit(1))
	if apierrors.IsForbidden(err) {
		return fmv1alpha1.ReasonForbidden, fmt.Sprintf("the member's credentials may not list the workload roots (ConfigMap %s/%s): apply manifests/member there (Role fleetmesh-federation-roots) and join it again, or use credentials that may (%v)", f.opts.MemberNamespace, signer.RootsConfigMap, err)
	}
	return "", ""
}

func probeReason(err error) (string, string) {
	switch {
	case apierrors.IsUnauthorized(err), apierrors.IsForbidden(err):
		return fmv1alpha1.ReasonUnauthorized, "the API server refused the kubeconfig's credentials: " + err.Error()
	default:
		return fmv1alpha1.ReasonUnreachable, "the API server cannot be reached: " + err.Error()
	}
}

// probeAll checks every connected member; it reports whether one became
// reachable or unreachable.
func (f *Federation) probeAll(ctx context.Context) bool {
	f.mu.Lock()
	conns := make([]*memberConn, 0, len(f.members))
	for _, c := range f.members {
		conns = append(conns, c)
	}
	f.mu.Unlock()
	var (
		changedMu sync.Mutex
		changed   bool
		probing   sync.WaitGroup
	)
	// Side by side: a member that takes its 3 s to time out delays no
	// other's probe.
	for _, c := range conns {
		f.mu.Lock()
		probe, failed, retryAt := c.probe, c.cluster == nil && !c.dialing, c.retryAt
		f.mu.Unlock()
		if probe == nil {
			if failed && !retryAt.IsZero() && time.Now().After(retryAt) {
				changedMu.Lock()
				changed = true // time to try connecting again
				changedMu.Unlock()
			}
			continue
		}
		probing.Go(func() {
			if f.probeOne(ctx, c, probe) {
				changedMu.Lock()
				changed = true
				changedMu.Unlock()
			}
		})
	}
	probing.Wait()
	return changed
}

// probeOne probes one member; it reports whether its reachability changed.
func (f *Federation) probeOne(ctx context.Context, c *memberConn, probe func(context.Context) error) bool {
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	err := probe(pctx)
	cancel()
	f.mu.Lock()
	defer f.mu.Unlock()
	was := c.reachable
	c.reachable = err == nil && c.synced
	if err != nil {
		c.reason, c.message = probeReason(err)
		if c.staleSince == nil {
			c.staleSince = &metav1.Time{Time: time.Now()}
		}
	} else {
		c.staleSince = nil
	}
	if was && !c.reachable && c.stopApply != nil {
		c.stopApply()
	}
	if was != c.reachable {
		f.opts.Log.Info("member reachability changed", "member", c.name, "reachable", c.reachable)
		return true
	}
	return false
}

func (f *Federation) disconnect(c *memberConn) {
	if c.cancel != nil {
		c.cancel()
	}
}

func (f *Federation) disconnectGone(seen map[string]bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for name, c := range f.members {
		if !seen[name] {
			f.disconnect(c)
			delete(f.members, name)
			f.opts.Log.Info("member left", "member", name)
		}
	}
}

func (f *Federation) disconnectAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.members {
		f.disconnect(c)
	}
}

// writeClusterStatus reports a member's conditions on its Cluster object.
func (f *Federation) writeClusterStatus(ctx context.Context, c *fmv1alpha1.Cluster, conn *memberConn, gateway metav1.Condition, ip string, known bool) error {
	f.mu.Lock()
	reachable, reason, message, stale, dialing := conn.reachable, conn.reason, conn.message, conn.staleSince, conn.dialing
	connected, version, caps := conn.cluster != nil, conn.version, conn.capabilities
	f.mu.Unlock()
	next := c.DeepCopy()
	ready := condition(fmv1alpha1.ConditionReady, reachable, "Reachable", "the member's API server answers with these credentials", c.Generation)
	if !reachable {
		ready.Reason, ready.Message = reason, message
	}
	joined := condition(fmv1alpha1.ConditionJoined, known, "Joined", "the member takes part in the federation", c.Generation)
	if !known {
		joined.Reason, joined.Message = "NotSynced", "the member's objects are not read now; its last contributions are kept"
	}
	prev := meta.FindStatusCondition(c.Status.Conditions, fmv1alpha1.ConditionReady)
	if dialing && prev != nil && prev.ObservedGeneration == c.Generation {
		// What the status says was found with these credentials; a
		// restarted federation does not report itself connecting.
		return nil
	}
	if (prev == nil || prev.Status != ready.Status || prev.Reason != ready.Reason) && reason != fmv1alpha1.ReasonConnecting {
		if reachable {
			f.events.Eventf(c, nil, corev1.EventTypeNormal, "Joined", "Join", "the member's API server answers; it takes part in the federation")
		} else {
			f.events.Eventf(c, nil, corev1.EventTypeWarning, ready.Reason, "Connect", "%s", ready.Message)
		}
	}
	meta.SetStatusCondition(&next.Status.Conditions, ready)
	meta.SetStatusCondition(&next.Status.Conditions, joined)
	meta.SetStatusCondition(&next.Status.Conditions, gateway)
	if connected {
		for _, cond := range caps {
			cond.ObservedGeneration = c.Generation
			meta.SetStatusCondition(&next.Status.Conditions, cond)
		}
		next.Status.KubernetesVersion = version
	}
	next.Status.ClusterKey = string(c.Key())
	next.Status.GatewayIP = ip
	next.Status.StaleSince = stale
	// lastSyncTime moves with every other change, and at most every 30s
	// otherwise: each status write wakes the federation up again.
	changed := !equality.Semantic.DeepEqual(withoutTimes(c.Status), withoutTimes(next.Status))
	if known && (changed || c.Status.LastSyncTime == nil || time.Since(c.Status.LastSyncTime.Time) > 30*time.Second) {
		now := metav1.Now()
		next.Status.LastSyncTime = &now
		changed = true
	}
	if !changed {
		return nil
	}
	if err := f.hub.Status().Patch(ctx, next, client.MergeFrom(c), client.FieldOwner(FieldOwner)); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("write status of Cluster %s: %w", c.Name, err)
	}
	return nil
}

// count updates the membership and export gauges.
func (f *Federation) count(members []*Member, plan *Plan) {
	f.mu.Lock()
	states := map[string]float64{"joined": 0, "unreachable": 0, "failed": 0}
	for _, m := range members {
		conn := f.members[m.name()]
		switch {
		case m.Known:
			states["joined"]++
		case conn != nil && conn.cluster != nil:
			states["unreachable"]++
		default:
			states["failed"]++
		}
	}
	f.mu.Unlock()
	for state, n := range states {
		f.metrics.members.WithLabelValues(state).Set(n)
	}
	exports := map[string]float64{"valid": 0, "invalid": 0, "conflict": 0}
	for _, byKey := range plan.Exports {
		for _, conds := range byKey {
			switch {
			case !meta.IsStatusConditionTrue(conds, fmv1alpha1.ConditionValid):
				exports["invalid"]++
			case meta.IsStatusConditionTrue(conds, fmv1alpha1.ConditionConflict):
				exports["conflict"]++
			default:
				exports["valid"]++
			}
		}
	}
	for state, n := range exports {
		f.metrics.exports.WithLabelValues(state).Set(n)
	}
}

// withoutTimes is a status without the times that change on their own.
func withoutTimes(st fmv1alpha1.ClusterStatus) fmv1alpha1.ClusterStatus {
	st = *st.DeepCopy()
	st.LastSyncTime = nil
	for i := range st.Conditions {
		st.Conditions[i].LastTransitionTime = metav1.Time{}
	}
	return st
}

// resolve turns a host into an IP (an IP stays as it is).
func resolve(ctx context.Context, host string) (string, error) {
	if host == "" {
		return "", errors.New("spec.gatewayHost is empty: the member is reachable only on a shared network")
	}
	if ip := net.ParseIP(host); ip != nil {
		return ip.String(), nil
	}
	rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupIP(rctx, "ip", host)
	if err != nil {
		return "", fmt.Errorf("spec.gatewayHost %q does not resolve: %w", host, err)
	}
	if len(addrs) == 0 {
		return "", fmt.Errorf("spec.gatewayHost %q resolves to no address", host)
	}
	return addrs[0].String(), nil
}
