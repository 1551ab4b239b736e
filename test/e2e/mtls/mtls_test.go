// Package mtls runs the article's fleet as manifests/member installs it
// (workload signer, TLS to the control planes, a certificate for every
// proxy) and checks mesh mTLS on the wire with real Envoys: the fleet's
// trust brought by the federation, end-to-end mTLS through a remote
// gateway that passes it through, the caller's identity at the serving
// sidecar, authorization by the export's serviceAccountName, STRICT and
// PERMISSIVE, a gateway that carries only the mesh, and certificates
// renewed under traffic.
package mtls

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
	"github.com/fleetmesh/fleetmesh/pkg/cli"
	"github.com/fleetmesh/fleetmesh/pkg/discovery"
	"github.com/fleetmesh/fleetmesh/pkg/pki"
	"github.com/fleetmesh/fleetmesh/pkg/signer"
	"github.com/fleetmesh/fleetmesh/pkg/translate"
	"github.com/fleetmesh/fleetmesh/test/article"
	"github.com/fleetmesh/fleetmesh/test/testenv"
)

var fleet *article.Fleet

// sniEnv makes grpc-go send the SNI of its xDS security configuration
// (gRFC A101, experimental in grpc-go): a remote gateway passes mesh mTLS
// through by it. grpc-go reads it when the process starts.
const sniEnv = "GRPC_EXPERIMENTAL_XDS_SNI"

func TestMain(m *testing.M) {
	if os.Getenv(sniEnv) != "true" {
		// Run again, with it.
		cmd := exec.Command(os.Args[0], os.Args[1:]...)
		cmd.Env = append(os.Environ(), sniEnv+"=true")
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		err := cmd.Run()
		var exit *exec.ExitError
		switch {
		case errors.As(err, &exit):
			os.Exit(exit.ExitCode())
		case err != nil:
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	testenv.Main(m, func() int {
		var err error
		fleet, err = article.Start(context.Background(), article.Options{MTLS: true})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer fleet.Stop()
		return m.Run()
	})
}

// waitFleetTrust waits until every member's pods would trust every
// member's workload CAs: the federation has carried each member's roots
// to the others, and their signers published them. The kubelets then put
// the trust bundles into the identity volumes of the proxies running.
func waitFleetTrust(ctx context.Context, t *testing.T) {
	t.Helper()
	start := time.Now()
	for _, name := range article.Members {
		c := fleet.Cluster(name)
		var missing int
		err := testenv.Eventually(ctx, time.Minute, func(ctx context.Context) (bool, error) {
			roots, err := article.TrustedRoots(ctx, c)
			if err != nil {
				return false, nil
			}
			trusted := pki.ParseCerts(roots)
			missing = 0
			for _, m := range article.Members {
				for _, ca := range publishedRoots(ctx, t, fleet.Cluster(m)) {
					if !slices.ContainsFunc(trusted, ca.Equal) {
						missing++
					}
				}
			}
			return missing == 0, nil
		})
		if err != nil {
			t.Fatalf("%s does not trust %d of the fleet's workload CAs: %v", name, missing, err)
		}
	}
	t.Logf("every member trusts the fleet's workload CAs, %s after the test began", time.Since(start).Round(time.Millisecond))
	for _, name := range article.Members {
		if err := fleet.RefreshIdentities(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
}

const httpbinHost = "httpbin.httpbin:8080"

// call sends one GET through a client pod's sidecar to httpbin; it
// returns the answer's body and its status (or the connection's error).
func call(ctx context.Context, pod *testenv.Pod) (string, error) {
	return article.Get(ctx, net.JoinHostPort(pod.IP, "8080"), httpbinHost, "/")
}

// setCallers sets the serviceAccountName of cluster-1's exports of
// httpbin and httpbin-cluster-1: both reach the same pod, whose sidecar
// restricts its port only when every service on it does. Callers named,
// the exports' rules go: the API server refuses paths at the gateway's
// edge beside them.
func setCallers(ctx context.Context, t *testing.T, callers string) {
	t.Helper()
	c := fleet.Cluster("cluster-1")
	for _, name := range []string{"httpbin", "httpbin-cluster-1"} {
		e := &fmv1alpha1.ServiceExport{}
		if err := c.Client.Get(ctx, client.ObjectKey{Namespace: "httpbin", Name: name}, e); err != nil {
			t.Fatal(err)
		}
		e.Spec.ServiceAccountName = callers
		if callers != "*" {
			e.Spec.Rules = nil
		}
		if err := c.Client.Update(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
}

// setMode labels a namespace of cluster-1 with an mTLS mode.
func setMode(ctx context.Context, t *testing.T, name, mode string) {
	t.Helper()
	ns := &corev1.Namespace{}
	c := fleet.Cluster("cluster-1")
	if err := c.Client.Get(ctx, client.ObjectKey{Name: name}, ns); err != nil {
		t.Fatal(err)
	}
	if ns.Labels == nil {
		ns.Labels = map[string]string{}
	}
	ns.Labels[discovery.MTLSModeKey] = mode
	if err := c.Client.Update(ctx, ns); err != nil {
		t.Fatal(err)
	}
}

// eventually waits until cond holds, failing the test with what it last
// said.
func eventually(ctx context.Context, t *testing.T, what string, cond func(ctx context.Context) (bool, string)) {
	t.Helper()
	var last string
	err := testenv.Eventually(ctx, 30*time.Second, func(ctx context.Context) (bool, error) {
		var ok bool
		ok, last = cond(ctx)
		return ok, nil
	})
	if err != nil {
		t.Fatalf("%s: %v; last: %s", what, err, last)
	}
}

// statSum adds up the counters of an Envoy whose names match every part.
func statSum(t *testing.T, e *testenv.Envoy, parts ...string) int {
	t.Helper()
	quoted := make([]string, len(parts))
	for i, p := range parts {
		quoted[i] = regexp.QuoteMeta(p)
	}
	body, err := e.Get("/stats?filter=" + url.QueryEscape(strings.Join(quoted, ".*")))
	if err != nil {
		t.Fatal(err)
	}
	sum := 0
	for _, line := range strings.Split(body, "\n") {
		_, v, ok := strings.Cut(line, ": ")
		if !ok {
			continue
		}
		var n int
		if _, err := fmt.Sscan(strings.TrimSpace(v), &n); err == nil {
			sum += n
		}
	}
	return sum
}

func TestMeshMTLSAcrossClusters(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	waitFleetTrust(ctx, t)

	// httpbin runs in cluster-1 behind its sidecar, exported; curl and an
	// intruder (another ServiceAccount) run in cluster-2, whose traffic
	// to cluster-1 goes through cluster-1's gateway.
	if err := fleet.DeployMeshedHTTPBin(ctx, "cluster-1", "Hi, I am from cluster-1 and controlled by mesh!\n"); err != nil {
		t.Fatal(err)
	}
	if err := fleet.Export(ctx, "cluster-1"); err != nil {
		t.Fatal(err)
	}
	// cluster-2 has no httpbin of its own: its policy sends it on.
	if err := fleet.Cluster("cluster-2").EnsureNamespace(ctx, "httpbin"); err != nil {
		t.Fatal(err)
	}
	if err := fleet.PolicyFor(ctx, "httpbin", fmv1alpha1.ActiveActiveLbType); err != nil {
		t.Fatal(err)
	}
	curl, curlEnvoy, err := fleet.RunClient(ctx, "curl", "curl-1", "curl")
	if err != nil {
		t.Fatal(err)
	}
	intruder, _, err := fleet.RunClient(ctx, "curl", "intruder-1", "intruder")
	if err != nil {
		t.Fatal(err)
	}
	server := fleet.HTTPBinSidecars["cluster-1"]
	gateway := fleet.Gateways["cluster-1"]
	sni := "outbound_.8080_._.httpbin.httpbin.svc.cluster.local"

	var body string
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		// What the three Envoys on the path held, and did.
		for name, e := range map[string]*testenv.Envoy{"curl": curlEnvoy, "gateway": gateway, "httpbin": server} {
			clusters, _ := e.Get("/clusters")
			stats, _ := e.Get("/stats?filter=ssl|rbac|tcp")
			t.Logf("%s clusters:\n%s\nstats:\n%s\nlog:\n%s", name, testenv.Grep(clusters, "httpbin"), grepNonZero(stats), e.Log())
		}
	})
	eventually(ctx, t, "curl reaches httpbin in cluster-1", func(ctx context.Context) (bool, string) {
		var err error
		body, err = call(ctx, curl)
		return err == nil, fmt.Sprint(body, err)
	})

	t.Run("the serving sidecar sees the caller's SPIFFE ID", func(t *testing.T) {
		want := "URI=spiffe://cluster.local/ns/curl/sa/curl"
		if !strings.Contains(body, want) {
			t.Fatalf("httpbin was told %q, want the caller's identity %s", body, want)
		}
	})

	t.Run("it is TLS on the wire, end to end through the gateway", func(t *testing.T) {
		for range 10 {
			if _, err := call(ctx, curl); err != nil {
				t.Fatal(err)
			}
		}
		// The client's side: its cluster's TLS handshakes.
		expectCounted(t, curlEnvoy, "curl's sidecar made no TLS handshake to httpbin", "cluster", "outbound|8080||httpbin.httpbin.svc.cluster.local", "ssl.handshake")
		// The gateway passed connections through by SNI, as TCP: it
		// never saw HTTP.
		expectCounted(t, gateway, fmt.Sprintf("cluster-1's gateway passed no connection through for %s", sni), "tcp", sni, "downstream_cx_total")
		// The serving sidecar ended TLS and saw client certificates.
		expectCounted(t, server, "httpbin's sidecar ended no TLS handshake", "listener", "ssl.handshake")
		if n := statSum(t, server, "listener", "ssl.no_certificate"); n != 0 {
			t.Errorf("httpbin's sidecar took %d TLS connections without a client certificate", n)
		}
	})

	t.Run("PERMISSIVE takes plaintext, STRICT refuses it", func(t *testing.T) {
		plaintext := func(ctx context.Context) (string, error) {
			return article.Get(ctx, net.JoinHostPort(httpbinPodIP(ctx, t), "8080"), httpbinHost, "/")
		}
		if b, err := plaintext(ctx); err != nil {
			t.Fatalf("PERMISSIVE (the default): a plaintext client got %v (%s)", err, b)
		}
		setMode(ctx, t, "httpbin", "STRICT")
		eventually(ctx, t, "STRICT refuses a plaintext client", func(ctx context.Context) (bool, string) {
			b, err := plaintext(ctx)
			return err != nil && !strings.HasPrefix(err.Error(), "4") && !strings.HasPrefix(err.Error(), "5"), fmt.Sprint(b, err)
		})
		if b, err := call(ctx, curl); err != nil {
			t.Fatalf("STRICT: curl over mTLS got %v (%s)", err, b)
		}
	})

	t.Run("the gateway carries only the mesh", func(t *testing.T) {
		// Plaintext east-west to a STRICT namespace: no route.
		eventually(ctx, t, "a plaintext client of the gateway is refused", func(ctx context.Context) (bool, string) {
			b, err := article.Get(ctx, fleet.GatewayAddress("cluster-1"), "httpbin.httpbin.svc.cluster.local:8080", "/")
			return err != nil && err.Error() == "404 Not Found", fmt.Sprint(b, err)
		})
		// TLS for httpbin without a mesh certificate: the handshake
		// fails (at httpbin's sidecar, through the gateway).
		if err := tlsWithoutCertificate(fleet.GatewayAddress("cluster-1"), sni); err == nil {
			t.Error("a TLS client without a certificate got an answer through the gateway")
		} else {
			t.Logf("TLS without a certificate: %v", err)
		}
		// TLS naming no exported service: closed at once.
		if err := tlsWithoutCertificate(fleet.GatewayAddress("cluster-1"), "example.com"); err == nil {
			t.Error("the gateway answered TLS for example.com")
		}
		// The edge stays plain HTTP, and reaches httpbin's sidecar over
		// mTLS as the gateway.
		b, err := article.Get(ctx, fleet.GatewayAddress("cluster-1"), "anything", "/cluster-1/httpbin-mesh")
		if err != nil {
			t.Fatalf("north-south: %v (%s)", err, b)
		}
		if want := "URI=spiffe://cluster.local/ns/fleetmesh-system/sa/fleetmesh-gateway"; !strings.Contains(b, want) {
			t.Errorf("north-south: httpbin was told %q, want the gateway's identity %s", b, want)
		}
	})

	t.Run("only the export's callers may call, on every path in", func(t *testing.T) {
		// PERMISSIVE again: plaintext callers have no identity, and may
		// call exports open to anyone, at the pod or through the gateway.
		setMode(ctx, t, "httpbin", "PERMISSIVE")
		plaintextThroughGateway := func(ctx context.Context) (string, error) {
			return article.Get(ctx, fleet.GatewayAddress("cluster-1"), "httpbin.httpbin.svc.cluster.local:8080", "/")
		}
		eventually(ctx, t, "a plaintext caller reaches httpbin, open to anyone, through the gateway", func(ctx context.Context) (bool, string) {
			b, err := plaintextThroughGateway(ctx)
			return err == nil, fmt.Sprint(b, err)
		})
		if b, err := call(ctx, intruder); err != nil {
			t.Fatalf("with serviceAccountName *, the intruder got %v (%s)", err, b)
		}
		// Rules beside named callers are refused by the API server,
		// naming the field.
		e := &fmv1alpha1.ServiceExport{}
		if err := fleet.Cluster("cluster-1").Client.Get(ctx, client.ObjectKey{Namespace: "httpbin", Name: "httpbin"}, e); err != nil {
			t.Fatal(err)
		}
		e.Spec.ServiceAccountName = "curl/curl"
		if err := fleet.Cluster("cluster-1").Client.Update(ctx, e); err == nil || !strings.Contains(err.Error(), "spec.rules") {
			t.Fatalf("an export with rules and callers named: got %v, want the API server to refuse it naming spec.rules", err)
		}
		setCallers(ctx, t, "curl/curl")
		eventually(ctx, t, "the intruder gets 403", func(ctx context.Context) (bool, string) {
			b, err := call(ctx, intruder)
			return err != nil && err.Error() == "403 Forbidden", fmt.Sprint(b, err)
		})
		if b, err := call(ctx, curl); err != nil {
			t.Fatalf("curl, allowed, got %v (%s)", err, b)
		}
		expectCounted(t, server, "httpbin's sidecar counted no RBAC denial", "rbac", "denied")
		// A plaintext caller at the gateway has no identity: there is no
		// route for it, though the namespace is PERMISSIVE.
		eventually(ctx, t, "a plaintext caller of the gateway gets no route to the restricted httpbin", func(ctx context.Context) (bool, string) {
			b, err := plaintextThroughGateway(ctx)
			return err != nil && err.Error() == "404 Not Found", fmt.Sprint(b, err)
		})
		// Nor at the pod.
		if b, err := article.Get(ctx, net.JoinHostPort(httpbinPodIP(ctx, t), "8080"), httpbinHost, "/"); err == nil || err.Error() != "403 Forbidden" {
			t.Errorf("a plaintext caller at httpbin's pod got %v (%s), want 403", err, b)
		}
		// The north-south path went with the rules.
		eventually(ctx, t, "the north-south path of the restricted httpbin is gone", func(ctx context.Context) (bool, string) {
			b, err := article.Get(ctx, fleet.GatewayAddress("cluster-1"), "anything", "/cluster-1/httpbin-mesh")
			return err != nil && err.Error() == "404 Not Found", fmt.Sprint(b, err)
		})
		// The gateways' namespace is no master key: another of its
		// ServiceAccounts, and the gateways' own identity where the
		// gateway passes the mTLS through, are callers like any other.
		for _, sa := range []string{"neighbour", "fleetmesh-gateway"} {
			pod, _, err := fleet.RunClient(ctx, "fleetmesh-system", "impostor-"+sa, sa)
			if err != nil {
				t.Fatal(err)
			}
			if b, err := call(ctx, pod); err == nil || err.Error() != "403 Forbidden" {
				t.Errorf("fleetmesh-system/%s in cluster-2 got %v (%s) from the restricted httpbin, want 403", sa, err, b)
			}
		}
		// explain tells an operator the same.
		var out bytes.Buffer
		args := []string{
			"--kubeconfig", fleet.Cluster("cluster-1").KubeconfigPath, "--control-plane-access=" + article.LabControlPlaneAccess,
			"explain", "httpbin.httpbin", "--from-cluster", "cluster-1",
		}
		if err := cli.Execute(ctx, &out, args); err != nil {
			t.Fatalf("fleetmesh explain: %v\n%s", err, out.String())
		}
		for _, want := range []string{"Callers: only curl/curl; others get 403", "mTLS: PERMISSIVE", "no route at the gateway"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("fleetmesh explain does not say %q:\n%s", want, out.String())
			}
		}
	})

	t.Run("certificates renewed under traffic: no request fails", func(t *testing.T) {
		traffic := underTraffic(ctx, curl)
		var curlSerial, httpbinSerial string
		for range 2 {
			time.Sleep(500 * time.Millisecond)
			if curlSerial, err = fleet.RenewIdentity(ctx, "cluster-2", "curl", "curl-1"); err != nil {
				t.Fatal(err)
			}
			time.Sleep(500 * time.Millisecond)
			if httpbinSerial, err = fleet.RenewIdentity(ctx, "cluster-1", "httpbin", "httpbin-1"); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(time.Second)
		traffic.check(t, "two renewals of each side's certificate")
		// Each side's Envoy took its renewed certificate, for the mesh
		// too, with no restart.
		for name, c := range map[string]struct {
			e      *testenv.Envoy
			serial string
		}{"curl": {curlEnvoy, curlSerial}, "httpbin": {server, httpbinSerial}} {
			certs, err := c.e.Get("/certs")
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(certs, `"serial_number": "`+c.serial+`"`) {
				t.Errorf("%s's Envoy does not hold its renewed certificate %s:\n%s", name, c.serial, certs)
			}
		}
	})

	t.Run("cluster-1's workload CA rotated under traffic: no request fails", func(t *testing.T) {
		c1 := fleet.Cluster("cluster-1")
		before := publishedRoots(ctx, t, c1)
		traffic := underTraffic(ctx, curl)
		start := time.Now()
		secret := &corev1.Secret{}
		key := client.ObjectKey{Namespace: "fleetmesh-system", Name: signer.CASecret}
		if err := c1.Client.Get(ctx, key, secret); err != nil {
			t.Fatal(err)
		}
		secret.Annotations = map[string]string{signer.RotateAnnotation: "e2e"}
		if err := c1.Client.Update(ctx, secret); err != nil {
			t.Fatal(err)
		}
		// A new CA is staged and published: cluster-1's roots, then,
		// through the federation, cluster-2's.
		var newCA *x509.Certificate
		eventually(ctx, t, "cluster-1 publishes a second CA", func(ctx context.Context) (bool, string) {
			roots := publishedRoots(ctx, t, c1)
			for _, c := range roots {
				if !slices.ContainsFunc(before, c.Equal) {
					newCA = c
				}
			}
			return newCA != nil, fmt.Sprintf("%d roots", len(roots))
		})
		eventually(ctx, t, "cluster-2 trusts cluster-1's new CA", func(ctx context.Context) (bool, string) {
			roots, err := article.TrustedRoots(ctx, fleet.Cluster("cluster-2"))
			return err == nil && slices.ContainsFunc(pki.ParseCerts(roots), newCA.Equal), fmt.Sprint(err)
		})
		staged := time.Since(start)
		// The kubelets refresh the pods' trust bundles (and, here, their
		// certificates, still from the old CA).
		for _, c := range []string{"cluster-1", "cluster-2"} {
			if err := fleet.RefreshIdentities(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
		if ca := issuerOf(t, fleet.IdentityDir("cluster-1", "httpbin", "httpbin-1")); ca.Equal(newCA) {
			t.Fatalf("cluster-1 signed with its new CA %s after the rotation was asked: the overlap was not kept", time.Since(start))
		}
		// After the overlap the new CA signs; the old one stays trusted.
		eventually(ctx, t, "the new CA signs", func(ctx context.Context) (bool, string) {
			if err := c1.Client.Get(ctx, key, secret); err != nil {
				return false, err.Error()
			}
			_, staged := secret.Data["next.crt"]
			return !staged, "still staged"
		})
		if err := fleet.RefreshIdentities(ctx, "cluster-1"); err != nil {
			t.Fatal(err)
		}
		if ca := issuerOf(t, fleet.IdentityDir("cluster-1", "httpbin", "httpbin-1")); !ca.Equal(newCA) {
			t.Fatal("httpbin's certificate after the overlap is not from cluster-1's new CA")
		}
		if roots := publishedRoots(ctx, t, c1); !slices.ContainsFunc(roots, before[len(before)-1].Equal) {
			t.Error("cluster-1's old CA is no longer trusted")
		}
		// Calls go on with httpbin's new certificate.
		time.Sleep(2 * time.Second)
		t.Logf("the new CA was trusted in cluster-2 %s after the rotation was asked, and signed %s after", staged.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
		traffic.check(t, "the rotation of cluster-1's workload CA")
		if certs, err := server.Get("/certs"); err != nil || !strings.Contains(certs, `"serial_number": "`+serialOf(t, fleet.IdentityDir("cluster-1", "httpbin", "httpbin-1"))+`"`) {
			t.Errorf("httpbin's Envoy does not hold its certificate from the new CA: %v", err)
		}
		// The calls above may have kept their connections. A client that
		// starts now makes new ones, and its sidecar meets httpbin's
		// certificate from the new CA in a handshake: it is trusted.
		handshakes := statSum(t, server, "listener", "ssl.handshake")
		late, _, err := fleet.RunClient(ctx, "curl", "late-1", "curl")
		if err != nil {
			t.Fatal(err)
		}
		if b, err := call(ctx, late); err != nil {
			t.Fatalf("a client started after the rotation got %v (%s)", err, b)
		}
		if n := statSum(t, server, "listener", "ssl.handshake"); n <= handshakes {
			t.Errorf("httpbin's sidecar made no new TLS handshake for the new client (%d, %d before)", n, handshakes)
		}
	})
}

// publishedRoots are the CA certificates a cluster's signer publishes.
func publishedRoots(ctx context.Context, t *testing.T, c *testenv.Cluster) []*x509.Certificate {
	t.Helper()
	cm := &corev1.ConfigMap{}
	if err := c.Client.Get(ctx, client.ObjectKey{Namespace: "fleetmesh-system", Name: signer.RootsConfigMap}, cm); err != nil {
		t.Fatal(err)
	}
	return pki.ParseCerts([]byte(cm.Data[signer.RootsKey]))
}

// leafIn is the certificate of an identity directory.
func leafIn(t *testing.T, dir string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return pki.ParseCert(data)
}

// issuerOf is the root that signed an identity directory's certificate.
func issuerOf(t *testing.T, dir string) *x509.Certificate {
	t.Helper()
	leaf := leafIn(t, dir)
	for _, c := range publishedRoots(context.Background(), t, fleet.Cluster("cluster-1")) {
		if leaf.CheckSignatureFrom(c) == nil {
			return c
		}
	}
	t.Fatalf("no root of cluster-1 signed %s", dir)
	return nil
}

// serialOf is an identity directory's certificate serial, as Envoy shows it.
func serialOf(t *testing.T, dir string) string {
	t.Helper()
	return hex.EncodeToString(leafIn(t, dir).SerialNumber.Bytes())
}

// traffic is calls made without a pause from a client pod, counted.
type traffic struct {
	ok, failed atomic.Int64
	firstErr   atomic.Value
	stop       chan struct{}
	wg         sync.WaitGroup
}

// underTraffic starts calling httpbin through the pod's sidecar until
// check.
func underTraffic(ctx context.Context, pod *testenv.Pod) *traffic {
	tr := &traffic{stop: make(chan struct{})}
	tr.wg.Go(func() {
		for {
			select {
			case <-tr.stop:
				return
			default:
			}
			if b, err := call(ctx, pod); err != nil {
				tr.failed.Add(1)
				tr.firstErr.CompareAndSwap(nil, fmt.Sprint(b, err))
			} else {
				tr.ok.Add(1)
			}
		}
	})
	return tr
}

// check stops the calls and fails the test if any failed.
func (tr *traffic) check(t *testing.T, during string) {
	t.Helper()
	close(tr.stop)
	tr.wg.Wait()
	t.Logf("%d calls during %s, %d failed", tr.ok.Load(), during, tr.failed.Load())
	if tr.failed.Load() != 0 {
		t.Fatalf("%d calls failed, the first: %v", tr.failed.Load(), tr.firstErr.Load())
	}
	if tr.ok.Load() < 50 {
		t.Fatalf("only %d calls went through", tr.ok.Load())
	}
}

// httpbinPodIP is the address of cluster-1's httpbin pod.
func httpbinPodIP(ctx context.Context, t *testing.T) string {
	t.Helper()
	pod := &corev1.Pod{}
	if err := fleet.Cluster("cluster-1").Client.Get(ctx, client.ObjectKey{Namespace: "httpbin", Name: "httpbin-1"}, pod); err != nil {
		t.Fatal(err)
	}
	return pod.Status.PodIP
}

// tlsWithoutCertificate opens TLS to addr for sni, offering the mesh's
// protocol but no certificate, and sends a request: the error that ended
// it, or nil if an answer came.
func tlsWithoutCertificate(addr, sni string) error {
	d := &net.Dialer{Timeout: 3 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{
		ServerName: sni, NextProtos: []string{translate.MTLSALPN}, InsecureSkipVerify: true, //nolint:gosec // the test is the client without credentials
	})
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := conn.Write([]byte("GET / HTTP/1.1\r\nHost: httpbin\r\n\r\n")); err != nil {
		return err
	}
	buf := make([]byte, 64)
	if _, err := conn.Read(buf); err != nil {
		return err
	}
	return nil
}

// expectCounted fails the test, saying failure, when the counters of an
// Envoy whose names match every part add up to nothing.
func expectCounted(t *testing.T, e *testenv.Envoy, failure string, parts ...string) {
	t.Helper()
	if statSum(t, e, parts...) == 0 {
		t.Error(failure)
	}
}

// grepNonZero are the stats lines whose value is not 0.
func grepNonZero(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if _, v, ok := strings.Cut(l, ": "); ok && strings.TrimSpace(v) != "0" {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestTheGatewayEndsMTLSForPodsWithoutASidecar exports a service whose
// pod has no sidecar: the gateway cannot pass mTLS through to it, so it
// ends the TLS itself, checks the export's callers, and tells the app
// who called.
func TestTheGatewayEndsMTLSForPodsWithoutASidecar(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	waitFleetTrust(ctx, t)
	c1 := fleet.Cluster("cluster-1")
	const ns, host = "legacy", "legacy.legacy:8080"
	if _, err := c1.RunPod(ctx, testenv.PodOptions{
		Namespace: ns, Name: "legacy-1", Labels: map[string]string{"app": "legacy"},
		Ports:   []corev1.ContainerPort{{ContainerPort: 8080}},
		Backend: &testenv.HTTPBackend{Port: 8080, Body: "Hi, I am legacy in cluster-1!\n", ShowHeader: "X-Forwarded-Client-Cert"},
	}); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "legacy"},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": "legacy"}, Ports: []corev1.ServicePort{{Port: 8080, Protocol: corev1.ProtocolTCP}}},
	}
	if err := c1.Client.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	if err := fleet.ExportToCluster2(ctx, ns, "legacy", "legacy-clients/caller"); err != nil {
		t.Fatal(err)
	}
	caller, _, err := fleet.RunClient(ctx, "legacy-clients", "caller-1", "caller")
	if err != nil {
		t.Fatal(err)
	}
	other, _, err := fleet.RunClient(ctx, "legacy-clients", "other-1", "other")
	if err != nil {
		t.Fatal(err)
	}
	get := func(ctx context.Context, pod *testenv.Pod) (string, error) {
		return article.Get(ctx, net.JoinHostPort(pod.IP, "8080"), host, "/")
	}
	var body string
	eventually(ctx, t, "the allowed caller reaches legacy in cluster-1", func(ctx context.Context) (bool, string) {
		body, err = get(ctx, caller)
		return err == nil, fmt.Sprint(body, err)
	})
	if want := "URI=spiffe://cluster.local/ns/legacy-clients/sa/caller"; !strings.Contains(body, want) || !strings.Contains(body, "By=spiffe://cluster.local/ns/fleetmesh-system/sa/fleetmesh-gateway") {
		t.Errorf("legacy was told %q, want the caller's identity %s vouched for by the gateway", body, want)
	}
	if b, err := get(ctx, other); err == nil || err.Error() != "403 Forbidden" {
		t.Errorf("a caller the export does not name got %v (%s), want 403 from the gateway", err, b)
	}
	// A plaintext caller of the gateway has no identity to check: no
	// route, though legacy's namespace is PERMISSIVE.
	if b, err := article.Get(ctx, fleet.GatewayAddress("cluster-1"), "legacy.legacy.svc.cluster.local:8080", "/"); err == nil || err.Error() != "404 Not Found" {
		t.Errorf("a plaintext caller of the gateway got %v (%s) from the restricted legacy, want 404", err, b)
	}
	gateway := fleet.Gateways["cluster-1"]
	expectCounted(t, gateway, "cluster-1's gateway ended no TLS handshake", "listener", "ssl.handshake")
	expectCounted(t, gateway, "cluster-1's gateway counted no RBAC denial for legacy", "outbound_.8080_._.legacy.legacy.svc.cluster.local", "rbac.denied")
}

// TestProxylessGRPCClientsSpeakMeshMTLS calls a gRPC service of a STRICT
// namespace in cluster-1 from proxyless grpc-go clients in cluster-2 with
// workload certificates: mTLS end to end through cluster-1's gateway, and
// PERMISSION_DENIED for a client the export does not name.
func TestProxylessGRPCClientsSpeakMeshMTLS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	waitFleetTrust(ctx, t)
	const ns, target = "grpcmesh", "greeter.grpcmesh.svc.cluster.local:9090"
	server, err := fleet.DeployMeshedGRPC(ctx, "cluster-1", ns, "greeter")
	if err != nil {
		t.Fatal(err)
	}
	if err := fleet.ExportToCluster2(ctx, ns, "greeter", "grpc-clients/client"); err != nil {
		t.Fatal(err)
	}
	setMode(ctx, t, ns, "STRICT")
	allowed, other := meshGRPCClients(ctx, t, "grpc-clients", target)
	eventually(ctx, t, "the allowed proxyless client reaches greeter in cluster-1", func(ctx context.Context) (bool, string) {
		host, err := unary(ctx, allowed)
		return err == nil && host == "cluster-1", fmt.Sprint(host, err)
	})
	for range 20 {
		if host, err := unary(ctx, allowed); err != nil || host != "cluster-1" {
			t.Fatalf("the allowed client: %q %v", host, err)
		}
	}
	if _, err := unary(ctx, other); status.Code(err) != codes.PermissionDenied {
		t.Errorf("a client the export does not name got %v, want PERMISSION_DENIED", err)
	}
	// mTLS end to end: the gateway passed it through by its SNI, the
	// serving sidecar ended it.
	sni := "outbound_.9090_._.greeter.grpcmesh.svc.cluster.local"
	expectCounted(t, fleet.Gateways["cluster-1"], fmt.Sprintf("cluster-1's gateway passed no connection through for %s", sni), "tcp", sni, "downstream_cx_total")
	expectCounted(t, server, "greeter's sidecar ended no TLS handshake", "listener", "ssl.handshake")
	expectCounted(t, server, "greeter's sidecar counted no RBAC denial", "rbac", "denied")
}

// TestProxylessGRPCServersTakeMeshMTLS runs a proxyless grpc-go xDS server
// in cluster-1, with its workload certificate, and calls it from proxyless
// clients in cluster-2 through cluster-1's gateway: the server takes their
// mTLS and enforces the export's callers itself.
func TestProxylessGRPCServersTakeMeshMTLS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	waitFleetTrust(ctx, t)
	const ns, target = "grpcsrv", "orders.grpcsrv.svc.cluster.local:9090"
	stop, err := fleet.MeshGRPCServer(ctx, "cluster-1", ns, "orders-1", "orders", "orders")
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if err := fleet.ExportToCluster2(ctx, ns, "orders", "grpc-callers/client"); err != nil {
		t.Fatal(err)
	}
	allowed, other := meshGRPCClients(ctx, t, "grpc-callers", target)
	eventually(ctx, t, "the allowed client reaches the proxyless server in cluster-1", func(ctx context.Context) (bool, string) {
		host, err := unary(ctx, allowed)
		return err == nil && host == "cluster-1", fmt.Sprint(host, err)
	})
	if _, err := unary(ctx, other); status.Code(err) != codes.PermissionDenied {
		t.Errorf("a client the export does not name got %v, want PERMISSION_DENIED from the server", err)
	}
	sni := "outbound_.9090_._.orders.grpcsrv.svc.cluster.local"
	expectCounted(t, fleet.Gateways["cluster-1"], fmt.Sprintf("cluster-1's gateway passed no connection through for %s", sni), "tcp", sni, "downstream_cx_total")
}

// meshGRPCClients runs two proxyless clients with certificates in
// cluster-2's namespace ns, dialing target: as the ServiceAccount client,
// and as other.
func meshGRPCClients(ctx context.Context, t *testing.T, ns, target string) (allowed, other testgrpc.TestServiceClient) {
	t.Helper()
	for _, sa := range []string{"client", "other"} {
		c, stop, err := fleet.MeshGRPCClient(ctx, ns, sa+"-1", sa, target)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(stop)
		if sa == "client" {
			allowed = c
		} else {
			other = c
		}
	}
	return allowed, other
}

// unary makes one call and returns the cluster that answered.
func unary(ctx context.Context, c testgrpc.TestServiceClient) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	resp, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{})
	return resp.GetHostname(), err
}

// TestAMemberTrustsOnlyTheFleetsOwnCAs plays whoever holds the
// federation's credentials for cluster-2: it writes cluster-2's fleet
// roots (what the federation writes) with a CA of its own, offered as
// cluster-1's beside cluster-1's real one, and as a member of its own.
// cluster-2's signer does not publish the stranger to its pods (its own CA
// never endorsed it), says it waits, and trusts it once cluster-2's
// operator approves it with the CLI; a new member is trusted at first use
// (the default), as the threat model says.
func TestAMemberTrustsOnlyTheFleetsOwnCAs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	waitFleetTrust(ctx, t)
	c2 := fleet.Cluster("cluster-2")
	key := client.ObjectKey{Namespace: "fleetmesh-system", Name: signer.FleetRootsConfigMap}
	roots := &corev1.ConfigMap{}
	if err := c2.Client.Get(ctx, key, roots); err != nil {
		t.Fatal(err)
	}
	original := roots.DeepCopy()
	t.Cleanup(func() {
		cm := &corev1.ConfigMap{}
		if err := c2.Client.Get(context.Background(), key, cm); err == nil {
			cm.Data = original.Data
			_ = c2.Client.Update(context.Background(), cm)
		}
	})
	stranger, _, err := pki.IssueCA("fleetmesh-workload-ca", time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	newcomer, _, err := pki.IssueCA("fleetmesh-workload-ca", time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	roots.Data["cluster-1.pem"] += string(pki.PEMCert(stranger.Raw))
	roots.Data["cluster-9.pem"] = string(pki.PEMCert(newcomer.Raw))
	if err := c2.Client.Update(ctx, roots); err != nil {
		t.Fatal(err)
	}
	trusts := func(ctx context.Context, ca *x509.Certificate) bool {
		bundle, err := article.TrustedRoots(ctx, c2)
		return err == nil && slices.ContainsFunc(pki.ParseCerts(bundle), ca.Equal)
	}
	eventually(ctx, t, "cluster-2 trusts the new member at first use", func(ctx context.Context) (bool, string) {
		return trusts(ctx, newcomer), "not yet"
	})
	if trusts(ctx, stranger) {
		t.Fatal("cluster-2's pods trust a CA offered as cluster-1's that cluster-1 never endorsed")
	}
	var out bytes.Buffer
	kubeconfig := []string{"--kubeconfig", c2.KubeconfigPath}
	if err := cli.Execute(ctx, &out, append(kubeconfig, "trust", "list")); err != nil {
		t.Fatalf("fleetmesh trust list: %v\n%s", err, out.String())
	}
	fp := pki.Fingerprint(stranger)
	if len(testenv.TableLines(out.String(), "cluster-1", "pending", fp)) != 1 {
		t.Fatalf("fleetmesh trust list does not show the stranger waiting:\n%s", out.String())
	}
	t.Logf("fleetmesh trust list:\n%s", out.String())
	out.Reset()
	if err := cli.Execute(ctx, &out, append(kubeconfig, "trust", "approve", "cluster-1", "--fingerprint", fp)); err != nil {
		t.Fatalf("fleetmesh trust approve: %v\n%s", err, out.String())
	}
	eventually(ctx, t, "cluster-2 trusts the CA its operator approved", func(ctx context.Context) (bool, string) {
		return trusts(ctx, stranger), out.String()
	})
	// cluster-1's own CAs were trusted throughout.
	for _, ca := range publishedRoots(ctx, t, fleet.Cluster("cluster-1")) {
		if !trusts(ctx, ca) {
			t.Error("cluster-2 stopped trusting cluster-1's own CA")
		}
	}
}
