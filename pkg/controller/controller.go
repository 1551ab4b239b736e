// Package controller runs fleetmesh's control plane for one cluster:
// discovery (watching the cluster's API server) feeding the xDS server, the
// debug API, and (with --federation) the federation of member clusters.
// cmd/fleetmesh-controller only parses flags and calls Run.
package controller

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
	"github.com/fleetmesh/fleetmesh/pkg/discovery"
	"github.com/fleetmesh/fleetmesh/pkg/federation"
	"github.com/fleetmesh/fleetmesh/pkg/model"
	"github.com/fleetmesh/fleetmesh/pkg/xds"
)

// Options are fleetmesh-controller's settings (DESIGN.md, "Interfaces
// others rely on").
type Options struct {
	Kubeconfig     string
	ClusterName    string
	XDSAddress     string
	DebugAddress   string
	Federation     bool
	LeaderElection bool
	DebounceAfter  time.Duration
	DebounceMax    time.Duration
	LogDev         bool
}

// BindFlags registers the options' flags.
func (o *Options) BindFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.Kubeconfig, "kubeconfig", "", "path to a kubeconfig for this cluster's API server (default: in-cluster)")
	fs.StringVar(&o.ClusterName, "cluster-name", "", "this cluster's name, as in its Cluster object (required)")
	fs.StringVar(&o.XDSAddress, "xds-address", ":15010", "address of the ADS server (gRPC)")
	fs.StringVar(&o.DebugAddress, "debug-address", ":15014", "address of /debug/config_dump, /debug/syncz, /metrics, /healthz and /readyz")
	fs.BoolVar(&o.Federation, "federation", false, "also run the federation for the Cluster objects in this API server")
	fs.BoolVar(&o.LeaderElection, "leader-elect", false, "with --federation: elect one federation among replicas (needs a namespace to hold the lease)")
	fs.DurationVar(&o.DebounceAfter, "debounce-after", 100*time.Millisecond, "quiet period after a change before the mesh is rebuilt")
	fs.DurationVar(&o.DebounceMax, "debounce-max", time.Second, "longest a burst of changes may delay a rebuild")
	fs.BoolVar(&o.LogDev, "log-development", false, "human-readable logs instead of JSON")
}

// Scheme has the Kubernetes types and the fleetmesh API.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := fmv1alpha1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}

// Running is a started control plane.
type Running struct {
	XDS          *xds.Server
	XDSAddress   net.Addr
	DebugAddress net.Addr
	done         chan error
}

// Wait blocks until the control plane stops and returns why.
func (r *Running) Wait() error { return <-r.done }

// Run starts the control plane and returns once it serves; it stops when
// ctx ends.
func Run(ctx context.Context, o Options) (*Running, error) {
	log := zap.New(zap.UseDevMode(o.LogDev)).WithValues("cluster", o.ClusterName)
	ctrl.SetLogger(log)
	if o.ClusterName == "" {
		return nil, errors.New("--cluster-name is required: this cluster's name, as in its Cluster object")
	}
	cfg, err := restConfig(o.Kubeconfig)
	if err != nil {
		return nil, err
	}
	return start(ctx, o, cfg, log)
}

// RunWithConfig is Run against a given REST config (tests).
func RunWithConfig(ctx context.Context, o Options, cfg *rest.Config, log logr.Logger) (*Running, error) {
	ctrl.SetLogger(log)
	return start(ctx, o, cfg, log)
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

func start(ctx context.Context, o Options, cfg *rest.Config, log logr.Logger) (*Running, error) {
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 Scheme(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		// One federation writes at a time; discovery and xDS need no lock.
		LeaderElection:   o.Federation && o.LeaderElection,
		LeaderElectionID: "fleetmesh-federation",
		Logger:           log,
	})
	if err != nil {
		return nil, fmt.Errorf("connect to the API server: %w", err)
	}
	registry := prometheus.NewRegistry()
	xdsServer := xds.NewServer(ctx, xds.Options{ClusterName: o.ClusterName, Log: log.WithName("xds"), Registry: registry})
	if _, err := discovery.New(ctx, mgr, discovery.Options{
		ClusterName:   o.ClusterName,
		DebounceAfter: o.DebounceAfter,
		DebounceMax:   o.DebounceMax,
		Log:           log.WithName("discovery"),
		Publish: func(m *model.Mesh, pods map[string]string) map[string][]string {
			out := map[string][]string{}
			for _, u := range xdsServer.Update(m, pods) {
				out[u.Namespace+"/"+u.Name] = u.Targets
			}
			return out
		},
	}); err != nil {
		return nil, err
	}

	if o.Federation {
		if _, err := federation.New(ctx, mgr, federation.Options{Log: log.WithName("federation"), Registry: registry}); err != nil {
			return nil, fmt.Errorf("start the federation: %w", err)
		}
	}

	xdsLis, err := net.Listen("tcp", o.XDSAddress)
	if err != nil {
		return nil, fmt.Errorf("--xds-address %s: %w", o.XDSAddress, err)
	}
	debugLis, err := net.Listen("tcp", o.DebugAddress)
	if err != nil {
		xdsLis.Close()
		return nil, fmt.Errorf("--debug-address %s: %w", o.DebugAddress, err)
	}
	g := grpc.NewServer(
		grpc.MaxConcurrentStreams(1<<20),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	)
	xdsServer.Register(g)
	debug := &http.Server{Handler: xdsServer.DebugHandler(), ReadHeaderTimeout: 10 * time.Second}

	r := &Running{XDS: xdsServer, XDSAddress: xdsLis.Addr(), DebugAddress: debugLis.Addr(), done: make(chan error, 1)}
	errs := make(chan error, 2)
	mgrCtx, stopMgr := context.WithCancel(ctx)
	mgrDone := make(chan error, 1)
	go func() { errs <- g.Serve(xdsLis) }()
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
	log.Info("fleetmesh control plane serving", "xds", r.XDSAddress.String(), "debug", r.DebugAddress.String())
	return r, nil
}
