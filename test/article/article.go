// Package article builds the reference article's fleet on this machine and
// replays its steps: a control-plane cluster running the real federation
// over cluster-1, cluster-2 and cluster-3, each a real API server with its
// own fleetmesh control plane and Envoy gateway; httpbin in cluster-1 and
// cluster-3 behind inbound Envoy sidecars; a curl pod in cluster-2 whose
// Envoy sidecar carries the article's requests. The e2e test (test/e2e/
// article) and the demo (test/demo, `make demo`) both run it. It must run
// inside the test network (testenv.RunInTestNetwork).
package article

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/grpc"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
	"github.com/fleetmesh/fleetmesh/pkg/bootstrap"
	"github.com/fleetmesh/fleetmesh/pkg/cli"
	"github.com/fleetmesh/fleetmesh/pkg/discovery"
	"github.com/fleetmesh/fleetmesh/pkg/signer"
	"github.com/fleetmesh/fleetmesh/test/testenv"
)

// Members are the article's application clusters.
var Members = []string{"cluster-1", "cluster-2", "cluster-3"}

// Options shape the fleet.
type Options struct {
	// Flat puts the members on one network: remote traffic then goes pod
	// to pod instead of through the remote gateway.
	Flat bool
	// MTLS runs the members' control planes as manifests/member does
	// (--workload-signer --xds-tls): every proxy gets a workload
	// certificate from its member's signer (as the kubelet would, for a
	// stand-in pod), speaks TLS to its control plane and mesh mTLS.
	MTLS bool
	// Versions run the named members on older Kubernetes minors
	// (testenv.FleetOptions.Versions).
	Versions map[string]string
}

// Objects writes and reads the article's API objects (exports, imports,
// policies), the same in the fleet of stand-in pods and in real pods.
type Objects struct {
	*testenv.Fleet
}

// Fleet is the running article fleet.
type Fleet struct {
	Objects
	// Planes are the fleetmesh control planes, by cluster (the
	// control-plane cluster's runs the federation).
	Planes map[string]*testenv.ControlPlane
	// Curl is the curl pod in cluster-2, set by StartCurl.
	Curl *testenv.Pod
	// CurlEnvoy is the curl pod's sidecar, set by StartCurl.
	CurlEnvoy *testenv.Envoy
	// Gateways are the members' gateways, and HTTPBinSidecars the meshed
	// httpbin pods' sidecars, by cluster.
	Gateways, HTTPBinSidecars map[string]*testenv.Envoy

	envoys   []*testenv.Envoy
	mtls     bool
	tempDirs []string
	// identities are the proxies given certificates (MTLS).
	identities []bootstrap.Options
	// the benchmark path (BenchPath)
	benchOnce   sync.Once
	benchClient *testenv.Pod
	benchErr    error
	cancel      context.CancelFunc
	grpcConn    *grpc.ClientConn
	grpc        testgrpc.TestServiceClient
}

// GatewayAddress is a member's gateway, host:port (10.244.0.8N:8N).
func GatewayAddress(c *testenv.Cluster) string {
	return net.JoinHostPort(gatewayIP(c), strconv.Itoa(int(gatewayPort(c))))
}

func gatewayIP(c *testenv.Cluster) string  { return fmt.Sprintf("10.244.0.%d", 80+c.Index) }
func gatewayPort(c *testenv.Cluster) int32 { return int32(80 + c.Index) }

// Start starts four API servers (control-plane and the members), the
// federation, and each member's control plane and gateway, and joins the
// members as the article does: a Cluster with an inline kubeconfig and its
// gateway host and port.
func Start(ctx context.Context, o Options) (*Fleet, error) {
	ctx, cancel := context.WithCancel(ctx)
	tf, err := testenv.StartFleet(ctx, testenv.FleetOptions{Clusters: append([]string{"control-plane"}, Members...), Versions: o.Versions})
	if err != nil {
		cancel()
		return nil, err
	}
	f := &Fleet{
		Objects: Objects{tf}, Planes: map[string]*testenv.ControlPlane{}, cancel: cancel, mtls: o.MTLS,
		Gateways: map[string]*testenv.Envoy{}, HTTPBinSidecars: map[string]*testenv.Envoy{},
	}
	if err := f.start(ctx, o); err != nil {
		f.Stop()
		return nil, err
	}
	return f, nil
}

func (f *Fleet) start(ctx context.Context, o Options) error {
	hub := f.Cluster("control-plane")
	run, err := f.runControlPlane(ctx, hub, "--cluster-name=control-plane", "--federation")
	if err != nil {
		return err
	}
	f.Planes["control-plane"] = run
	for _, name := range Members {
		c := f.Cluster(name)
		spec := fmv1alpha1.ClusterSpec{GatewayHost: gatewayIP(c), GatewayPort: gatewayPort(c), Kubeconfig: string(c.Kubeconfig)}
		if o.Flat {
			spec.Network = "flat"
		}
		if err := hub.Client.Create(ctx, &fmv1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}); err != nil {
			return err
		}
		args := []string{"--cluster-name=" + name, "--debounce-after=50ms", "--debounce-max=500ms"}
		if o.MTLS {
			// The lab's CA rotation takes seconds, not the hour a
			// fleet's pods may need to trust a new CA.
			args = append(args, "--workload-signer", "--xds-tls", "--workload-ca-check-interval=1s", "--workload-ca-overlap="+CAOverlap.String())
		} else {
			args = append(args, LabXDSInsecure)
		}
		cp, err := f.runControlPlane(ctx, c, args...)
		if err != nil {
			return err
		}
		f.Planes[name] = cp
		if err := testenv.AddAddress(gatewayIP(c)); err != nil {
			return err
		}
		gw := bootstrap.Options{NodeID: "gateway." + name, Role: "gateway", Namespace: "fleetmesh", Cluster: name, IP: gatewayIP(c)}
		if o.MTLS {
			// The gateway runs as a pod of the controller's namespace,
			// as manifests/gateway has it, with its certificate.
			gw.Namespace, gw.Pod, gw.ServiceAccount = "fleetmesh-system", "fleetmesh-gateway-0", "fleetmesh-gateway"
			gw.NodeID = gw.Pod + "." + gw.Namespace
			if _, err := c.RunPod(ctx, testenv.PodOptions{Namespace: gw.Namespace, Name: gw.Pod, ServiceAccountName: gw.ServiceAccount, IP: gatewayIP(c)}); err != nil {
				return err
			}
			if _, err := f.identity(ctx, &gw); err != nil {
				return err
			}
		}
		if f.Gateways[name], err = f.Envoy(ctx, gw); err != nil {
			return err
		}
	}
	return nil
}

// CAOverlap is how long the lab's signers publish a renewed CA before it
// signs (MTLS).
const CAOverlap = 8 * time.Second

// XDSServerName is the name proxies ask their control plane's xDS server
// for over TLS, and whose SPIFFE ID they check (MTLS).
const XDSServerName = "fleetmesh-controller.fleetmesh-system.svc"

// XDSServerID is the xDS server's SPIFFE ID (MTLS).
var XDSServerID = testenv.ServerSPIFFEID("fleetmesh-system")

// identity gets the proxy o describes its pod's workload certificate, as
// the kubelet would for the pod's identity volume: the key and
// certificate, the roots of every ClusterTrustBundle of the signer (its
// own and the fleet's), and the SDS files; o then speaks TLS to its
// control plane with it. The pod's ServiceAccount is made if missing. It
// returns the certificate's serial as Envoy's admin /certs shows it (its
// bytes in hex).
func (f *Fleet) identity(ctx context.Context, o *bootstrap.Options) (string, error) {
	c := f.Cluster(o.Cluster)
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: o.Namespace, Name: o.ServiceAccount}}
	if err := c.Client.Create(ctx, sa); client.IgnoreAlreadyExists(err) != nil {
		return "", err
	}
	if o.IdentityDir == "" {
		dir, err := os.MkdirTemp("", "identity-"+o.Pod+"-")
		if err != nil {
			return "", err
		}
		o.IdentityDir = dir
		f.tempDirs = append(f.tempDirs, dir)
		f.identities = append(f.identities, *o)
	}
	o.XDSServerName = XDSServerName
	var roots []byte
	// The signer publishes its roots once it has made its CA.
	err := testenv.Eventually(ctx, 30*time.Second, func(ctx context.Context) (bool, error) {
		var err error
		roots, err = TrustedRoots(ctx, c)
		return err == nil, nil
	})
	if err != nil {
		log := ""
		if cp := f.Planes[c.Name]; cp != nil {
			log = cp.Log()
		}
		return "", fmt.Errorf("cluster %s published no roots of %s: %w\n%s", c.Name, signer.Name, err, log)
	}
	cert, err := c.WriteIdentity(ctx, o.Namespace, o.Pod, signer.Name, o.IdentityDir, func(key, chain []byte) (map[string][]byte, error) {
		return bootstrap.IdentityFiles(o.IdentityDir, XDSServerID, key, chain, roots)
	})
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(cert.Leaf.SerialNumber.Bytes()), nil
}

// given is the proxy of pod ns/name in cluster that got a certificate.
func (f *Fleet) given(cluster, ns, name string) (bootstrap.Options, bool) {
	for _, o := range f.identities {
		if o.Cluster == cluster && o.Namespace == ns && o.Pod == name {
			return o, true
		}
	}
	return bootstrap.Options{}, false
}

// IdentityDir is the identity directory of the proxy of pod ns/name in
// cluster (MTLS), "" when it got no certificate.
func (f *Fleet) IdentityDir(cluster, ns, name string) string {
	o, _ := f.given(cluster, ns, name)
	return o.IdentityDir
}

// RenewIdentity gets the proxy of pod ns/name in cluster a new
// certificate, written into its identity directory as the kubelet renews
// it (MTLS). It returns the new certificate's serial, in hex.
func (f *Fleet) RenewIdentity(ctx context.Context, cluster, ns, name string) (string, error) {
	o, ok := f.given(cluster, ns, name)
	if !ok {
		return "", fmt.Errorf("pod %s/%s of %s has no certificate to renew", ns, name, cluster)
	}
	return f.identity(ctx, &o)
}

// RefreshIdentities does for every proxy of a cluster what the kubelet
// does for its pod's identity volume as trust bundles change and the
// certificate ages: a new certificate and the roots as they are now
// (MTLS).
func (f *Fleet) RefreshIdentities(ctx context.Context, cluster string) error {
	for _, o := range f.identities {
		if o.Cluster == cluster {
			if _, err := f.identity(ctx, &o); err != nil {
				return err
			}
		}
	}
	return nil
}

// TrustedRoots are what a pod's clusterTrustBundle source with the
// workload signer projects: every ClusterTrustBundle of the signer (the
// member's own roots, and the other members' once the federation has
// brought them).
func TrustedRoots(ctx context.Context, c *testenv.Cluster) ([]byte, error) {
	var list certificatesv1.ClusterTrustBundleList
	if err := c.Client.List(ctx, &list); err != nil {
		return nil, err
	}
	var roots []byte
	for _, ctb := range list.Items {
		if ctb.Spec.SignerName == signer.Name {
			roots = append(roots, []byte(strings.TrimSpace(ctb.Spec.TrustBundle)+"\n")...)
		}
	}
	if len(roots) == 0 {
		return nil, fmt.Errorf("cluster %s has no trust bundle of %s yet", c.Name, signer.Name)
	}
	return roots, nil
}

// The lab's controllers run with their debug API open: their pods are
// Pod objects without a kubelet, so the CLI cannot port-forward to them
// and reaches them through the API server's pod proxy, which carries no
// credentials. Real nodes run the manifests' authenticated debug API.
const (
	LabDebugAuth          = "--debug-auth=none"
	LabMetricsAuth        = "--metrics-auth=none"
	LabControlPlaneAccess = "pod-proxy"
	// LabXDSInsecure: the lab's proxies speak plaintext ADS, taken at
	// their word (the MTLS lab's and the manifests' speak TLS).
	LabXDSInsecure = "--xds-insecure-plaintext"
)

// ControlPlaneIP is the address of a cluster's fleetmesh-controller pod;
// its debug API listens on port 15014 there.
func ControlPlaneIP(c *testenv.Cluster) string { return c.PodIP(2) }

// runControlPlane runs the built fleetmesh-controller with args as the
// cluster's fleetmesh-controller pod: a Pod object in fleetmesh-system
// whose address carries the debug API, so the CLI reaches it through the
// API server as it would in a real cluster. Its xDS server listens on
// localhost.
func (f *Fleet) runControlPlane(ctx context.Context, c *testenv.Cluster, args ...string) (*testenv.ControlPlane, error) {
	ip := ControlPlaneIP(c)
	if err := testenv.AddAddress(ip); err != nil {
		return nil, err
	}
	// It runs in fleetmesh-system, as installed.
	if err := c.EnsureNamespace(ctx, "fleetmesh-system"); err != nil {
		return nil, err
	}
	run, err := c.StartControlPlane(ctx, testenv.ControlPlaneOptions{
		Args:      append(args, "--debug-address="+net.JoinHostPort(ip, "15014"), LabDebugAuth, LabMetricsAuth),
		WaitReady: true,
	})
	if err != nil {
		return nil, err
	}
	_, err = c.RunPod(ctx, testenv.PodOptions{
		Namespace: "fleetmesh-system", Name: "fleetmesh-controller-0", IP: ip,
		Labels: map[string]string{"app.kubernetes.io/name": "fleetmesh-controller"},
		Ports:  []corev1.ContainerPort{{Name: "xds", ContainerPort: 15010}, {Name: "debug", ContainerPort: 15014}},
	})
	if err != nil {
		_ = run.Stop()
		return nil, err
	}
	return run, nil
}

// Stop stops every Envoy, control plane and API server.
func (f *Fleet) Stop() {
	if f.grpcConn != nil {
		_ = f.grpcConn.Close()
	}
	for _, e := range f.envoys {
		_ = e.Stop()
	}
	for _, dir := range f.tempDirs {
		_ = os.RemoveAll(dir)
	}
	f.cancel()
	for _, p := range f.Planes {
		_ = p.Stop()
	}
	_ = f.Fleet.Stop()
}

// Envoy starts a real Envoy bootstrapped to the control plane of o.Cluster
// and waits until it has its first configuration.
func (f *Fleet) Envoy(ctx context.Context, o bootstrap.Options) (*testenv.Envoy, error) {
	port, err := testenv.FreePort()
	if err != nil {
		return nil, err
	}
	o.XDSAddress, o.AdminAddress = f.Planes[o.Cluster].XDSAddress, fmt.Sprintf("127.0.0.1:%d", port)
	cfg, err := bootstrap.JSON(o)
	if err != nil {
		return nil, err
	}
	e, err := testenv.StartEnvoy(o.NodeID, cfg, port)
	if err != nil {
		return nil, err
	}
	f.envoys = append(f.envoys, e)
	if err := e.WaitReady(ctx, 30*time.Second); err != nil {
		return nil, fmt.Errorf("envoy %s: %w\n%s", o.NodeID, err, e.Log())
	}
	return e, nil
}

// appBackend is the app of a pod with an inbound sidecar: it listens on the
// pod's loopback address, the sidecar on the pod IP.
type appBackend struct {
	testenv.Backend
	appIP string
}

func (b *appBackend) Start(string) error { return b.Backend.Start(b.appIP) }

// DeployMeshedHTTPBin is the article's httpbin Deployment and Services in a
// mesh-managed namespace of a member: pipy answers body behind the pod's
// inbound sidecar (with MTLS, telling who called it).
func (f *Fleet) DeployMeshedHTTPBin(ctx context.Context, cluster, body string) error {
	backend := &testenv.HTTPBackend{Port: 8080, Body: body}
	if f.mtls {
		backend.ShowHeader = "X-Forwarded-Client-Cert"
	}
	e, err := f.deployMeshed(ctx, cluster, meshedApp{
		namespace: "httpbin", pod: "httpbin-1", app: "pipy", serviceAccount: "httpbin",
		services: []string{"httpbin", "httpbin-" + cluster}, backend: backend, appHost: 10,
	})
	f.HTTPBinSidecars[cluster] = e
	return err
}

// DeployMeshedGRPC runs a gRPC service ns/name (port 9090, "grpc") in a
// member, its pod behind an inbound sidecar, answering with the cluster's
// name; it returns the sidecar.
func (f *Fleet) DeployMeshedGRPC(ctx context.Context, cluster, ns, name string) (*testenv.Envoy, error) {
	return f.deployMeshed(ctx, cluster, meshedApp{
		namespace: ns, pod: name + "-1", app: name, serviceAccount: name, services: []string{name},
		port: corev1.ServicePort{Name: "grpc", Port: 9090}, backend: &testenv.GRPCBackend{Cluster: cluster, Port: 9090}, appHost: 30,
	})
}

// meshedApp is a pod behind an inbound sidecar, with the Services that
// select it.
type meshedApp struct {
	namespace, pod, app, serviceAccount string
	services                            []string
	// port is the Services' port (8080 when unset); backend serves it.
	port    corev1.ServicePort
	backend testenv.Backend
	// appHost is the last byte of the app's loopback address,
	// 127.0.<cluster index>.<appHost>: one per meshed pod of a cluster.
	appHost int
}

// deployMeshed runs a meshedApp in a cluster: its Services, its pod and
// its sidecar (with MTLS, its certificate).
func (f *Fleet) deployMeshed(ctx context.Context, cluster string, a meshedApp) (*testenv.Envoy, error) {
	c := f.Cluster(cluster)
	if err := c.EnsureNamespace(ctx, a.namespace); err != nil {
		return nil, err
	}
	if a.port.Port == 0 {
		a.port.Port = 8080
	}
	a.port.Protocol = corev1.ProtocolTCP
	for _, name := range a.services {
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: a.namespace, Name: name},
			Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": a.app}, Ports: []corev1.ServicePort{a.port}},
		}
		if err := c.Client.Create(ctx, svc); err != nil {
			return nil, err
		}
	}
	appIP := fmt.Sprintf("127.0.%d.%d", c.Index, a.appHost)
	o := bootstrap.Options{
		NodeID: a.pod + "." + a.namespace, Role: "sidecar", Namespace: a.namespace, Pod: a.pod, Cluster: cluster, AppIP: appIP, Delta: true,
	}
	pod := testenv.PodOptions{
		Namespace: a.namespace, Name: a.pod, Labels: map[string]string{"app": a.app},
		Ports: []corev1.ContainerPort{{ContainerPort: a.port.Port}}, Backend: &appBackend{Backend: a.backend, appIP: appIP},
	}
	if f.mtls {
		o.ServiceAccount, pod.ServiceAccountName = a.serviceAccount, a.serviceAccount
		// The injector marks a pod whose sidecar has a certificate.
		pod.Annotations = map[string]string{discovery.MeshedAnnotation: "{}"}
	}
	if _, err := c.RunPod(ctx, pod); err != nil {
		return nil, err
	}
	if f.mtls {
		if _, err := f.identity(ctx, &o); err != nil {
			return nil, err
		}
	}
	return f.Envoy(ctx, o)
}

// ExportToCluster2 exports cluster-1's Service ns/name to the callers
// named (its serviceAccountName), and sends cluster-2's calls for it
// there: a FailOver policy with cluster-1 as the target.
func (f Objects) ExportToCluster2(ctx context.Context, ns, name, callers string) error {
	export := &fmv1alpha1.ServiceExport{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       fmv1alpha1.ServiceExportSpec{ServiceAccountName: callers},
	}
	if err := f.Cluster("cluster-1").Client.Create(ctx, export); err != nil {
		return err
	}
	c2 := f.Cluster("cluster-2")
	if err := c2.EnsureNamespace(ctx, ns); err != nil {
		return err
	}
	policy := &fmv1alpha1.GlobalTrafficPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: fmv1alpha1.GlobalTrafficPolicySpec{LbType: fmv1alpha1.FailOverLbType, Targets: []fmv1alpha1.TrafficTarget{
			{ClusterKey: "default/default/default/cluster-1"},
		}},
	}
	return client.IgnoreAlreadyExists(c2.Client.Create(ctx, policy))
}

// Export writes the article's two ServiceExports of a member.
func (f Objects) Export(ctx context.Context, cluster string) error {
	c := f.Cluster(cluster)
	for _, name := range []string{"httpbin", "httpbin-" + cluster} {
		path := "/" + cluster + "/httpbin-mesh"
		if name != "httpbin" {
			path += "-" + cluster
		}
		if err := c.Client.Create(ctx, &fmv1alpha1.ServiceExport{
			ObjectMeta: metav1.ObjectMeta{Namespace: "httpbin", Name: name},
			Spec: fmv1alpha1.ServiceExportSpec{ServiceAccountName: "*", Rules: []fmv1alpha1.ServiceExportRule{
				{PortNumber: 8080, Path: path, PathType: fmv1alpha1.PathTypePrefix},
			}},
		}); err != nil {
			return err
		}
	}
	return nil
}

// StartCurl runs the curl pod in cluster-2 with its sidecar.
func (f *Fleet) StartCurl(ctx context.Context) error {
	var err error
	f.Curl, f.CurlEnvoy, err = f.RunClient(ctx, "curl", "curl-1", "curl")
	return err
}

// RunClient runs a pod ns/name as the ServiceAccount sa in cluster-2 with
// its sidecar (with MTLS, its certificate).
func (f *Fleet) RunClient(ctx context.Context, ns, name, sa string) (*testenv.Pod, *testenv.Envoy, error) {
	c2 := f.Cluster("cluster-2")
	o := bootstrap.Options{NodeID: name + "." + ns, Role: "sidecar", Namespace: ns, Pod: name, Cluster: "cluster-2", Delta: true}
	opts := testenv.PodOptions{Namespace: ns, Name: name, Labels: map[string]string{"app": strings.TrimSuffix(name, "-1")}}
	if f.mtls {
		o.ServiceAccount, opts.ServiceAccountName = sa, sa
	}
	pod, err := c2.RunPod(ctx, opts)
	if err != nil {
		return nil, nil, err
	}
	if f.mtls {
		if _, err := f.identity(ctx, &o); err != nil {
			return nil, nil, err
		}
	}
	e, err := f.Envoy(ctx, o)
	return pod, e, err
}

// Imports lists cluster-2's ServiceImports in namespace httpbin.
func (f Objects) Imports(ctx context.Context) ([]string, error) {
	var list fmv1alpha1.ServiceImportList
	if err := f.Cluster("cluster-2").Client.List(ctx, &list, client.InNamespace("httpbin")); err != nil {
		return nil, err
	}
	var out []string
	for _, imp := range list.Items {
		out = append(out, imp.Namespace+"/"+imp.Name)
	}
	slices.Sort(out)
	return out, nil
}

// Policy applies cluster-2's GlobalTrafficPolicy for httpbin with the
// article's targets (cluster-1 and cluster-3).
// The same policy governs grpcbin, which the proxyless client calls.
func (f Objects) Policy(ctx context.Context, lb fmv1alpha1.LbType) error {
	if err := f.PolicyFor(ctx, "grpcbin", lb); err != nil {
		return err
	}
	return f.PolicyFor(ctx, "httpbin", lb)
}

// DeletePolicy removes cluster-2's policy for a service (back to Locality).
func (f Objects) DeletePolicy(ctx context.Context, service string) error {
	p := &fmv1alpha1.GlobalTrafficPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "httpbin", Name: service}}
	return client.IgnoreNotFound(f.Cluster("cluster-2").Client.Delete(ctx, p))
}

// PolicyFor applies cluster-2's GlobalTrafficPolicy for a service of the
// httpbin namespace, with targets cluster-1 and cluster-3.
func (f Objects) PolicyFor(ctx context.Context, service string, lb fmv1alpha1.LbType) error {
	c := f.Cluster("cluster-2")
	p := &fmv1alpha1.GlobalTrafficPolicy{}
	err := c.Client.Get(ctx, client.ObjectKey{Namespace: "httpbin", Name: service}, p)
	p.Namespace, p.Name = "httpbin", service
	p.Spec = fmv1alpha1.GlobalTrafficPolicySpec{LbType: lb, Targets: []fmv1alpha1.TrafficTarget{
		{ClusterKey: "default/default/default/cluster-1"}, {ClusterKey: "default/default/default/cluster-3"},
	}}
	switch {
	case err == nil:
		return c.Client.Update(ctx, p)
	case apierrors.IsNotFound(err):
		return c.Client.Create(ctx, p)
	}
	return err
}

// DeployLocalHTTPBin is the article's step 4: the user applies httpbin's
// Service with a selector in cluster-2 (over the one fleetmesh derived, which
// fleetmesh then lets go) and runs its pod.
func (f *Fleet) DeployLocalHTTPBin(ctx context.Context) (Stopper, error) {
	c2 := f.Cluster("cluster-2")
	svc := &corev1.Service{}
	if err := c2.Client.Get(ctx, client.ObjectKey{Namespace: "httpbin", Name: "httpbin"}, svc); err != nil {
		return nil, err
	}
	svc.Spec.Selector = map[string]string{"app": "pipy"}
	if err := c2.Client.Update(ctx, svc); err != nil {
		return nil, err
	}
	return c2.RunPod(ctx, testenv.PodOptions{
		Namespace: "httpbin", Name: "httpbin-1", Labels: map[string]string{"app": "pipy"},
		Ports: []corev1.ContainerPort{{ContainerPort: 8080}}, Backend: &testenv.HTTPBackend{Port: 8080, Body: "Hi, I am from cluster-2!\n"},
	})
}

// GatewayAddress is a member's gateway, host:port.
func (f *Fleet) GatewayAddress(cluster string) string { return GatewayAddress(f.Cluster(cluster)) }

// CurlProxy is the curl pod's sidecar, as the CLI names proxies.
func (f *Fleet) CurlProxy() string { return "curl-1.curl" }

var fromCluster = regexp.MustCompile(`Hi, I am from (cluster-\d)`)

// Get sends one GET with the Host header host; a non-2xx answer is an error
// carrying its status.
func Get(ctx context.Context, addr, host, path string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return "", err
	}
	req.Host = host
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return string(body), errors.New(resp.Status)
	}
	return string(body), nil
}

// CurlHTTPBin is the article's `curl http://httpbin.httpbin:8080/` from the curl
// pod, n times: the count of answers by cluster, and "failed" for non-2xx
// answers and connection errors.
func (f *Fleet) CurlHTTPBin(ctx context.Context, n int) map[string]int {
	return f.CurlService(ctx, "httpbin", n)
}

// CurlService is CurlHTTPBin for another service of the httpbin namespace
// (httpbin-cluster-1, ...).
func (f *Fleet) CurlService(ctx context.Context, service string, n int) map[string]int {
	return f.CurlHost(ctx, service+".httpbin:8080", n)
}

// CurlHost is CurlHTTPBin with another Host header (a name or address
// of httpbin: httpbin.httpbin.svc.clusterset.local:8080, ...).
func (f *Fleet) CurlHost(ctx context.Context, host string, n int) map[string]int {
	counts := map[string]int{}
	for range n {
		body, err := Get(ctx, net.JoinHostPort(f.Curl.IP, "8080"), host, "/")
		if m := fromCluster.FindStringSubmatch(body); err == nil && m != nil {
			counts[m[1]]++
		} else {
			counts["failed"]++
		}
	}
	return counts
}

// WaitRouted waits until the curl pod's sidecar routes httpbin: without a
// local endpoint it then answers 503 (no healthy upstream), which tells a
// failure by policy from a sidecar not configured yet.
func (f *Fleet) WaitRouted(ctx context.Context) error {
	return testenv.Eventually(ctx, 20*time.Second, func(ctx context.Context) (bool, error) {
		_, err := Get(ctx, net.JoinHostPort(f.Curl.IP, "8080"), "httpbin.httpbin:8080", "/")
		return err != nil && err.Error() == "503 Service Unavailable", nil
	})
}

// Within repeats 30 calls until ok holds for them or the timeout passes,
// and returns the last counts.
func (f *Fleet) Within(ctx context.Context, timeout time.Duration, ok func(map[string]int) bool) (map[string]int, error) {
	return within(ctx, timeout, f.CurlHTTPBin, ok)
}

// WithinHost is Within for calls with another Host header (CurlHost).
func (f *Fleet) WithinHost(ctx context.Context, timeout time.Duration, host string, ok func(map[string]int) bool) (map[string]int, error) {
	return within(ctx, timeout, func(ctx context.Context, n int) map[string]int { return f.CurlHost(ctx, host, n) }, ok)
}

// within repeats 30 calls until ok holds for them or the timeout passes,
// and returns the last counts.
func within(ctx context.Context, timeout time.Duration, calls func(context.Context, int) map[string]int, ok func(map[string]int) bool) (map[string]int, error) {
	deadline := time.Now().Add(timeout)
	var last map[string]int
	for {
		if last = calls(ctx, 30); ok(last) {
			return last, nil
		}
		if time.Now().After(deadline) {
			return last, fmt.Errorf("not within %s; last 30 calls: %v", timeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// DumpedAssignment reads the ClusterLoadAssignment of an EDS cluster out of
// a config dump in Envoy's ConfigDump JSON (the control plane's
// /debug/config_dump or Envoy's own /config_dump?include_eds), as the CLI
// reads it.
func DumpedAssignment(dump []byte, cluster string) (*endpointv3.ClusterLoadAssignment, error) {
	d, err := cli.ParseConfigDump(dump)
	if err != nil {
		return nil, err
	}
	for _, cla := range d.Endpoints {
		if cla.GetClusterName() == cluster {
			return cla, nil
		}
	}
	return nil, fmt.Errorf("no endpoints of %s in the dump", cluster)
}
