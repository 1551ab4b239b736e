package federation

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/cluster"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
	"github.com/fleetmesh/fleetmesh/pkg/internal/capabilities"
	"github.com/fleetmesh/fleetmesh/pkg/signer"
)

// memberConn is the federation's connection to one member: a client and
// a cache made from its sanitised kubeconfig (of configHash), stopped by
// cancel; how the connection fares; and what the member offers.
type memberConn struct {
	name       string
	configHash [32]byte
	cancel     context.CancelFunc
	// client, cluster and probe are set once connected.
	client  client.Client
	cluster cluster.Cluster
	probe   func(ctx context.Context) error
	// stopApply cancels the writes of a sync under way to this member, when
	// a probe finds it gone.
	stopApply context.CancelFunc
	state     memberState
	info      memberInfo
}

// memberState is how a member's connection fares: what its Cluster's
// Ready condition says.
type memberState struct {
	// dialing says a connection is being made in the background; synced
	// that its cache has read the member; reachable that it answers now.
	dialing, synced, reachable bool
	// retryAt is when a failed connection may be tried again; redial asks
	// for a new connection (the MCS API appeared since).
	retryAt time.Time
	redial  bool
	// reason and message say why it is not reachable; staleSince since
	// when.
	reason, message string
	staleSince      *metav1.Time
}

// memberInfo is what a member offers, found when it was connected: the
// MCS API, its Kubernetes version and the conditions saying what it
// offers (MCSAPI, PodCertificates, NativeSidecars); and its gateway's
// address as the last full sync resolved it.
type memberInfo struct {
	mcs          bool
	version      string
	capabilities []metav1.Condition
	gatewayIP    string
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

func (f *Federation) member(name string) *memberConn {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.members[name]
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
	if cur != nil && cur.configHash == hash && !cur.state.redial && (cur.cluster != nil || cur.state.dialing || time.Now().Before(cur.state.retryAt)) {
		return cur // connected, connecting, or failed a moment ago
	}
	if cur != nil {
		f.disconnect(cur)
	}
	cctx, cancel := context.WithCancel(ctx)
	conn := &memberConn{
		name: c.Name, configHash: hash, cancel: cancel,
		state: memberState{dialing: true, reason: fmv1alpha1.ReasonConnecting, message: "connecting to the member's API server"},
	}
	f.members[c.Name] = conn
	if err != nil {
		conn.state.dialing, conn.state.retryAt = false, time.Now().Add(retryAfter)
		conn.state.reason, conn.state.message = fmv1alpha1.ReasonBadKubeconfig, err.Error()
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
		conn.state.dialing, conn.state.retryAt = false, time.Now().Add(retryAfter)
		conn.state.reason, conn.state.message = reason, message
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
	conn.info.mcs, conn.info.version, conn.info.capabilities = mcs, info.GitVersion, caps
	conn.probe = func(context.Context) error {
		if _, err := pc.ServerVersion(); err != nil {
			return err
		}
		if !mcs {
			// The MCS API installed since: connect again to read it.
			if now, err := capabilities.ServesMCS(pc); err == nil && now {
				f.mu.Lock()
				conn.state.redial = true
				f.mu.Unlock()
				f.poke()
			}
		}
		return nil
	}
	conn.state.message = "reading the member's objects"
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
	conn.state.dialing = false
	conn.state.synced, conn.state.reachable = ok, ok
	if ok {
		conn.state.reason, conn.state.message = "", ""
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
		probe, failed, retryAt := c.probe, c.cluster == nil && !c.state.dialing, c.state.retryAt
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
	was := c.state.reachable
	c.state.reachable = err == nil && c.state.synced
	if err != nil {
		c.state.reason, c.state.message = probeReason(err)
		if c.state.staleSince == nil {
			c.state.staleSince = &metav1.Time{Time: time.Now()}
		}
	} else {
		c.state.staleSince = nil
	}
	if was && !c.state.reachable && c.stopApply != nil {
		c.stopApply()
	}
	if was != c.state.reachable {
		f.opts.Log.Info("member reachability changed", "member", c.name, "reachable", c.state.reachable)
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
