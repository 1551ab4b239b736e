package controller

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/go-logr/logr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
	"github.com/fleetmesh/fleetmesh/test/testenv"
)

func TestRunRefusesOptionsItCannotServe(t *testing.T) {
	for _, tt := range []struct {
		name string
		o    Options
		want string
	}{
		{"no kubeconfig outside a cluster", Options{}, "no --kubeconfig and not in a cluster"},
		{"unreadable kubeconfig", Options{ClusterName: "cluster-1", Kubeconfig: "/nonexistent/kubeconfig"}, "read --kubeconfig /nonexistent/kubeconfig"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Run(context.Background(), tt.o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Run() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestInjectionFlagsAreReadAndCheckedBeforeServing(t *testing.T) {
	var o Options
	fs := flag.NewFlagSet("fleetmesh-controller", flag.ContinueOnError)
	o.BindFlags(fs)
	if err := fs.Parse([]string{"--inject", "--proxy-memory-limit=1Gi", "--proxy-image-pull-policy=IfNotPresent", "--proxy-log-level=loud"}); err != nil {
		t.Fatal(err)
	}
	if got := o.Injection.Resources.Limits.Memory().String(); got != "1Gi" {
		t.Errorf("memory limit %s", got)
	}
	if got := o.Injection.Resources.Requests.Cpu().String(); got != "50m" {
		t.Errorf("the CPU request kept its default? %s", got)
	}
	if o.Injection.ImagePullPolicy != "IfNotPresent" || o.Namespace != "fleetmesh-system" {
		t.Errorf("options %+v", o)
	}
	if err := fs.Parse([]string{"--proxy-image-pull-policy=Sometimes"}); err == nil {
		t.Error("a pull policy Kubernetes does not know was accepted")
	}
	o.ClusterName, o.ManageWebhookCerts, o.XDSInsecurePlaintext = "cluster-1", false, true
	_, err := RunWithConfig(context.Background(), o, &rest.Config{Host: "https://127.0.0.1:1"}, logr.Discard())
	if err == nil || !strings.Contains(err.Error(), `--inject: proxy log level "loud"`) {
		t.Fatalf("got %v", err)
	}
}

func TestWithoutAClusterNameItWaitsAliveButNotReadyThenLearnsItsName(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := fleet.Cluster("member")
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	debug := fmt.Sprintf("127.0.0.1:%d", port)
	type result struct {
		run *Running
		err error
	}
	done := make(chan result, 1)
	go func() {
		run, err := RunWithConfig(ctx, Options{XDSAddress: "127.0.0.1:0", XDSInsecurePlaintext: true, DebugAddress: debug}, c.Config, logr.Discard())
		done <- result{run, err}
	}()
	status := func(path string) (int, string) {
		// The probes answer anyone, over the debug API's HTTPS.
		insecure := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
		resp, err := insecure.Get("https://" + debug + path)
		if err != nil {
			return 0, err.Error()
		}
		defer func() { _ = resp.Body.Close() }()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	err = testenv.Eventually(ctx, 10*time.Second, func(context.Context) (bool, error) {
		code, _ := status("/healthz")
		return code == http.StatusOK, nil
	})
	if err != nil {
		t.Fatalf("not alive while waiting: %v", err)
	}
	if code, body := status("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "waiting for the federation to join this cluster") {
		t.Errorf("/readyz while waiting: %d %q", code, body)
	}

	// The federation's copy of this cluster's own Cluster object.
	if err := c.Client.Create(ctx, &fmv1alpha1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: "member-7", Labels: map[string]string{fmv1alpha1.LocalClusterLabel: "true"}},
		Spec:       fmv1alpha1.ClusterSpec{Mirrored: true},
	}); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer func() { cancel(); _ = r.run.Wait() }()
	err = testenv.Eventually(ctx, 10*time.Second, func(context.Context) (bool, error) {
		code, _ := status("/readyz")
		return code == http.StatusOK, nil
	})
	if err != nil {
		t.Errorf("never ready once the name was known: %v", err)
	}
	if r.run.XDS == nil || r.run.DebugAddress.String() != debug {
		t.Errorf("running %+v", r.run)
	}
}

func TestAuthOptionsThatCannotWorkTogetherAreRefused(t *testing.T) {
	for _, tt := range []struct {
		name string
		o    Options
		want string
	}{
		{"tokens without TLS", Options{XDSTokenAuth: true}, "--xds-token-auth needs --xds-tls"},
		{"token sidecars without TLS", Options{ProxyCredential: ProxyCredentialToken}, "--proxy-credential token needs --xds-tls"},
		{"an unknown sidecar credential", Options{XDSTLS: true, ProxyCredential: "password"}, `--proxy-credential "password": want certificate or token`},
		{"an unknown debug guard", Options{DebugAuth: "basic"}, `--debug-auth "basic": want kubernetes or none`},
		{"plaintext ADS unasked", Options{XDSAddress: ":15010"}, "ADS would be served in plaintext to anyone who reaches --xds-address :15010"},
		{"TLS and plaintext both", Options{XDSTLS: true, XDSInsecurePlaintext: true}, "--xds-tls and --xds-insecure-plaintext: choose one"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := RunWithConfig(context.Background(), tt.o, &rest.Config{Host: "https://127.0.0.1:1"}, logr.Discard())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("RunWithConfig() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestOnlyTheElectedReplicaWritesStatus runs the built controller with
// --leader-elect while another holds the lease: it serves (ready: its
// signer has loaded the CA its xDS TLS needs; its rebuilds decide a new
// policy's status, its metrics say so) but writes no status. Once the lease is free it takes it and writes. Its /metrics
// carries controller-runtime's metrics (workqueues, leader election, Go
// runtime, process) beside fleetmesh's.
func TestOnlyTheElectedReplicaWritesStatus(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := fleet.Cluster("member")
	const ns = "elected"
	if err := c.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	held := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: LeaseName},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity: ptr.To("another-replica"), LeaseDurationSeconds: ptr.To[int32](3600),
			AcquireTime: &metav1.MicroTime{Time: time.Now()}, RenewTime: &metav1.MicroTime{Time: time.Now()},
		},
	}
	if err := c.Client.Create(ctx, held); err != nil {
		t.Fatal(err)
	}
	cp, err := c.StartControlPlane(ctx, testenv.ControlPlaneOptions{
		Args: []string{
			"--cluster-name=member", "--leader-elect", "--namespace=" + ns, "--metrics-auth=none", "--debug-auth=none",
			"--workload-signer", "--xds-tls",
		},
		WaitReady: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cp.Stop() }()
	// metric is the value of the series of name with every label given,
	// -1 when there is none.
	metric := func(name string, labels ...string) float64 {
		body, err := cp.Get("/metrics")
		if err != nil {
			t.Fatal(err)
		}
		for line := range strings.Lines(body) {
			series, value, _ := strings.Cut(strings.TrimSpace(line), " ")
			if n, _, _ := strings.Cut(series, "{"); n != name {
				continue
			}
			if !slices.ContainsFunc(labels, func(l string) bool { return !strings.Contains(series, l) }) {
				f, _ := strconv.ParseFloat(value, 64)
				return f
			}
		}
		return -1
	}
	decided := func() float64 { return metric("fleetmesh_discovery_rebuilds_total") }
	leads := func() float64 { return metric("leader_election_master_status", `name="`+LeaseName+`"`) }
	for _, m := range []string{"go_goroutines", "process_resident_memory_bytes", "fleetmesh_discovery_inconsistent_services"} {
		if metric(m) < 0 {
			t.Errorf("/metrics has no %s", m)
		}
	}
	if metric("workqueue_depth", `name="discovery"`) < 0 {
		t.Error("/metrics has no workqueue metrics of discovery's queue")
	}
	before := decided()
	policy := &fmv1alpha1.GlobalTrafficPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
		Spec:       fmv1alpha1.GlobalTrafficPolicySpec{LbType: fmv1alpha1.LocalityLbType},
	}
	if err := c.Client.Create(ctx, policy); err != nil {
		t.Fatal(err)
	}
	// An import discovery leaves out (two ports of one name): a Warning
	// event, from the elected replica only.
	broken := &fmv1alpha1.ServiceImport{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "broken"},
		Spec: fmv1alpha1.ServiceImportSpec{Type: fmv1alpha1.ClusterSetIP, Ports: []fmv1alpha1.ServicePort{
			{Name: "grpc", Port: 8080, Protocol: corev1.ProtocolTCP}, {Name: "grpc", Port: 8081, Protocol: corev1.ProtocolTCP},
		}},
	}
	if err := c.Client.Create(ctx, broken); err != nil {
		t.Fatal(err)
	}
	warned := func(ctx context.Context) (bool, error) {
		var list eventsv1.EventList
		if err := c.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return false, err
		}
		return slices.ContainsFunc(list.Items, func(e eventsv1.Event) bool {
			return e.Regarding.Name == "broken" && e.Reason == fmv1alpha1.ReasonInconsistent
		}), nil
	}
	if err := testenv.Eventually(ctx, 10*time.Second, func(context.Context) (bool, error) { return decided() > before, nil }); err != nil {
		t.Fatalf("no rebuild decided the policy's status: %v\n%s", err, cp.Log())
	}
	time.Sleep(time.Second) // what a write would take, had it been allowed
	if err := c.Client.Get(ctx, client.ObjectKeyFromObject(policy), policy); err != nil {
		t.Fatal(err)
	}
	if policy.Status.ObservedGeneration != 0 || len(policy.Status.Conditions) > 0 {
		t.Fatalf("a replica that does not hold the lease wrote status: %+v", policy.Status)
	}
	if ok, err := warned(ctx); err != nil || ok {
		t.Errorf("a replica that does not hold the lease recorded the import's Warning (%v)", err)
	}
	if v := leads(); v > 0 {
		t.Errorf("leader_election_master_status = %v while another holds the lease", v)
	}

	// The other replica is gone and its lease with it.
	if err := c.Client.Delete(ctx, held); err != nil {
		t.Fatal(err)
	}
	err = testenv.Eventually(ctx, 30*time.Second, func(ctx context.Context) (bool, error) {
		err := c.Client.Get(ctx, client.ObjectKeyFromObject(policy), policy)
		return err == nil && policy.Status.ObservedGeneration == policy.Generation, err
	})
	if err != nil {
		t.Fatalf("the elected replica wrote no status: %v\n%s", err, cp.Log())
	}
	if err := testenv.Eventually(ctx, 10*time.Second, warned); err != nil {
		t.Errorf("the elected replica recorded no Warning for the broken import: %v", err)
	}
}

// TestTheBuiltControllerServesNoPlaintextADSUnlessTold runs the built
// fleetmesh-controller as a user would first try it, without flags but
// where to listen: it does not start, says which flags would, and nothing
// answers a plaintext ADS client on its address. With
// --xds-address=0 it serves no ADS at all, and is ready.
func TestTheBuiltControllerServesNoPlaintextADSUnlessTold(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := fleet.Cluster("member")
	bin, err := testenv.Binary("fleetmesh-controller")
	if err != nil {
		t.Fatal(err)
	}
	xdsPort, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	xdsAddr := fmt.Sprintf("127.0.0.1:%d", xdsPort)
	cmd := exec.CommandContext(ctx, bin, "--kubeconfig="+c.KubeconfigPath, "--cluster-name=member", "--xds-address="+xdsAddr, "--debug-address=127.0.0.1:0")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("fleetmesh-controller without --xds-tls: %v, want it to exit with an error\n%s", err, out)
	}
	for _, want := range []string{"ADS would be served in plaintext", "--xds-tls", "--xds-insecure-plaintext", "--xds-address=0"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("its error does not say %q:\n%s", want, out)
		}
	}
	// A plaintext ADS client finds nothing to talk to.
	conn, err := grpc.NewClient(xdsAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sctx, scancel := context.WithTimeout(ctx, 3*time.Second)
	defer scancel()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(sctx)
	if err == nil {
		err = stream.Send(&discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Id: "curl-1.curl"}, TypeUrl: "type.googleapis.com/envoy.config.cluster.v3.Cluster"})
		if err == nil {
			_, err = stream.Recv()
		}
	}
	if status.Code(err) != codes.Unavailable && status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("a plaintext ADS client on %s got %v, want nothing there (Unavailable)", xdsAddr, err)
	}

	// No ADS at all: it starts, and is ready.
	cp, err := c.StartControlPlane(ctx, testenv.ControlPlaneOptions{Args: []string{"--cluster-name=member", "--xds-address=0"}, WaitReady: true})
	if err != nil {
		t.Fatalf("--xds-address=0: %v", err)
	}
	if err := cp.Stop(); err != nil {
		t.Error(err)
	}
}
