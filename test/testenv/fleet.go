package testenv

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/fleetmesh/fleetmesh/pkg/scheme"
)

// FleetOptions says which clusters to start.
type FleetOptions struct {
	// Clusters are the names of the clusters, e.g. "control-plane",
	// "cluster-1". Cluster i (from 0) owns the pod addresses 10.244.(i+1).x;
	// the clusters of a fleet started after it in the same process count
	// on from there.
	Clusters []string
	// NoControllerManager skips kube-controller-manager (no garbage
	// collector, namespace or EndpointSlice controller) for tests that do
	// not need it.
	NoControllerManager bool
	// Output receives the API servers' and controller managers' logs; nil
	// discards them.
	Output *os.File
	// APIServerFlags are extra kube-apiserver flags, e.g.
	// enable-aggregator-routing=true so webhooks behind a Service reach
	// the Service's endpoints (there is no kube-proxy here).
	APIServerFlags map[string]string
	// FeatureGates (--feature-gates) are given to every Kubernetes
	// component of the fleet: the API servers, the controller managers
	// and, with RealNodes, the kubelets. E.g.
	// "PodCertificateRequest=false" makes a cluster as it was before the
	// feature.
	FeatureGates string
	// AuditLog makes each API server write every request (metadata
	// level, JSON) to its Cluster's AuditLogPath.
	AuditLog bool
	// Webhooks installs, in the named clusters, the webhook configurations
	// of these files the way envtest does: each pointed at a local port
	// with a certificate envtest made (Cluster.Webhooks says where).
	Webhooks map[string][]string
	// RealNodes gives each cluster a real node (see Node) in place of a
	// Node object and a stand-in kubelet: kube-scheduler binds pods,
	// containerd runs them, kube-proxy serves Services, the ServiceAccount
	// admission and Node authorizer are on and the API server is reachable
	// from pods at the kubernetes Service.
	RealNodes bool
	// Images names fleetmesh's images as the manifests do; every real node
	// loads them, built here, with the test images (see NodeImages).
	Images ImageRefs
	// Networks puts clusters with real nodes on networks, by cluster
	// name: the pods of clusters on one network reach each other; a
	// cluster without one is a network of its own, whose pods the others
	// reach only through its LoadBalancer addresses.
	Networks map[string]string
	// Versions are the Kubernetes minors ("1.33", "1.35") of the named
	// clusters' API servers and controller managers, built into
	// bin/k8s-<minor> by `make envtest-assets-old`; the others run
	// AssetsDir's (1.37). Real nodes run 1.37 only.
	Versions map[string]string
	// Workloads runs the Deployment, ReplicaSet and StatefulSet
	// controllers beside the stand-in nodes (real nodes always have
	// them): their pods still need a stand-in kubelet (RunPodsOf).
	Workloads bool
	// WithoutMCS names the clusters that do not get the MCS API's CRDs
	// (manifests/mcs-crd), which the others do.
	WithoutMCS []string
}

// Fleet is a set of running clusters.
type Fleet struct {
	Clusters []*Cluster
	// KubeconfigPath is one kubeconfig with a context per cluster, named
	// after it; its current context is the first cluster's.
	KubeconfigPath string
}

// Cluster is one running API server with its controller manager and node.
type Cluster struct {
	// Name of the cluster, as given in FleetOptions.
	Name string
	// Index is the cluster's position in the fleet, from 0.
	Index int
	// Config reaches the API server as a cluster admin.
	Config *rest.Config
	// Client is a controller-runtime client with the core and fleetmesh
	// types.
	Client client.Client
	// Kubeconfig is an admin kubeconfig for the API server whose cluster,
	// context and user are named after the cluster.
	Kubeconfig []byte
	// KubeconfigPath is Kubeconfig written to a file.
	KubeconfigPath string
	// NodeName is the node that RunPod binds pods to.
	NodeName string
	// AuditLogPath is the API server's audit log (FleetOptions.AuditLog).
	AuditLogPath string
	// Webhooks is where the webhooks of FleetOptions.Webhooks must be
	// served: LocalServingHost, LocalServingPort, LocalServingCertDir.
	Webhooks *envtest.WebhookInstallOptions

	// Node is the cluster's real node (FleetOptions.RealNodes), or nil.
	Node *Node

	env *envtest.Environment
	// stop ends what runs for the cluster in this process (the load
	// balancer).
	stop    context.CancelFunc
	procs   []*daemon
	kubelet *httptest.Server
	dir     string
	// featureGates are the cluster's components' --feature-gates.
	featureGates string
	// assets is where the cluster's kube-apiserver and
	// kube-controller-manager are (AssetsDir, or an older minor's).
	assets string

	mu      sync.Mutex
	nextPod int
}

// MainWithRealNodes is Main for a package whose tests need real nodes:
// where they cannot run (NoRealNodes) or none is selected (`go test -run
// '^$'`, as `make bench-once` runs, for a package without benchmarks), the
// tests run without run's fleet, and skip saying why.
func MainWithRealNodes(m *testing.M, run func() int) {
	flag.Parse()
	if f := flag.Lookup("test.run"); NoRealNodes() != "" || (f != nil && f.Value.String() == "^$") {
		os.Exit(m.Run())
	}
	Main(m, run)
}

// NoRealNodes says why this machine cannot run real nodes, or "" when it
// can. CI runs as root: there they always run.
func NoRealNodes() string {
	if os.Geteuid() != 0 {
		return "real nodes need root (containerd, cgroups, mounts): see docs/real-nodes.md"
	}
	return ""
}

// Scheme has the core Kubernetes types, the fleetmesh API and the MCS API.
var Scheme = scheme.New()

// clusterIndexes counts the clusters started in this process.
var clusterIndexes atomic.Int32

// MustStartFleet is StartFleet that panics on error, for TestMain.
func MustStartFleet(opts FleetOptions) *Fleet {
	f, err := StartFleet(context.Background(), opts)
	if err != nil {
		panic(err)
	}
	return f
}

// StartFleet starts the clusters in parallel: each an etcd, a kube-apiserver
// with the fleetmesh CRDs installed, a kube-controller-manager and a Node.
// It must run inside the test network (see Main).
func StartFleet(ctx context.Context, opts FleetOptions) (*Fleet, error) {
	if !InTestNetwork() {
		return nil, errors.New("testenv: StartFleet runs only inside the test network: call testenv.Main from TestMain")
	}
	if _, err := os.Stat(filepath.Join(AssetsDir(), "kube-apiserver")); err != nil {
		return nil, fmt.Errorf("testenv: no kube-apiserver in %s (run `make envtest-assets`): %w", AssetsDir(), err)
	}
	if why := NoRealNodes(); opts.RealNodes && why != "" {
		return nil, errors.New("testenv: " + why)
	}
	for name, minor := range opts.Versions {
		if opts.RealNodes {
			return nil, fmt.Errorf("testenv: %s: real nodes run the kubelet of %s only", name, AssetsDir())
		}
		if _, err := os.Stat(filepath.Join(OldAssetsDir(minor), "kube-apiserver")); err != nil {
			return nil, fmt.Errorf("testenv: no kube-apiserver %s for %s (run `make envtest-assets-old`): %w", minor, name, err)
		}
	}
	f := &Fleet{Clusters: make([]*Cluster, len(opts.Clusters))}
	errs := make([]error, len(opts.Clusters))
	// A second fleet in the same test network takes the next indexes, so
	// its pod addresses and stand-in kubelets are its own.
	base := int(clusterIndexes.Add(int32(len(opts.Clusters)))) - len(opts.Clusters)
	var wg sync.WaitGroup
	for i, name := range opts.Clusters {
		wg.Go(func() {
			f.Clusters[i], errs[i] = startCluster(ctx, base+i, name, opts)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		_ = f.Stop()
		return nil, err
	}
	if err := f.writeKubeconfig(); err != nil {
		_ = f.Stop()
		return nil, err
	}
	if opts.RealNodes {
		if err := f.isolateNetworks(opts.Networks); err != nil {
			_ = f.Stop()
			return nil, err
		}
	}
	return f, nil
}

// writeKubeconfig merges the clusters' kubeconfigs into one file.
func (f *Fleet) writeKubeconfig() error {
	merged := clientcmdapi.NewConfig()
	for _, c := range f.Clusters {
		kc, err := clientcmd.Load(c.Kubeconfig)
		if err != nil {
			return err
		}
		maps.Copy(merged.Clusters, kc.Clusters)
		maps.Copy(merged.AuthInfos, kc.AuthInfos)
		maps.Copy(merged.Contexts, kc.Contexts)
	}
	merged.CurrentContext = f.Clusters[0].Name
	f.KubeconfigPath = filepath.Join(f.Clusters[0].dir, "fleet.kubeconfig")
	return clientcmd.WriteToFile(*merged, f.KubeconfigPath)
}

// Cluster returns the cluster of that name, or nil.
func (f *Fleet) Cluster(name string) *Cluster {
	for _, c := range f.Clusters {
		if c != nil && c.Name == name {
			return c
		}
	}
	return nil
}

// Stop stops every cluster.
func (f *Fleet) Stop() error {
	var errs []error
	for _, c := range f.Clusters {
		if c != nil {
			errs = append(errs, c.Stop())
		}
	}
	return errors.Join(errs...)
}

// crdDirs are the folders of the CRDs a cluster of the fleet gets.
func crdDirs(name string, opts FleetOptions) []string {
	if slices.Contains(opts.WithoutMCS, name) {
		return []string{CRDDir()}
	}
	return []string{CRDDir(), MCSCRDDir()}
}

func startCluster(ctx context.Context, index int, name string, opts FleetOptions) (*Cluster, error) {
	dir, err := os.MkdirTemp("", "fleetmesh-"+name+"-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{Name: name, Index: index, dir: dir, NodeName: name + "-node", assets: AssetsDir()}
	if minor := opts.Versions[name]; minor != "" {
		c.assets = OldAssetsDir(minor)
	}
	c.env = &envtest.Environment{
		CRDDirectoryPaths:        crdDirs(name, opts),
		ErrorIfCRDPathMissing:    true,
		BinaryAssetsDirectory:    c.assets,
		Scheme:                   Scheme,
		AttachControlPlaneOutput: opts.Output != nil,
		WebhookInstallOptions:    envtest.WebhookInstallOptions{Paths: opts.Webhooks[name]},
		// envtest gives etcd and the API server 20 s each: on two cores
		// beside the real-node suites, an API server took longer, and a
		// suite that passes alone failed to start.
		ControlPlaneStartTimeout: 2 * time.Minute,
	}
	// A test etcd loses nothing worth an fsync per write: skipping it makes
	// every API write several times faster on a slow disk.
	c.env.ControlPlane.Etcd = &envtest.Etcd{}
	c.env.ControlPlane.Etcd.Configure().Set("unsafe-no-fsync", "true")
	api := c.env.ControlPlane.GetAPIServer()
	// envtest prefers $KUBEBUILDER_ASSETS to BinaryAssetsDirectory: an
	// older minor's API server is named outright.
	api.Path = filepath.Join(c.assets, "kube-apiserver")
	if opts.Output != nil {
		api.Out, api.Err = opts.Output, opts.Output
	}
	api.Configure().
		// The default /24 runs out at 254 Services.
		Set("service-cluster-ip-range", "10.96.0.0/16").
		Set("advertise-address", RouterAddress)
	if opts.RealNodes {
		if err := realNodeAPIServer(api, filepath.Join(dir, "apiserver-certs")); err != nil {
			return nil, err
		}
	}
	for k, v := range opts.APIServerFlags {
		api.Configure().Set(k, v)
	}
	if opts.FeatureGates != "" {
		api.Configure().Set("feature-gates", opts.FeatureGates)
		c.featureGates = opts.FeatureGates
	}
	if opts.AuditLog {
		policy := filepath.Join(dir, "audit-policy.yaml")
		if err := os.WriteFile(policy, []byte(auditPolicy), 0o600); err != nil {
			return nil, err
		}
		c.AuditLogPath = filepath.Join(dir, "audit.log")
		api.Configure().Set("audit-policy-file", policy).Set("audit-log-path", c.AuditLogPath).Set("audit-log-format", "json")
	}
	cfg, err := c.env.Start()
	if err != nil {
		// envtest leaves a half-started control plane running.
		_ = c.env.Stop()
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("start API server of %s: %w", name, err)
	}
	c.Config = cfg
	if len(opts.Webhooks[name]) > 0 {
		c.Webhooks = &c.env.WebhookInstallOptions
	}
	if c.Client, err = client.New(cfg, client.Options{Scheme: Scheme}); err != nil {
		return c, fmt.Errorf("client for %s: %w", name, err)
	}
	if c.Kubeconfig, err = KubeconfigFor(cfg, name); err != nil {
		return c, err
	}
	c.KubeconfigPath = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(c.KubeconfigPath, c.Kubeconfig, 0o600); err != nil {
		return c, err
	}
	if opts.RealNodes {
		return c, c.startRealNode(ctx, opts)
	}
	if err := c.createNode(ctx); err != nil {
		return c, err
	}
	if err := c.startKubelet(ctx); err != nil {
		return c, err
	}
	if !opts.NoControllerManager {
		controllers := "garbagecollector,namespace,endpointslice"
		if opts.Workloads {
			controllers += ",deployment,replicaset,statefulset"
		}
		if err := c.startControllerManager(opts.Output, controllers); err != nil {
			return c, err
		}
	}
	return c, nil
}

// realNodeAPIServer configures an API server for a cluster with a real
// node: its serving certificate names what pods dial (the kubernetes
// Service), it listens where nodes and pods reach it, and it admits and
// authorizes pods and kubelets as a real cluster does.
func realNodeAPIServer(api *envtest.APIServer, certDir string) error {
	ca, err := apiServerCerts(certDir, []string{"127.0.0.1", RouterAddress, KubernetesServiceIP})
	if err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	api.CertDir = certDir
	// Where nodes and pods reach it (envtest would take 127.0.0.1).
	api.Port = strconv.Itoa(port)
	api.Address = RouterAddress
	api.CA = ca
	api.Configure().
		Set("authorization-mode", "Node,RBAC").
		Set("enable-admission-plugins", "NodeRestriction").
		Set("kubelet-preferred-address-types", "InternalIP").
		// Webhooks are called at their pods' addresses: the API server is
		// not on a node, so ClusterIPs are not routed to it.
		Set("enable-aggregator-routing", "true").
		// envtest turns off the ServiceAccount admission plugin.
		Disable("disable-admission-plugins")
	return nil
}

// KubernetesServiceIP is the ClusterIP of the kubernetes Service, first of
// the service range.
const KubernetesServiceIP = "10.96.0.1"

// startRealNode starts what a cluster with real nodes runs besides the API
// server: kube-controller-manager with the workload controllers,
// kube-scheduler, and the node.
func (c *Cluster) startRealNode(ctx context.Context, opts FleetOptions) error {
	certDir := filepath.Join(c.dir, "apiserver-certs")
	if err := c.startControllerManager(opts.Output,
		"garbage-collector-controller,namespace-controller,endpointslice-controller,"+
			"serviceaccount-controller,root-ca-certificate-publisher-controller,deployment-controller,"+
			"replicaset-controller,daemonset-controller,statefulset-controller,job-controller,"+
			"disruption-controller,pod-garbage-collector-controller,ttl-after-finished-controller,"+
			// Takes the not-ready taint the kubelet registers with off a Ready node.
			"node-lifecycle-controller",
		"--root-ca-file="+filepath.Join(certDir, "ca.crt"),
	); err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	if err := c.startProcess("kube-scheduler", opts.Output, filepath.Join(AssetsDir(), "kube-scheduler"),
		"--kubeconfig="+c.KubeconfigPath,
		"--authentication-kubeconfig="+c.KubeconfigPath,
		"--authorization-kubeconfig="+c.KubeconfigPath,
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(port),
		"--v=2",
	); err != nil {
		return err
	}
	nodeUser, err := c.env.AddUser(envtest.User{Name: "system:node:" + c.NodeName, Groups: []string{"system:nodes"}}, nil)
	if err != nil {
		return err
	}
	kc, err := KubeconfigFor(nodeUser.Config(), c.Name)
	if err != nil {
		return err
	}
	kubeletKubeconfig := filepath.Join(c.dir, "kubelet.kubeconfig")
	if err := os.WriteFile(kubeletKubeconfig, kc, 0o600); err != nil {
		return err
	}
	images, err := NodeImages(opts.Images)
	if err != nil {
		return err
	}
	if c.Node, err = c.startNode(ctx, images, kubeletKubeconfig, c.KubeconfigPath); err != nil {
		return err
	}
	lbCtx, stop := context.WithCancel(context.Background())
	c.stop = stop
	go c.serveLoadBalancers(lbCtx)
	return c.startDNS(ctx)
}

// auditPolicy records every request when it completes, without bodies,
// and long-running ones (watches) also when their response starts, so a
// running client's watches show before they end.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
`

// Stop stops the cluster's controller manager and API server and removes
// its files. With $FLEETMESH_TEST_LOGS set to a folder, the logs of its
// processes and node are kept there.
func (c *Cluster) Stop() error {
	var errs []error
	if keep := os.Getenv("FLEETMESH_TEST_LOGS"); keep != "" {
		_ = os.MkdirAll(filepath.Join(keep, c.Name), 0o755)
		_ = exec.Command("sh", "-c", `cp -r "$1"/logs "$1"/node/logs "$2"/ 2>/dev/null`, "sh", c.dir, filepath.Join(keep, c.Name)).Run()
	}
	if c.stop != nil {
		c.stop()
	}
	if c.Node != nil {
		errs = append(errs, c.Node.Stop())
		c.Node = nil
	}
	for _, p := range c.procs {
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	c.procs = nil
	if c.kubelet != nil {
		c.kubelet.Close()
	}
	if c.env != nil {
		errs = append(errs, c.env.Stop())
	}
	errs = append(errs, os.RemoveAll(c.dir))
	return errors.Join(errs...)
}

// PodIP returns address n (1–254) of the cluster's pod range,
// 10.244.(index+1).n.
func (c *Cluster) PodIP(n int) string {
	return fmt.Sprintf("10.244.%d.%d", c.Index+1, n)
}

func (c *Cluster) createNode(ctx context.Context) error {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name: c.NodeName,
		Labels: map[string]string{
			corev1.LabelHostname:       c.NodeName,
			corev1.LabelTopologyZone:   "default",
			corev1.LabelTopologyRegion: "default",
		},
	}}
	if err := c.Client.Create(ctx, node); err != nil {
		return fmt.Errorf("create node %s in %s: %w", c.NodeName, c.Name, err)
	}
	node.Status.Conditions = []corev1.NodeCondition{{
		Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
		LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now(),
	}}
	node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: c.PodIP(254)}}
	if err := c.Client.Status().Update(ctx, node); err != nil {
		return fmt.Errorf("update node %s status in %s: %w", c.NodeName, c.Name, err)
	}
	return nil
}

// startControllerManager runs the real kube-controller-manager with the
// controllers (a --controllers list) envtest lacks, and extra flags.
func (c *Cluster) startControllerManager(out *os.File, controllers string, extra ...string) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	args := []string{
		"--kubeconfig=" + c.KubeconfigPath,
		"--authentication-kubeconfig=" + c.KubeconfigPath,
		"--authorization-kubeconfig=" + c.KubeconfigPath,
		"--controllers=" + controllers,
		"--leader-elect=false",
		"--use-service-account-credentials=false",
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + filepath.Join(c.dir, "kcm-certs"),
		// Publish endpoint changes at once, as fast as a real cluster can.
		"--endpointslice-updates-batch-period=0s",
		"--concurrent-service-endpoint-syncs=5",
	}
	if c.featureGates != "" {
		args = append(args, "--feature-gates="+c.featureGates)
	}
	return c.startProcess("kube-controller-manager", out, filepath.Join(c.assets, "kube-controller-manager"), append(args, extra...)...)
}

// startProcess runs a process of the cluster until Stop.
func (c *Cluster) startProcess(name string, out *os.File, path string, args ...string) error {
	cmd := exec.Command(path, args...)
	if out == nil {
		if err := os.MkdirAll(filepath.Join(c.dir, "logs"), 0o755); err != nil {
			return err
		}
		f, err := os.Create(filepath.Join(c.dir, "logs", name+".log"))
		if err != nil {
			return err
		}
		defer f.Close() // the child holds its own descriptor
		out = f
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s for %s: %w", name, c.Name, err)
	}
	d := &daemon{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(d.done) }()
	c.procs = append(c.procs, d)
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Eventually polls cond every 50 ms until it returns true or timeout passes,
// returning the last error cond gave.
func Eventually(ctx context.Context, timeout time.Duration, cond func(context.Context) (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		ok, err := cond(ctx)
		if ok {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("%w (last error: %w)", ctx.Err(), last)
			}
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
