// Package controller runs fleetmesh's control plane for one cluster:
// discovery (watching the cluster's API server) feeding the xDS server, the
// debug API, and (with --federation) the federation of member clusters.
// cmd/fleetmesh-controller only parses flags and calls Run.
package controller

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/credentials"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime"
	kubediscovery "k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
	"github.com/fleetmesh/fleetmesh/pkg/bootstrap"
	"github.com/fleetmesh/fleetmesh/pkg/discovery"
	"github.com/fleetmesh/fleetmesh/pkg/federation"
	"github.com/fleetmesh/fleetmesh/pkg/inject"
	"github.com/fleetmesh/fleetmesh/pkg/internal/capabilities"
	"github.com/fleetmesh/fleetmesh/pkg/memberguard"
	"github.com/fleetmesh/fleetmesh/pkg/model"
	"github.com/fleetmesh/fleetmesh/pkg/pki"
	"github.com/fleetmesh/fleetmesh/pkg/scheme"
	"github.com/fleetmesh/fleetmesh/pkg/signer"
	"github.com/fleetmesh/fleetmesh/pkg/version"
	"github.com/fleetmesh/fleetmesh/pkg/xds"
)

// Options are fleetmesh-controller's settings (README, "The control
// plane: fleetmesh-controller").
type Options struct {
	Kubeconfig   string
	ClusterName  string
	XDSAddress   string
	DebugAddress string
	// DebugAuth says who may read the debug API: AuthKubernetes (the
	// default: HTTPS, callers authenticated and authorized by the API
	// server) or AuthNone (plain HTTP, anyone: a lab).
	DebugAuth string
	// MetricsAuth says who may read /metrics: AuthKubernetes (the
	// default: RBAC get on the nonResourceURL /metrics) or AuthNone.
	MetricsAuth    string
	Federation     bool
	LeaderElection bool
	DebounceAfter  time.Duration
	DebounceMax    time.Duration
	LogDev         bool
	// XDS shapes the ADS server's connections.
	XDS xds.GRPCOptions
	// XDSConnectionsPerSecond bounds new ADS connections (0: no bound).
	XDSConnectionsPerSecond int

	// Namespace is where fleetmesh runs: its Secrets and Service.
	Namespace string
	// GatewayServiceAccount is who the cluster's gateways run as, in
	// Namespace.
	GatewayServiceAccount string
	// Inject serves the sidecar injection webhook.
	Inject bool
	// WorkloadSigner issues the pods' workload certificates (signer
	// fleetmesh.io/workload).
	WorkloadSigner  bool
	TrustDomain     string
	WorkloadCertTTL time.Duration
	// FleetTrust: see signer.Options.
	FleetTrust string
	// WorkloadCAOverlap and WorkloadCACheck: see signer.Options.
	WorkloadCAOverlap, WorkloadCACheck time.Duration
	// XDSTLS serves ADS over TLS to authenticated workloads only.
	XDSTLS bool
	// XDSInsecurePlaintext serves ADS in plaintext to anyone who reaches
	// XDSAddress: a lab only. Without it or XDSTLS the controller does not
	// start (unless XDSAddress is XDSOff).
	XDSInsecurePlaintext bool
	// XDSTokenAuth also lets in, with XDSTLS, workloads that present a
	// ServiceAccount token (audience fleetmesh, bound to their pod)
	// instead of a certificate.
	XDSTokenAuth bool
	// ProxyCredential is what injected sidecars authenticate with:
	// ProxyCredentialCertificate (a pod certificate) or
	// ProxyCredentialToken (a ServiceAccount token, for clusters without
	// pod certificates; implies XDSTokenAuth).
	ProxyCredential string
	// WebhookAddress is where the webhook server listens (TLS).
	WebhookAddress string
	// WebhookCertDir holds tls.crt and tls.key for the webhook server.
	WebhookCertDir string
	// ManageWebhookCerts issues and renews the webhook's certificate and
	// patches the webhook configuration's caBundle.
	ManageWebhookCerts bool
	// WebhookService and WebhookConfigName name the Service in front of
	// the webhook and the MutatingWebhookConfiguration.
	WebhookService    string
	WebhookConfigName string
	// GuardConfigName names the ValidatingWebhookConfiguration of the
	// member's check of the federation's writes (memberguard).
	GuardConfigName string
	// CertCheckEvery is how often the webhook certificate is checked.
	CertCheckEvery time.Duration
	// MemberTokenTTL and MemberTokenRenewBefore: the federation renews a
	// member's ServiceAccount token (from fleetmesh cluster join) this long
	// before it expires, for this long.
	MemberTokenTTL, MemberTokenRenewBefore time.Duration
	// FederationResync is how often the federation recomputes the whole
	// fleet however little changed.
	FederationResync time.Duration
	// KubeconfigSecretNamespace, when set, is the one namespace whose
	// Secrets the federation reads (and may read: RBAC grants no more).
	KubeconfigSecretNamespace string
	// Injection configures the injected sidecar (cluster name, xDS
	// address and version are filled in when empty).
	Injection inject.Config
}

// BindFlags registers the options' flags.
func (o *Options) BindFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.Kubeconfig, "kubeconfig", "", "path to a kubeconfig for this cluster's API server (default: in-cluster)")
	fs.StringVar(&o.ClusterName, "cluster-name", "", "this cluster's name, as in its Cluster object (default: learned from the Cluster copy the federation labels fleetmesh.io/local=true)")
	fs.StringVar(&o.XDSAddress, "xds-address", ":15010", "address of the ADS server (gRPC); "+XDSOff+" serves none (a control-plane cluster that meshes no pods)")
	fs.StringVar(&o.DebugAddress, "debug-address", ":15014", "address of /debug/config_dump, /debug/syncz, /debug/pprof, /metrics, /healthz and /readyz")
	fs.StringVar(&o.DebugAuth, "debug-auth", AuthKubernetes, "who may read the debug API: "+AuthKubernetes+" (HTTPS; a bearer token or client certificate of this cluster, and RBAC get/list on proxies.fleetmesh.io) or "+AuthNone+" (plain HTTP, anyone who reaches the port: a lab only); /healthz, /readyz and /version answer anyone")
	fs.StringVar(&o.MetricsAuth, "metrics-auth", AuthKubernetes, "who may read /metrics: "+AuthKubernetes+" (RBAC get on the nonResourceURL /metrics) or "+AuthNone+" (anyone who reaches the port)")
	fs.BoolVar(&o.Federation, "federation", false, "also run the federation for the Cluster objects in this API server")
	fs.BoolVar(&o.LeaderElection, "leader-elect", false, "elect one writer among replicas (of status, and with --federation the federation) through a lease in --namespace; every replica serves xDS")
	fs.DurationVar(&o.DebounceAfter, "debounce-after", 100*time.Millisecond, "quiet period after a change before the mesh is rebuilt")
	fs.DurationVar(&o.DebounceMax, "debounce-max", time.Second, "longest a burst of changes may delay a rebuild")
	fs.BoolVar(&o.LogDev, "log-development", false, "human-readable logs instead of JSON")
	fs.DurationVar(&o.XDS.MaxConnectionAge, "xds-max-connection-age", 30*time.Minute, "close an ADS connection this long after it opened, so proxies spread over the replicas again after a rollout (0: never)")
	fs.DurationVar(&o.XDS.MaxConnectionAgeGrace, "xds-max-connection-age-grace", 10*time.Second, "how long a closing ADS connection's streams may go on")
	o.XDS.MaxStreamsPerConnection = 100
	fs.Func("xds-max-streams-per-connection", "the most ADS streams one connection may open (default 100)", func(v string) error {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n == 0 {
			return fmt.Errorf("%q is not a positive number", v)
		}
		o.XDS.MaxStreamsPerConnection = uint32(n)
		return nil
	})
	fs.IntVar(&o.XDS.MaxRequestBytes, "xds-max-request-bytes", xds.DefaultMaxRequestBytes, "the largest request a proxy may send (a DiscoveryRequest with the names it subscribes to); a larger one ends its stream with ResourceExhausted")
	fs.IntVar(&o.XDSConnectionsPerSecond, "xds-connections-per-second", 100, "admit at most this many new ADS connections a second, so proxies reconnecting at once are let in at a pace the control plane serves (0: no bound)")

	ns := os.Getenv("POD_NAMESPACE")
	if ns == "" {
		ns = "fleetmesh-system"
	}
	fs.StringVar(&o.Namespace, "namespace", ns, "the namespace fleetmesh runs in (default: $POD_NAMESPACE, else fleetmesh-system)")
	fs.StringVar(&o.GatewayServiceAccount, "gateway-service-account", "fleetmesh-gateway", "the ServiceAccount the cluster's gateways run as, in --namespace: with --xds-tls only it may be a gateway, and a pod lets that identity alone of the gateways call a restricted export, where the gateway checked the callers itself")
	fs.DurationVar(&o.FederationResync, "federation-resync", 30*time.Second, "with --federation: how often the whole fleet is recomputed (a change to one service recomputes that service alone)")
	fs.DurationVar(&o.MemberTokenTTL, "member-token-ttl", federation.DefaultTokenTTL, "with --federation: the life of the member tokens it renews")
	fs.DurationVar(&o.MemberTokenRenewBefore, "member-token-renew-before", federation.DefaultTokenRenewBefore, "with --federation: renew a member's token this long before it expires")
	fs.StringVar(&o.KubeconfigSecretNamespace, "kubeconfig-secret-namespace", "", "with --federation: read member credentials (kubeconfigSecretRef) only from this namespace's Secrets (default: any namespace)")
	fs.BoolVar(&o.Inject, "inject", false, "serve the sidecar injection webhook")
	fs.BoolVar(&o.XDSTLS, "xds-tls", false, "serve ADS over TLS to clients with a workload certificate only, each only as the proxy its identity may be (needs --workload-signer)")
	fs.BoolVar(&o.XDSInsecurePlaintext, "xds-insecure-plaintext", false, "serve ADS in plaintext to anyone who reaches --xds-address, each proxy taken at its word: a lab only. Without it, --xds-tls or --xds-address="+XDSOff+", the controller does not start")
	fs.BoolVar(&o.XDSTokenAuth, "xds-token-auth", false, "with --xds-tls: also let in clients without a workload certificate that present a ServiceAccount token of audience "+bootstrap.TokenAudience+" bound to their pod (checked by TokenReview), for clusters without pod certificates")
	fs.StringVar(&o.ProxyCredential, "proxy-credential", ProxyCredentialCertificate, "with --xds-tls: what injected sidecars authenticate with: "+ProxyCredentialCertificate+" (a pod certificate from the workload signer) or "+ProxyCredentialToken+" (a ServiceAccount token of audience "+bootstrap.TokenAudience+" bound to the pod, for clusters without pod certificates; implies --xds-token-auth, and the signer then answers no pod certificate requests, publishes no ClusterTrustBundle and copies its roots ConfigMap into the namespaces labelled for injection)")
	fs.BoolVar(&o.WorkloadSigner, "workload-signer", false, "issue the certificates pods ask signer "+signer.Name+" for (podCertificate volumes), naming spiffe://<trust-domain>/ns/<namespace>/sa/<service account>")
	fs.StringVar(&o.TrustDomain, "trust-domain", "cluster.local", "the SPIFFE trust domain of the workload identities, the same in every cluster of a fleet: the signer issues them in it, sidecars take mesh mTLS from any identity in it")
	fs.DurationVar(&o.WorkloadCertTTL, "workload-cert-max-ttl", 24*time.Hour, "with --workload-signer: the longest life of a workload certificate (a pod may ask for less, not under 1h)")
	fs.DurationVar(&o.WorkloadCAOverlap, "workload-ca-overlap", time.Hour, "with --workload-signer: how long a renewed workload CA is trusted before it signs (the fleet's pods must trust it first)")
	fs.StringVar(&o.FleetTrust, "fleet-trust", string(signer.FleetTrustFirstUse), "with --workload-signer: how the fleet's other members' first CAs are trusted: "+string(signer.FleetTrustFirstUse)+" (when the member is first seen) or "+string(signer.FleetTrustPinned)+" (once `fleetmesh trust approve MEMBER` approves them); later CAs of a member are trusted when one trusted already endorsed them, else once approved")
	fs.DurationVar(&o.WorkloadCACheck, "workload-ca-check-interval", 10*time.Minute, "with --workload-signer: how often the workload CA is checked (renewed, rotated on request, its roots republished)")
	fs.StringVar(&o.WebhookAddress, "webhook-address", ":9443", "address of the injection webhook (TLS)")
	fs.StringVar(&o.WebhookCertDir, "webhook-cert-dir", filepath.Join(os.TempDir(), "fleetmesh-webhook"), "directory of the webhook's tls.crt and tls.key")
	fs.BoolVar(&o.ManageWebhookCerts, "manage-webhook-certs", true, "issue and renew the webhook certificate (Secret fleetmesh-webhook-cert) and patch the webhook configuration's caBundle")
	fs.DurationVar(&o.CertCheckEvery, "webhook-cert-check-interval", time.Hour, "with --manage-webhook-certs: how often the certificate, the Secret and the caBundle are checked and repaired")
	fs.StringVar(&o.WebhookService, "webhook-service", "fleetmesh-controller", "the Service in front of the webhook (names in its certificate)")
	fs.StringVar(&o.WebhookConfigName, "webhook-config", "fleetmesh-sidecar-injector", "the MutatingWebhookConfiguration whose caBundle is kept current")
	fs.StringVar(&o.GuardConfigName, "federation-guard-config", "fleetmesh-federation-guard", "with --inject: the ValidatingWebhookConfiguration of the member's check of the federation's EndpointSlices, whose caBundle is kept current when it exists")
	fs.StringVar(&o.Injection.ProxyImage, "proxy-image", "docker.io/envoyproxy/envoy:v1.40.0", "the injected sidecar's Envoy image")
	fs.StringVar(&o.Injection.InitImage, "init-image", "ghcr.io/fleetmesh/fleetmesh-init:"+version.Version, "the injected init container's image (fleetmesh-init and iptables)")
	fs.StringVar(&o.Injection.XDSAddress, "proxy-xds-address", "", "the ADS address injected sidecars dial (default: <webhook-service>.<namespace>.svc:15010)")
	fs.StringVar(&o.Injection.LogLevel, "proxy-log-level", "warning", "the injected sidecar's Envoy --log-level")
	fs.IntVar(&o.Injection.Concurrency, "proxy-concurrency", 2, "the injected sidecar's Envoy worker threads")
	fs.Var(&quantity{&o.Injection.Resources, "requests", corev1.ResourceCPU}, "proxy-cpu-request", "the injected sidecar's CPU request (default 50m)")
	fs.Var(&quantity{&o.Injection.Resources, "requests", corev1.ResourceMemory}, "proxy-memory-request", "the injected sidecar's memory request (default 64Mi)")
	fs.Var(&quantity{&o.Injection.Resources, "limits", corev1.ResourceMemory}, "proxy-memory-limit", "the injected sidecar's memory limit (default 512Mi)")
	fs.Var(&pullPolicy{&o.Injection.ImagePullPolicy}, "proxy-image-pull-policy", "image pull policy of the injected containers (Always, IfNotPresent, Never; default: Kubernetes')")
}

// quantity is a flag setting one resource of the sidecar; the others keep
// inject.DefaultResources.
type quantity struct {
	r    *corev1.ResourceRequirements
	kind string
	name corev1.ResourceName
}

func (q *quantity) String() string { return "" }

func (q *quantity) Set(s string) error {
	v, err := resource.ParseQuantity(s)
	if err != nil {
		return err
	}
	if q.r.Requests == nil && q.r.Limits == nil {
		*q.r = inject.DefaultResources()
	}
	if q.kind == "limits" {
		q.r.Limits[q.name] = v
	} else {
		q.r.Requests[q.name] = v
	}
	return nil
}

type pullPolicy struct{ p *corev1.PullPolicy }

func (p *pullPolicy) String() string {
	if p.p == nil {
		return ""
	}
	return string(*p.p)
}

func (p *pullPolicy) Set(s string) error {
	switch corev1.PullPolicy(s) {
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
		*p.p = corev1.PullPolicy(s)
		return nil
	}
	return fmt.Errorf("%q is not Always, IfNotPresent or Never", s)
}

// Scheme has the Kubernetes types and the fleetmesh API.
func Scheme() *runtime.Scheme { return scheme.New() }

// XDSOff as --xds-address serves no ADS.
const XDSOff = "0"

// LeaseName is the Lease, in --namespace, the replicas elect their
// writer by.
const LeaseName = "fleetmesh-controller"

// The ways the debug API and /metrics may be guarded.
const (
	AuthKubernetes = "kubernetes"
	AuthNone       = "none"
)

// What injected sidecars authenticate with (--proxy-credential).
const (
	ProxyCredentialCertificate = "certificate"
	ProxyCredentialToken       = "token"
)

// checkAuth defaults and checks DebugAuth, MetricsAuth and
// ProxyCredential, and the life of the member tokens.
func (o *Options) checkAuth() error {
	for _, a := range []struct {
		flag string
		v    *string
	}{{"--debug-auth", &o.DebugAuth}, {"--metrics-auth", &o.MetricsAuth}} {
		switch *a.v {
		case "":
			*a.v = AuthKubernetes
		case AuthKubernetes, AuthNone:
		default:
			return fmt.Errorf("%s %q: want %s or %s", a.flag, *a.v, AuthKubernetes, AuthNone)
		}
	}
	switch o.ProxyCredential {
	case "":
		o.ProxyCredential = ProxyCredentialCertificate
	case ProxyCredentialCertificate:
	case ProxyCredentialToken:
		if !o.XDSTLS {
			return fmt.Errorf("--proxy-credential %s needs --xds-tls: tokens are only taken over TLS", ProxyCredentialToken)
		}
		o.XDSTokenAuth = true
	default:
		return fmt.Errorf("--proxy-credential %q: want %s or %s", o.ProxyCredential, ProxyCredentialCertificate, ProxyCredentialToken)
	}
	if o.XDSTokenAuth && !o.XDSTLS {
		return errors.New("--xds-token-auth needs --xds-tls: tokens are only taken over TLS")
	}
	if o.DebugAuth == AuthNone && o.MetricsAuth == AuthKubernetes {
		return fmt.Errorf("--metrics-auth %s needs --debug-auth %s: /metrics is served on the debug address", AuthKubernetes, AuthKubernetes)
	}
	if o.FleetTrust != "" && o.FleetTrust != string(signer.FleetTrustFirstUse) && o.FleetTrust != string(signer.FleetTrustPinned) {
		return fmt.Errorf("--fleet-trust %q: want %s or %s", o.FleetTrust, signer.FleetTrustFirstUse, signer.FleetTrustPinned)
	}
	if o.Federation && o.MemberTokenTTL > federation.MaxTokenTTL {
		return fmt.Errorf("--member-token-ttl %s: members refuse the federation tokens longer than %s (manifests/member/federation-policy.yaml)", o.MemberTokenTTL, federation.MaxTokenTTL)
	}
	// Plaintext ADS takes every proxy at its word: only when asked.
	switch {
	case o.XDSAddress == XDSOff:
	case o.XDSTLS && o.XDSInsecurePlaintext:
		return errors.New("--xds-tls and --xds-insecure-plaintext: choose one")
	case !o.XDSTLS && !o.XDSInsecurePlaintext:
		return fmt.Errorf("ADS would be served in plaintext to anyone who reaches --xds-address %s, each proxy taken at its word: serve it over TLS (--xds-tls, with --workload-signer), or pass --xds-insecure-plaintext for a lab, or --xds-address=%s to serve none", o.XDSAddress, XDSOff)
	}
	return nil
}

// Running is a started control plane.
type Running struct {
	XDS *xds.Server
	// XDSAddress is nil when no ADS is served (--xds-address=0).
	XDSAddress   net.Addr
	DebugAddress net.Addr
	done         chan error
}

// Wait blocks until the control plane stops and returns why.
func (r *Running) Wait() error { return <-r.done }

// Run starts the control plane and returns once it serves; it stops when
// ctx ends.
func Run(ctx context.Context, o Options) (*Running, error) {
	log := zap.New(zap.UseDevMode(o.LogDev))
	ctrl.SetLogger(log)
	cfg, err := restConfig(o.Kubeconfig)
	if err != nil {
		return nil, err
	}
	return RunWithConfig(ctx, o, cfg, log)
}

// RunWithConfig is Run against a given REST config (tests).
func RunWithConfig(ctx context.Context, o Options, cfg *rest.Config, log logr.Logger) (*Running, error) {
	ctrl.SetLogger(log)
	if err := o.checkAuth(); err != nil {
		return nil, err
	}
	debugTLS, err := o.debugTLS()
	if err != nil {
		return nil, err
	}
	if o.ClusterName == "" {
		// While it waits, the process is alive but not ready: the
		// kubelet's probes must not restart it.
		stopWaiting, err := serveWaiting(o.DebugAddress, debugTLS)
		if err != nil {
			return nil, err
		}
		name, err := learnClusterName(ctx, cfg, log)
		stopWaiting()
		if err != nil {
			return nil, err
		}
		o.ClusterName = name
	}
	return start(ctx, o, cfg, debugTLS, log.WithValues("cluster", o.ClusterName))
}

// serveWaiting answers /healthz (alive) and /readyz (not yet) on the
// debug address until the returned function is called.
func serveWaiting(addr string, tlsConfig *tls.Config) (func(), error) {
	lis, err := listenDebug(addr, tlsConfig)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "waiting for the federation to join this cluster (fleetmesh cluster join), or set --cluster-name", http.StatusServiceUnavailable)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(lis) }()
	return func() { _ = srv.Close() }, nil
}

// learnClusterName waits for the federation to join this cluster: its
// copy of the cluster's own Cluster object is labelled local.
func learnClusterName(ctx context.Context, cfg *rest.Config, log logr.Logger) (string, error) {
	c, err := client.New(cfg, client.Options{Scheme: Scheme()})
	if err != nil {
		return "", fmt.Errorf("connect to the API server: %w", err)
	}
	said := false
	for {
		var list fmv1alpha1.ClusterList
		err := c.List(ctx, &list, client.MatchingLabels{fmv1alpha1.LocalClusterLabel: "true"})
		switch {
		case err != nil && !said:
			log.Error(err, "list Clusters to learn this cluster's name")
		case len(list.Items) == 1:
			log.Info("this cluster's name, from the federation", "cluster", list.Items[0].Name)
			return list.Items[0].Name, nil
		case len(list.Items) > 1:
			return "", fmt.Errorf("%d Clusters are labelled %s=true: set --cluster-name", len(list.Items), fmv1alpha1.LocalClusterLabel)
		case !said:
			log.Info("no --cluster-name: waiting for the federation to join this cluster (fleetmesh cluster join)")
		}
		said = true
		select {
		case <-ctx.Done():
			return "", errors.New("no --cluster-name, and the federation has not joined this cluster")
		case <-time.After(2 * time.Second):
		}
	}
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("no --kubeconfig and not in a cluster: %w", err)
		}
		return cfg, nil
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("read --kubeconfig %s: %w", kubeconfig, err)
	}
	return cfg, nil
}

func start(ctx context.Context, o Options, cfg *rest.Config, debugTLS *tls.Config, log logr.Logger) (*Running, error) {
	var serverID spiffeid.ID
	if o.XDSTLS {
		// The xDS server's own identity, a workload's of this namespace.
		var err error
		if serverID, err = model.WorkloadID(o.TrustDomain, o.Namespace, o.WebhookService); err != nil {
			return nil, fmt.Errorf("--trust-domain, --namespace and --webhook-service name no SPIFFE ID: %w", err)
		}
		// Injected sidecars get a workload certificate and speak TLS.
		o.Injection.Identity = &inject.Identity{
			Signer: signer.Name, ServerID: serverID.String(),
			Token: o.ProxyCredential == ProxyCredentialToken, RootsConfigMap: signer.RootsConfigMap,
		}
	}
	mgrOpts := o.managerOptions(log)
	var certs *inject.CertManager
	if o.Inject {
		var err error
		if mgrOpts.WebhookServer, certs, err = webhookServer(ctx, &o, cfg, log); err != nil {
			return nil, err
		}
	}
	// Flags are checked; now what the cluster offers.
	noPodCerts, err := o.checkCluster(cfg, log)
	if err != nil {
		return nil, err
	}
	mgr, err := ctrl.NewManager(cfg, mgrOpts)
	if err != nil {
		return nil, fmt.Errorf("connect to the API server: %w", err)
	}
	if err := o.addWebhooks(mgr, certs, log); err != nil {
		return nil, err
	}
	var workloads *signer.Signer
	if o.WorkloadSigner {
		if workloads, err = signer.Add(mgr, signer.Options{
			Namespace: o.Namespace, TrustDomain: o.TrustDomain, MaxTTL: o.WorkloadCertTTL, Log: log.WithName("signer"),
			CAOverlap: o.WorkloadCAOverlap, CACheckEvery: o.WorkloadCACheck,
			Tokens:            o.ProxyCredential == ProxyCredentialToken,
			RootsNamespaces:   map[string]string{inject.NamespaceLabel: "enabled"},
			NoPodCertificates: noPodCerts,
			FleetTrust:        signer.FleetTrust(o.FleetTrust),
		}); err != nil {
			return nil, err
		}
	}
	registry := newRegistry()
	xdsServerOpts, err := o.xdsServerOptions(cfg, workloads, serverID.URL(), registry, log)
	if err != nil {
		return nil, err
	}
	xdsServer := xds.NewServer(ctx, xdsServerOpts)
	if _, err := discovery.New(ctx, mgr, discovery.Options{
		ClusterName:           o.ClusterName,
		TrustDomain:           o.TrustDomain,
		GatewayNamespace:      o.Namespace,
		GatewayServiceAccount: o.GatewayServiceAccount,
		DebounceAfter:         o.DebounceAfter,
		DebounceMax:           o.DebounceMax,
		Log:                   log.WithName("discovery"),
		Events:                mgr.GetEventRecorder("fleetmesh-discovery"),
		Registry:              registry,
		Publish:               xdsServer.Update,
	}); err != nil {
		return nil, err
	}
	if o.Federation {
		if _, err := federation.New(ctx, mgr, federation.Options{
			Log: log.WithName("federation"), Registry: registry, SecretNamespace: o.KubeconfigSecretNamespace,
			Debounce: o.DebounceAfter, DebounceMax: o.DebounceMax,
			TokenTTL: o.MemberTokenTTL, TokenRenewBefore: o.MemberTokenRenewBefore, Resync: o.FederationResync,
			MemberNamespace: o.Namespace,
		}); err != nil {
			return nil, fmt.Errorf("start the federation: %w", err)
		}
	}
	return o.serve(ctx, cfg, mgr, xdsServer, debugTLS, log)
}

// managerOptions are the controller-runtime manager's options: what it
// caches, and the election of the replica that writes.
func (o *Options) managerOptions(log logr.Logger) ctrl.Options {
	mgrOpts := ctrl.Options{
		Scheme:                 Scheme(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		// One replica writes status, and one federates; every replica
		// builds the mesh and serves its proxies.
		LeaderElection:          o.LeaderElection,
		LeaderElectionID:        LeaseName,
		LeaderElectionNamespace: o.Namespace,
		// A replica that stops (a rollout, a drained node) hands the lease
		// over at once instead of leaving the federation idle until it
		// expires.
		LeaderElectionReleaseOnCancel: true,
		Logger:                        log,
	}
	mgrOpts.Cache.ByObject = map[client.Object]cache.ByObject{}
	if o.KubeconfigSecretNamespace != "" {
		mgrOpts.Cache.ByObject[&corev1.Secret{}] = cache.ByObject{Namespaces: map[string]cache.Config{o.KubeconfigSecretNamespace: {}}}
	}
	if o.WorkloadSigner && o.ProxyCredential != ProxyCredentialToken {
		// The signer watches the fleet's roots, and no other ConfigMap.
		mgrOpts.Cache.ByObject[&corev1.ConfigMap{}] = signer.ConfigMapCache(o.Namespace, signer.FleetRootsConfigMap)
	}
	return mgrOpts
}

// addWebhooks registers, with --inject, the sidecar injector and the
// member guard, and the manager of their serving certificate.
func (o *Options) addWebhooks(mgr ctrl.Manager, certs *inject.CertManager, log logr.Logger) error {
	if !o.Inject {
		return nil
	}
	mgr.GetWebhookServer().Register(inject.Path, &webhook.Admission{
		Handler: inject.NewWebhook(&o.Injection, mgr.GetScheme(), mgr.GetEventRecorder("fleetmesh-injector"), log.WithName("inject")),
	})
	mgr.GetWebhookServer().Register(memberguard.Path, &webhook.Admission{Handler: memberguard.New(mgr.GetAPIReader(), mgr.GetScheme())})
	if certs == nil {
		return nil
	}
	return mgr.Add(certs)
}

// xdsServerOptions are the xDS server's options; with --xds-tls, its
// certificate (serverID, from the workload signer) and how it knows its
// clients.
func (o *Options) xdsServerOptions(cfg *rest.Config, workloads *signer.Signer, serverID *url.URL, registry xds.Registry, log logr.Logger) (xds.Options, error) {
	opts := xds.Options{ClusterName: o.ClusterName, Log: log.WithName("xds"), Registry: registry}
	if !o.XDSTLS {
		return opts, nil
	}
	if workloads == nil {
		return opts, errors.New("--xds-tls needs --workload-signer: the xDS server's certificate and its clients' roots are the workload CA's")
	}
	hosts := pki.ServiceHosts(o.WebhookService, o.Namespace)
	// Clients that dial the address it listens on, when that is one.
	if host, _, err := net.SplitHostPort(o.XDSAddress); err == nil {
		if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
			hosts = append(hosts, host)
		}
	}
	clientAuth := tls.RequireAndVerifyClientCert
	opts.Authenticate = xds.CertificateIdentity(o.TrustDomain)
	if o.XDSTokenAuth {
		// Pods without a certificate present a token instead.
		clientAuth = tls.VerifyClientCertIfGiven
		review, err := tokenReviewer(cfg)
		if err != nil {
			return opts, err
		}
		opts.Authenticate = xds.CertificateOrToken(opts.Authenticate, xds.TokenIdentity(review, registry))
	}
	o.XDS.Creds = credentials.NewTLS(workloads.ServerTLS(serverID, hosts, clientAuth))
	opts.GatewayNamespace, opts.GatewayServiceAccount = o.Namespace, o.GatewayServiceAccount
	opts.ServesTLS = workloads.Loaded
	return opts, nil
}

// serve listens on the xDS and debug addresses and runs the manager,
// until ctx ends or one of them fails; then it stops them all.
func (o *Options) serve(ctx context.Context, cfg *rest.Config, mgr ctrl.Manager, xdsServer *xds.Server, debugTLS *tls.Config, log logr.Logger) (*Running, error) {
	var xdsLis net.Listener
	closeXDS := func() {}
	if o.XDSAddress != XDSOff {
		var err error
		if xdsLis, err = net.Listen("tcp", o.XDSAddress); err != nil {
			return nil, fmt.Errorf("--xds-address %s: %w", o.XDSAddress, err)
		}
		closeXDS = func() { _ = xdsLis.Close() }
	}
	debugHandler, err := o.guardDebug(ctx, cfg, xdsServer, log.WithName("debug"))
	if err != nil {
		closeXDS()
		return nil, err
	}
	debugLis, err := listenDebug(o.DebugAddress, debugTLS)
	if err != nil {
		closeXDS()
		return nil, err
	}
	xdsOpts := o.XDS
	xdsOpts.Log = log.WithName("xds")
	xdsOpts.Stream = xdsServer.StreamInterceptor()
	g := xds.NewGRPCServer(xdsOpts)
	xdsServer.Register(g)
	debug := &http.Server{Handler: debugHandler, ReadHeaderTimeout: 10 * time.Second}

	r := &Running{XDS: xdsServer, DebugAddress: debugLis.Addr(), done: make(chan error, 1)}
	errs := make(chan error, 2)
	mgrCtx, stopMgr := context.WithCancel(ctx)
	mgrDone := make(chan error, 1)
	served := XDSOff
	if xdsLis != nil {
		r.XDSAddress, served = xdsLis.Addr(), xdsLis.Addr().String()
		go func() { errs <- g.Serve(xds.LimitAccepts(xdsLis, o.XDSConnectionsPerSecond)) }()
	}
	go func() { errs <- debug.Serve(debugLis) }()
	go func() { mgrDone <- mgr.Start(mgrCtx) }()
	go func() {
		var err error
		select {
		case <-ctx.Done():
		case err = <-errs:
		case err = <-mgrDone:
			mgrDone <- err
		}
		g.Stop()
		_ = debug.Close()
		// The watches on the API server end with the manager.
		stopMgr()
		if mErr := <-mgrDone; err == nil {
			err = mErr
		}
		r.done <- err
	}()
	log.Info("fleetmesh control plane serving", "xds", served, "debug", r.DebugAddress.String())
	return r, nil
}

// webhookServer checks the injection settings, makes sure the serving
// certificate exists (issuing it when fleetmesh manages it) and returns
// the webhook server.
func webhookServer(ctx context.Context, o *Options, cfg *rest.Config, log logr.Logger) (webhook.Server, *inject.CertManager, error) {
	if o.Injection.ClusterName == "" {
		o.Injection.ClusterName = o.ClusterName
	}
	if o.Injection.XDSAddress == "" {
		o.Injection.XDSAddress = fmt.Sprintf("%s.%s.svc:15010", o.WebhookService, o.Namespace)
	}
	if o.Injection.Version == "" {
		o.Injection.Version = version.Version
	}
	if o.Injection.Resources.Requests == nil && o.Injection.Resources.Limits == nil {
		o.Injection.Resources = inject.DefaultResources()
	}
	if err := o.Injection.Validate(); err != nil {
		return nil, nil, fmt.Errorf("--inject: %w", err)
	}
	host, port, err := net.SplitHostPort(o.WebhookAddress)
	if err != nil {
		return nil, nil, fmt.Errorf("--webhook-address %s: %w", o.WebhookAddress, err)
	}
	portNumber, err := strconv.Atoi(port)
	if err != nil {
		return nil, nil, fmt.Errorf("--webhook-address %s: %w", o.WebhookAddress, err)
	}
	var certs *inject.CertManager
	if o.ManageWebhookCerts {
		// Read through to the API server: the controller may get its own
		// Secret and webhook configuration, not list all Secrets.
		direct, err := client.New(cfg, client.Options{Scheme: Scheme()})
		if err != nil {
			return nil, nil, err
		}
		certs = inject.NewCertManager(direct, inject.CertOptions{
			Namespace: o.Namespace, SecretName: "fleetmesh-webhook-cert", ServiceName: o.WebhookService,
			WebhookConfigName: o.WebhookConfigName, GuardConfigName: o.GuardConfigName, CertDir: o.WebhookCertDir, CheckEvery: o.CertCheckEvery,
			Log: log.WithName("webhook-cert"),
		})
		if err := certs.Ensure(ctx); err != nil {
			// The server can start once the files exist; the caBundle is
			// retried on every check.
			if _, statErr := os.Stat(filepath.Join(o.WebhookCertDir, "tls.crt")); statErr != nil {
				return nil, nil, fmt.Errorf("webhook certificate: %w", err)
			}
			log.Error(err, "webhook certificate")
		}
	}
	return webhook.NewServer(webhook.Options{Host: host, Port: portNumber, CertDir: o.WebhookCertDir}), certs, nil
}

// checkCluster asks the API server for what the options need and older
// Kubernetes lacks, and makes do without it, saying so: no native
// sidecars (before 1.29) or, for sidecars that need workload
// certificates, no pod certificates (before 1.35, or the API off) and the
// injector admits pods as they are, with a warning; without pod
// certificates the signer keeps only its CA (it returns why, for the
// signer). Nothing it finds stops the controller.
func (o *Options) checkCluster(cfg *rest.Config, log logr.Logger) (noPodCerts string, err error) {
	if !o.Inject && !o.WorkloadSigner {
		return "", nil
	}
	dc, err := kubediscovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return "", fmt.Errorf("connect to the API server: %w", err)
	}
	if o.WorkloadSigner && o.ProxyCredential != ProxyCredentialToken {
		ok, why, err := capabilities.PodCertificates(dc)
		if err != nil {
			return "", fmt.Errorf("ask the API server whether it serves pod certificates: %w", err)
		}
		if !ok {
			noPodCerts = why
			if o.Injection.Identity != nil {
				o.Injection.Unavailable = why
			}
		}
	}
	if o.Inject {
		info, err := dc.ServerVersion()
		if err != nil {
			return "", fmt.Errorf("ask the API server its version: %w", err)
		}
		if ok, why := capabilities.NativeSidecars(info); !ok {
			o.Injection.Unavailable = why
		}
		if o.Injection.Unavailable != "" {
			log.Error(nil, "pods are not injected", "why", o.Injection.Unavailable)
		}
	}
	return noPodCerts, nil
}

// registry registers fleetmesh's metrics on a registry of their own (a
// control plane started twice in one process registers twice) and
// gathers them with controller-runtime's: its workqueues (the
// federation's and discovery's among them), client, leader election,
// webhook, Go runtime and process metrics.
type registry struct {
	prometheus.Registerer
	prometheus.Gatherer
}

func newRegistry() registry {
	own := prometheus.NewRegistry()
	return registry{Registerer: own, Gatherer: prometheus.Gatherers{ctrlmetrics.Registry, own}}
}
