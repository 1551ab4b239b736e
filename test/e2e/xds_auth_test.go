package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/xds"
	"google.golang.org/protobuf/types/known/structpb"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fleetmesh/fleetmesh/pkg/bootstrap"
	"github.com/fleetmesh/fleetmesh/pkg/pki"
	"github.com/fleetmesh/fleetmesh/pkg/signer"
	fmxds "github.com/fleetmesh/fleetmesh/pkg/xds"
	"github.com/fleetmesh/fleetmesh/test/testenv"
)

// workload is a stand-in pod with the workload certificate the kubelet
// would have written into its podCertificate volume (test/e2e/realnode has
// the real kubelet), as files: key.pem, cert.pem and roots.pem.
type workload struct {
	c               *testenv.Cluster
	ns, pod, sa, ip string
	cert            tls.Certificate
	dir             string
}

// newWorkload runs a stand-in pod ns/pod as the ServiceAccount sa in c,
// and gets its certificate from the signer of the control plane.
func newWorkload(ctx context.Context, t *testing.T, c *testenv.Cluster, ns, pod, sa string, roots []byte) *workload {
	t.Helper()
	if err := c.EnsureNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	if err := c.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sa}}); client.IgnoreAlreadyExists(err) != nil {
		t.Fatal(err)
	}
	p, err := c.RunPod(ctx, testenv.PodOptions{Namespace: ns, Name: pod, ServiceAccountName: sa})
	if err != nil {
		t.Fatal(err)
	}
	w := &workload{c: c, ns: ns, pod: pod, sa: sa, ip: p.IP, dir: t.TempDir()}
	w.renew(ctx, t, roots)
	return w
}

// renew gets the workload a new certificate and writes its identity
// directory as the kubelet does, SDS files included (the injector's
// annotations hold them).
func (w *workload) renew(ctx context.Context, t *testing.T, roots []byte) {
	t.Helper()
	var err error
	serverID := testenv.ServerSPIFFEID("fleetmesh-system")
	w.cert, err = w.c.WriteIdentity(ctx, w.ns, w.pod, signer.Name, w.dir, func(key, chain []byte) (map[string][]byte, error) {
		return bootstrap.IdentityFiles(w.dir, serverID, key, chain, roots)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// dial connects to addr over TLS, with the workload's certificate when w
// is not nil, checking the server against the workload roots.
func dialXDS(t *testing.T, addr string, roots []byte, w *workload) *grpc.ClientConn {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(roots)
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if w != nil {
		cfg.Certificates = []tls.Certificate{w.cert}
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// node is an xDS node of role for pod ns/pod running as sa.
func node(t testing.TB, id, role, ns, pod, sa string) *corev3.Node {
	t.Helper()
	md, err := structpb.NewStruct(map[string]any{"role": role, "namespace": ns, "pod": pod, "serviceAccount": sa, "cluster": "cluster-1"})
	if err != nil {
		t.Fatal(err)
	}
	return &corev3.Node{Id: id, Metadata: md}
}

// firstAnswer sends requests on a new ADS stream and returns the first
// response or the error that ended the stream.
func firstAnswer(ctx context.Context, conn *grpc.ClientConn, reqs ...*discoveryv3.DiscoveryRequest) (*discoveryv3.DiscoveryResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return openStream(ctx, conn, reqs...)
}

// openStream sends requests on a new ADS stream, which lives as long as
// ctx, and returns the last response or the error that ended the stream.
func openStream(ctx context.Context, conn *grpc.ClientConn, reqs ...*discoveryv3.DiscoveryRequest) (*discoveryv3.DiscoveryResponse, error) {
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return nil, err
	}
	var resp *discoveryv3.DiscoveryResponse
	for _, r := range reqs {
		if err := stream.Send(r); err != nil {
			// The server ended the stream first (a refusal): its status
			// comes with Recv. Returning here without it read a
			// refusal as an answer.
			_, err = stream.Recv()
			return nil, err
		}
		if resp, err = stream.Recv(); err != nil {
			return nil, err
		}
		r.ResponseNonce = resp.GetNonce()
	}
	return resp, nil
}

const clusterType = "type.googleapis.com/envoy.config.cluster.v3.Cluster"

// TestOnlyAuthenticatedProxiesGetTheirOwnConfiguration runs cluster-1's
// built control plane with --workload-signer --xds-tls and talks to it
// on the wire, as stand-in pods whose certificates its signer issued.
func TestOnlyAuthenticatedProxiesGetTheirOwnConfiguration(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := fleet.Cluster("cluster-1")
	cp, roots := startTLSControlPlane(ctx, t, c,
		// The CA is checked every second: a handshake that asked the
		// API server for it would, in the outage below.
		"--workload-ca-check-interval=1s",
		// Proxies reconnect often, so a renewed certificate is used
		// within the test.
		"--xds-max-connection-age=2s", "--xds-max-connection-age-grace=1s",
		"--xds-max-request-bytes=1048576",
		// Pods without a certificate may present a token.
		"--xds-token-auth",
	)
	curl := newWorkload(ctx, t, c, "auth-curl", "curl-1", "curl", roots)
	attacker := newWorkload(ctx, t, c, "auth-curl", "attacker", "curl", roots)
	other := newWorkload(ctx, t, c, "auth-other", "other-1", "other", roots)
	// A pod of the gateways' namespace that is not a gateway.
	neighbour := newWorkload(ctx, t, c, "fleetmesh-system", "neighbour-1", "neighbour", roots)
	sidecarOf := func(w *workload) *corev3.Node { return node(t, w.pod+"."+w.ns, "sidecar", w.ns, w.pod, w.sa) }
	ask := func(n *corev3.Node) *discoveryv3.DiscoveryRequest {
		return &discoveryv3.DiscoveryRequest{Node: n, TypeUrl: clusterType}
	}

	t.Run("a client without a workload certificate gets nothing", func(t *testing.T) {
		_, err := firstAnswer(ctx, dialXDS(t, cp.XDSAddress, roots, nil), ask(sidecarOf(curl)))
		t.Logf("without a certificate: %v", err)
		if err == nil {
			t.Fatal("a client without a certificate was answered")
		}
		plain, err := grpc.NewClient(cp.XDSAddress, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer plain.Close()
		if _, err := firstAnswer(ctx, plain, ask(sidecarOf(curl))); err == nil {
			t.Fatal("a plaintext client was answered")
		}
	})

	t.Run("the legitimate sidecar gets its configuration", func(t *testing.T) {
		resp, err := firstAnswer(ctx, dialXDS(t, cp.XDSAddress, roots, curl), ask(sidecarOf(curl)))
		if err != nil {
			t.Fatalf("the sidecar of curl-1 was refused: %v", err)
		}
		t.Logf("curl-1's sidecar got %d clusters", len(resp.GetResources()))
	})

	t.Run("a request over --xds-max-request-bytes ends its stream, and the server serves on", func(t *testing.T) {
		huge := ask(sidecarOf(curl))
		for i := range 40_000 { // 2 MiB of names
			huge.ResourceNames = append(huge.ResourceNames, fmt.Sprintf("outbound|8080||service-%05d.a-namespace.svc.cluster.local", i))
		}
		_, err := firstAnswer(ctx, dialXDS(t, cp.XDSAddress, roots, curl), huge)
		t.Logf("%v", err)
		if status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("got %v, want ResourceExhausted", err)
		}
		if _, err := firstAnswer(ctx, dialXDS(t, cp.XDSAddress, roots, curl), ask(sidecarOf(curl))); err != nil {
			t.Fatalf("after the oversized request, the sidecar was refused: %v", err)
		}
	})

	for _, tt := range []struct {
		name string
		as   *workload
		node *corev3.Node
		want string
	}{
		{"a workload of namespace A claiming namespace B is denied", other, node(t, "other-1.auth-curl", "sidecar", "auth-curl", "other-1", "other"), `metadata.namespace is "auth-curl", the credential's "auth-other"`},
		{"another pod of the same ServiceAccount cannot take the sidecar's node", attacker, sidecarOf(curl), `metadata.pod is "curl-1", the credential's "attacker"`},
		{"nor its node id under its own pod name", attacker, node(t, "curl-1.auth-curl", "sidecar", "auth-curl", "attacker", "curl"), `node.id is "curl-1.auth-curl"`},
		{"a workload cannot be a gateway", curl, node(t, "curl-1.auth-curl", "gateway", "auth-curl", "curl-1", "curl"), "a gateway runs in namespace fleetmesh-system"},
		{"nor can another ServiceAccount of the gateways' namespace", neighbour, node(t, "neighbour-1.fleetmesh-system", "gateway", "fleetmesh-system", "neighbour-1", "neighbour"), "a gateway runs as ServiceAccount fleetmesh-gateway, not neighbour"},
		{"a proxyless client cannot take another pod's node id", attacker, node(t, "curl-1.auth-curl", "grpc", "auth-curl", "attacker", "curl"), `node.id is "curl-1.auth-curl"`},
		{"nor a node id of its own choosing", attacker, node(t, "attacker-2.auth-curl", "grpc", "auth-curl", "attacker", "curl"), `node.id is "attacker-2.auth-curl"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := firstAnswer(ctx, dialXDS(t, cp.XDSAddress, roots, tt.as), ask(tt.node))
			t.Logf("%v", err)
			if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want PermissionDenied naming %q", err, tt.want)
			}
		})
	}

	t.Run("a node holds at most a few streams at once", func(t *testing.T) {
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		conn := dialXDS(t, cp.XDSAddress, roots, other)
		for i := range fmxds.MaxStreamsPerNode {
			if _, err := openStream(sctx, conn, ask(sidecarOf(other))); err != nil {
				t.Fatalf("stream %d of other-1 was refused: %v", i+1, err)
			}
		}
		_, err := openStream(sctx, conn, ask(sidecarOf(other)))
		t.Logf("%v", err)
		if status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("stream %d of one node: got %v, want ResourceExhausted", fmxds.MaxStreamsPerNode+1, err)
		}
	})

	t.Run("a stream may not change its node", func(t *testing.T) {
		_, err := firstAnswer(ctx, dialXDS(t, cp.XDSAddress, roots, curl),
			ask(sidecarOf(curl)),
			ask(node(t, "curl-2.auth-curl", "sidecar", "auth-curl", "curl-2", "curl")))
		t.Logf("%v", err)
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "may not change its node") {
			t.Fatalf("got %v, want PermissionDenied: a stream may not change its node", err)
		}
	})

	t.Run("a proxyless grpc-go client authenticates with the documented bootstrap", func(t *testing.T) {
		// The bootstrap a proxyless pod uses, its files where its
		// podCertificate and clusterTrustBundle projections put them.
		bootstrap := fmt.Sprintf(`{
			"xds_servers": [{"server_uri": %q, "server_features": ["xds_v3"], "channel_creds": [{"type": "tls", "config": {
				"ca_certificate_file": %q, "certificate_file": %q, "private_key_file": %q}}]}],
			"node": {"id": "curl-1.auth-curl", "metadata": {"role": "grpc", "namespace": "auth-curl", "pod": "curl-1", "serviceAccount": "curl", "cluster": "cluster-1"}}
		}`, cp.XDSAddress, filepath.Join(curl.dir, "roots.pem"), filepath.Join(curl.dir, "cert.pem"), filepath.Join(curl.dir, "key.pem"))
		builder, err := xds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
		if err != nil {
			t.Fatal(err)
		}
		const ns, name = "auth-svc", "greeter"
		createService(ctx, t, c, ns, name, "grpc", 9090)
		if _, err := c.RunPod(ctx, testenv.PodOptions{
			Namespace: ns, Name: name + "-1", Labels: map[string]string{"app": name},
			Ports: []corev1.ContainerPort{{ContainerPort: 9090}}, Backend: &testenv.GRPCBackend{Cluster: c.Name, Port: 9090},
		}); err != nil {
			t.Fatal(err)
		}
		conn, err := grpc.NewClient("xds:///"+name+"."+ns+".svc.cluster.local:9090", grpc.WithResolvers(builder), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		counts := map[string]int{}
		err = testenv.Eventually(ctx, 20*time.Second, func(ctx context.Context) (bool, error) {
			counts = grpcCalls(ctx, testgrpc.NewTestServiceClient(conn), 5, (*testgrpc.SimpleResponse).GetHostname)
			return counts["cluster-1"] == 5, nil
		})
		if err != nil {
			t.Fatalf("the proxyless client over TLS never reached its service: %s", describe(counts))
		}
	})

	t.Run("a real Envoy sidecar authenticates, and a renewed certificate drops no request", func(t *testing.T) {
		const ns, name = "auth-svc", "web"
		createService(ctx, t, c, ns, name, "http", 8080)
		if _, err := c.RunPod(ctx, testenv.PodOptions{
			Namespace: ns, Name: name + "-1", Labels: map[string]string{"app": name},
			Ports: []corev1.ContainerPort{{ContainerPort: 8080}}, Backend: &testenv.HTTPBackend{Port: 8080, Body: "Hi, I am from cluster-1!\n"},
		}); err != nil {
			t.Fatal(err)
		}
		// A pod that takes the sidecar's node id before the sidecar
		// connects (as while it restarts), as a proxyless client, is
		// refused and holds nothing.
		squatCtx, stopSquat := context.WithCancel(ctx)
		defer stopSquat()
		_, err := openStream(squatCtx, dialXDS(t, cp.XDSAddress, roots, attacker), ask(node(t, curl.pod+"."+curl.ns, "grpc", attacker.ns, attacker.pod, attacker.sa)))
		t.Logf("the squatter: %v", err)
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("a pod squatting %s.%s's node id got %v, want PermissionDenied", curl.pod, curl.ns, err)
		}
		sidecar, err := startEnvoy(ctx, bootstrap.Options{
			NodeID: curl.pod + "." + curl.ns, Role: "sidecar", Namespace: curl.ns, Pod: curl.pod, ServiceAccount: curl.sa, Cluster: "cluster-1", Delta: true,
			IdentityDir: curl.dir, XDSServerName: "fleetmesh-controller.fleetmesh-system.svc",
		}, cp)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = sidecar.Stop() }()
		to, host := curl.ip+":8080", name+"."+ns+":8080"
		eventuallyHTTP(ctx, t, "the sidecar routes to web", to, host, func(c map[string]int) bool { return c["cluster-1"] == 20 })
		if st := syncState(cp, curl.pod+"."+curl.ns); st != "SYNCED" {
			t.Errorf("the sidecar, whose node id a squatter asked for first, is %s, want SYNCED", st)
		}
		// The squatter again, while the sidecar is connected: refused,
		// and the sidecar stays SYNCED and routing.
		_, err = openStream(squatCtx, dialXDS(t, cp.XDSAddress, roots, attacker), ask(node(t, curl.pod+"."+curl.ns, "grpc", attacker.ns, attacker.pod, attacker.sa)))
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("a pod squatting the connected sidecar's node id got %v, want PermissionDenied", err)
		}
		if st := syncState(cp, curl.pod+"."+curl.ns); st != "SYNCED" {
			t.Errorf("after the squatter, the sidecar is %s, want SYNCED", st)
		}
		eventuallyHTTP(ctx, t, "the sidecar still routes to web", to, host, func(c map[string]int) bool { return c["cluster-1"] == 20 })
		serial := func() string {
			certs, _ := sidecar.Get("/certs")
			return certs
		}
		before := serial()
		// Calls go on while the certificate is renewed and the proxy
		// reconnects (its connection is closed every 2s) with the new one.
		stop, calls := make(chan struct{}), make(chan map[string]int, 1)
		go func() {
			total := map[string]int{}
			for {
				select {
				case <-stop:
					calls <- total
					return
				default:
				}
				for k, v := range httpCalls(ctx, to, host, "/", 20) {
					total[k] += v
				}
			}
		}()
		stat := func(name string) int {
			n, _ := sidecar.Stat("cluster.fleetmesh-xds." + name)
			return n
		}
		time.Sleep(time.Second)
		curl.renew(ctx, t, roots)
		renewed := fmt.Sprintf("%x", curl.cert.Leaf.SerialNumber)
		err = testenv.Eventually(ctx, 20*time.Second, func(context.Context) (bool, error) {
			return strings.Contains(strings.ReplaceAll(serial(), ":", ""), renewed), nil
		})
		if err != nil {
			t.Errorf("Envoy never loaded the renewed certificate %s: /certs %s (before: %s)", renewed, serial(), before)
		}
		loaded := stat("upstream_cx_total")
		err = testenv.Eventually(ctx, 20*time.Second, func(context.Context) (bool, error) {
			return stat("upstream_cx_total") >= loaded+2, nil
		})
		close(stop)
		counts := <-calls
		t.Logf("%d calls through the sidecar while its certificate was renewed: %s; connections to the xDS server: %d in all, %d after the renewal was loaded; TLS errors: %d",
			counts["cluster-1"]+counts["failed"], describe(counts), stat("upstream_cx_total"), stat("upstream_cx_total")-loaded, stat("ssl.connection_error"))
		if err != nil {
			t.Errorf("the sidecar did not reconnect twice after the renewal: %v", err)
		}
		if counts["failed"] > 0 || counts["cluster-1"] == 0 {
			t.Errorf("calls while the certificate was renewed: %s, want none failed", describe(counts))
		}
		if n := stat("ssl.connection_error"); n > 0 {
			t.Errorf("%d TLS connections to the xDS server failed", n)
		}
		if st := syncState(cp, curl.pod+"."+curl.ns); st != "SYNCED" {
			t.Errorf("after the renewal the sidecar is %s, want SYNCED", st)
		}

		// The built CLI shows the renewed certificate: the one the
		// control plane saw on the sidecar's stream, and the one its
		// Envoy holds.
		id := curl.pod + "." + curl.ns
		spiffe := "spiffe://cluster.local/ns/" + curl.ns + "/sa/" + curl.sa
		out := fleetmeshCLI(ctx, t, c, cp, "proxy-status", id)
		if len(testenv.TableLines(out, id, "certificate")) != 1 {
			t.Errorf("fleetmesh proxy-status shows no certificate for %s:\n%s", id, out)
		}
		out = fleetmeshCLI(ctx, t, c, cp, "proxy-config", "secrets", id)
		if len(testenv.TableLines(out, "certificate", spiffe, renewed)) != 1 {
			t.Errorf("fleetmesh proxy-config secrets %s: want the renewed certificate %s of %s:\n%s", id, renewed, spiffe, out)
		}
		out = fleetmeshCLI(ctx, t, c, cp, "proxy-config", "secrets", id, "--envoy-admin-url", sidecar.Admin)
		if len(testenv.TableLines(out, "CHAIN", renewed, spiffe)) != 1 {
			t.Errorf("fleetmesh proxy-config secrets %s --envoy-admin-url: want Envoy's renewed certificate %s:\n%s", id, renewed, out)
		}
		t.Logf("fleetmesh proxy-config secrets %s --envoy-admin-url:\n%s", id, out)
	})

	t.Run("with the API server down, a proxy still connects: its handshake needs nothing of it", func(t *testing.T) {
		if err := c.FreezeAPIServer(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := c.ThawAPIServer(); err != nil {
				t.Fatal(err)
			}
		}()
		// Past the next check of the CA, which now waits on the frozen
		// API server: a handshake that asked for the CA would wait too.
		time.Sleep(2500 * time.Millisecond)
		start := time.Now()
		if _, err := firstAnswer(ctx, dialXDS(t, cp.XDSAddress, roots, curl), ask(sidecarOf(curl))); err != nil {
			t.Fatalf("with cluster-1's API server frozen, the sidecar of curl-1 was not served: %v", err)
		}
		t.Logf("served in %s with the API server frozen", time.Since(start).Round(time.Millisecond))
	})

	t.Run("without a certificate, a pod's ServiceAccount token", func(t *testing.T) {
		checkTokenAuth(ctx, t, c, cp, roots, curl, attacker)
	})

	t.Run("after an emergency rotation of the CA, its old certificates are refused", func(t *testing.T) {
		secret := &corev1.Secret{}
		key := client.ObjectKey{Namespace: "fleetmesh-system", Name: signer.CASecret}
		if err := c.Client.Get(ctx, key, secret); err != nil {
			t.Fatal(err)
		}
		old := pki.ParseCerts(secret.Data["ca.crt"])
		if secret.Annotations == nil {
			secret.Annotations = map[string]string{}
		}
		secret.Annotations[signer.EmergencyRotateAnnotation] = "e2e"
		if err := c.Client.Update(ctx, secret); err != nil {
			t.Fatal(err)
		}
		var fresh []byte
		err := testenv.Eventually(ctx, 20*time.Second, func(ctx context.Context) (bool, error) {
			cm := &corev1.ConfigMap{}
			if err := c.Client.Get(ctx, client.ObjectKey{Namespace: "fleetmesh-system", Name: signer.RootsConfigMap}, cm); err != nil {
				return false, err
			}
			fresh = []byte(cm.Data["roots.pem"])
			published := pki.ParseCerts(fresh)
			return len(published) == 1 && !slices.ContainsFunc(old, published[0].Equal), nil
		})
		if err != nil {
			t.Fatalf("the roots are not the new CA alone: %v", err)
		}
		// The xDS server takes the new CA at its next check (every
		// second here): a workload certificate of the old one is refused
		// at the handshake, one of the new CA is taken.
		err = testenv.Eventually(ctx, 20*time.Second, func(ctx context.Context) (bool, error) {
			_, err := firstAnswer(ctx, dialXDS(t, cp.XDSAddress, fresh, curl), ask(sidecarOf(curl)))
			return err != nil, nil
		})
		if err != nil {
			t.Fatal("a certificate of the compromised CA is still taken by the xDS server")
		}
		curl.renew(ctx, t, fresh)
		if _, err := firstAnswer(ctx, dialXDS(t, cp.XDSAddress, fresh, curl), ask(sidecarOf(curl))); err != nil {
			t.Fatalf("a certificate of the new CA: %v", err)
		}
	})

	metrics, err := cp.Get("/metrics")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s", testenv.Grep(metrics, "fleetmesh_xds_refused_streams_total"))
	if !strings.Contains(metrics, `fleetmesh_xds_refused_streams_total{reason="denied"}`) {
		t.Errorf("/metrics counts no denied stream")
	}
}

// syncState is a proxy's state in the control plane's syncz: SYNCED once
// it has acknowledged everything sent.
func syncState(cp *testenv.ControlPlane, id string) string {
	for _, p := range proxiesOf(cp) {
		if p.ID == id {
			state := "SYNCED"
			for _, st := range p.Types {
				if st.State() != "SYNCED" {
					state = st.State()
				}
			}
			return state
		}
	}
	return "not connected"
}

// fleetmeshCLI runs the built CLI as the cluster's admin against the
// control plane's debug API (HTTPS, its self-signed certificate), and
// fails the test if it fails.
func fleetmeshCLI(ctx context.Context, t *testing.T, c *testenv.Cluster, cp *testenv.ControlPlane, args ...string) string {
	t.Helper()
	bin, err := testenv.Binary("fleetmesh")
	if err != nil {
		t.Fatal(err)
	}
	args = append([]string{"--kubeconfig", c.KubeconfigPath, "--control-plane-url", "https://" + cp.DebugAddress, "--control-plane-insecure-skip-tls-verify"}, args...)
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("fleetmesh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// startTLSControlPlane runs c's built controller with its workload
// signer and ADS over TLS (and args), stopped with the test, and returns
// it with the roots its signer published.
func startTLSControlPlane(ctx context.Context, tb testing.TB, c *testenv.Cluster, args ...string) (*testenv.ControlPlane, []byte) {
	tb.Helper()
	if err := c.EnsureNamespace(ctx, "fleetmesh-system"); err != nil {
		tb.Fatal(err)
	}
	cp, err := c.StartControlPlane(ctx, testenv.ControlPlaneOptions{
		Args:      append([]string{"--cluster-name=cluster-1", "--namespace=fleetmesh-system", "--workload-signer", "--xds-tls"}, args...),
		WaitReady: true,
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = cp.Stop() })
	var roots []byte
	err = testenv.Eventually(ctx, 20*time.Second, func(ctx context.Context) (bool, error) {
		cm := &corev1.ConfigMap{}
		err := c.Client.Get(ctx, client.ObjectKey{Namespace: "fleetmesh-system", Name: signer.RootsConfigMap}, cm)
		roots = []byte(cm.Data[signer.RootsKey])
		return err == nil && len(pki.ParseCerts(roots)) > 0, client.IgnoreNotFound(err)
	})
	if err != nil {
		tb.Fatalf("the roots were never published: %v", err)
	}
	return cp, roots
}
