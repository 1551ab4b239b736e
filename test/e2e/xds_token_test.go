package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fleetmesh/fleetmesh/pkg/bootstrap"
	"github.com/fleetmesh/fleetmesh/test/testenv"
)

// xdsServerName is the name the proxies check the xDS server's
// certificate for.
const xdsServerName = "fleetmesh-controller.fleetmesh-system.svc"

// podToken asks the API server for a token of the ServiceAccount of pod
// ns/pod, as the kubelet does for a projected serviceAccountToken volume:
// for audience (none: the API server's own), bound to the pod unless
// unbound.
func podToken(ctx context.Context, t testing.TB, c *testenv.Cluster, ns, pod, sa, audience string, unbound bool) string {
	t.Helper()
	spec := authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}
	if audience != "" {
		spec.Audiences = []string{audience}
	}
	if !unbound {
		p := &corev1.Pod{}
		if err := c.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: pod}, p); err != nil {
			t.Fatal(err)
		}
		spec.BoundObjectRef = &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod, UID: p.UID}
	}
	tr, err := kubernetes.NewForConfigOrDie(c.Config).CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{Spec: spec}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

// bearer sends a token with every call, as call credentials do.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (bearer) RequireTransportSecurity() bool { return true }

// dialWithToken connects to addr over TLS without a client certificate,
// checking the server against the roots, and sends token.
func dialWithToken(t testing.TB, addr string, roots []byte, token string) *grpc.ClientConn {
	t.Helper()
	return dialWithTokenFrom(t, "", addr, roots, token)
}

// tokenReviews is how many tokens the control plane reviewed and found
// valid (fleetmesh_xds_token_reviews_total{result="authenticated"}).
func tokenReviews(t *testing.T, cp *testenv.ControlPlane) int {
	t.Helper()
	return reviewResults(t, cp)["authenticated"]
}

// checkTokenAuth checks the fallback for pods without a workload
// certificate (--xds-token-auth) on the wire: a projected ServiceAccount
// token of audience fleetmesh, bound to the pod, is taken instead, with
// the same rule for what the identity may be; a real Envoy (Google gRPC
// with file-based call credentials) and grpc-go's proxyless client
// (gRFC A97 call_creds) authenticate with their token files, and Envoy
// uses a renewed token when it reconnects.
func checkTokenAuth(ctx context.Context, t *testing.T, c *testenv.Cluster, cp *testenv.ControlPlane, roots []byte, curl, attacker *workload) {
	ask := func(w *workload) *discoveryv3.DiscoveryRequest {
		return &discoveryv3.DiscoveryRequest{Node: node(t, w.pod+"."+w.ns, "sidecar", w.ns, w.pod, w.sa), TypeUrl: clusterType}
	}
	t.Run("the pod's bound token of audience fleetmesh is taken instead of a certificate", func(t *testing.T) {
		resp, err := firstAnswer(ctx, dialWithToken(t, cp.XDSAddress, roots, podToken(ctx, t, c, curl.ns, curl.pod, curl.sa, "fleetmesh", false)), ask(curl))
		if err != nil {
			t.Fatalf("the sidecar of curl-1 with its token was refused: %v", err)
		}
		t.Logf("curl-1's sidecar, with a token, got %d clusters", len(resp.GetResources()))
	})
	for _, tt := range []struct {
		name  string
		token string
		code  codes.Code
		want  string
	}{
		{"a token for the API server's audience is refused", podToken(ctx, t, c, curl.ns, curl.pod, curl.sa, "", false), codes.Unauthenticated, "is not for audience fleetmesh"},
		{"a token bound to no pod is refused", podToken(ctx, t, c, curl.ns, curl.pod, curl.sa, "fleetmesh", true), codes.Unauthenticated, "is not bound to a pod"},
		{"a forged token is refused", forgedToken("forged"), codes.Unauthenticated, "does not accept the token"},
		{"what is not a JWT is refused", "not-a-token", codes.Unauthenticated, "is not a JWT"},
		{"another pod's token cannot take the sidecar's node", podToken(ctx, t, c, attacker.ns, attacker.pod, attacker.sa, "fleetmesh", false), codes.PermissionDenied, `metadata.pod is "curl-1", the credential's "attacker"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := firstAnswer(ctx, dialWithToken(t, cp.XDSAddress, roots, tt.token), ask(curl))
			t.Logf("%v", err)
			if status.Code(err) != tt.code || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want %s naming %q", err, tt.code, tt.want)
			}
		})
	}

	t.Run("a real Envoy authenticates with its token file, and reads a renewed one when it reconnects", func(t *testing.T) {
		w := newWorkload(ctx, t, c, "auth-token", "web-client-1", "web-client", roots)
		write := func(token string) {
			for file, data := range map[string][]byte{bootstrap.RootsFile: roots, bootstrap.TokenFile: []byte(token)} {
				if err := os.WriteFile(filepath.Join(w.dir, file), data, 0o600); err != nil {
					t.Fatal(err)
				}
			}
		}
		write(podToken(ctx, t, c, w.ns, w.pod, w.sa, "fleetmesh", false))
		reviewed := tokenReviews(t, cp)
		sidecar, err := startEnvoy(ctx, bootstrap.Options{
			NodeID: w.pod + "." + w.ns, Role: "sidecar", Namespace: w.ns, Pod: w.pod, ServiceAccount: w.sa, Cluster: "cluster-1", Delta: true,
			IdentityDir: w.dir, XDSServerName: xdsServerName, Token: true,
		}, cp)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = sidecar.Stop() }()
		id := w.pod + "." + w.ns
		err = testenv.Eventually(ctx, 20*time.Second, func(context.Context) (bool, error) { return syncState(cp, id) == "SYNCED", nil })
		if err != nil {
			t.Fatalf("the Envoy with a token is %s, want SYNCED\n%s", syncState(cp, id), sidecar.Log())
		}
		// A new token in the file (the kubelet renews it at 80% of its
		// life): the server reviews a token it has not seen once Envoy
		// reconnects (its connection is closed every 2s).
		first := tokenReviews(t, cp)
		write(podToken(ctx, t, c, w.ns, w.pod, w.sa, "fleetmesh", false))
		err = testenv.Eventually(ctx, 20*time.Second, func(context.Context) (bool, error) { return tokenReviews(t, cp) > first, nil })
		if err != nil {
			t.Errorf("Envoy never presented its renewed token (token reviews: %d before it started, %d once it connected, %d now)", reviewed, first, tokenReviews(t, cp))
		}
		if st := syncState(cp, id); st != "SYNCED" {
			t.Errorf("after the renewal the Envoy is %s, want SYNCED", st)
		}
		user := "system:serviceaccount:" + w.ns + ":" + w.sa
		if out := fleetmeshCLI(ctx, t, c, cp, "proxy-config", "secrets", id); len(testenv.TableLines(out, "token", user)) != 1 {
			t.Errorf("fleetmesh proxy-config secrets %s: want its token of %s:\n%s", id, user, out)
		}
	})

	t.Run("a proxyless grpc-go client authenticates with its token file (call_creds)", func(t *testing.T) {
		echo, err := testenv.ImageProgram("echo")
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		token, rootsFile, bootstrapFile := filepath.Join(dir, "token"), filepath.Join(dir, "roots.pem"), filepath.Join(dir, "bootstrap.json")
		// The bootstrap a proxyless pod without a certificate uses: TLS
		// checking the server against the roots, and its projected token.
		doc := fmt.Sprintf(`{
			"xds_servers": [{"server_uri": %q, "server_features": ["xds_v3"],
				"channel_creds": [{"type": "tls", "config": {"ca_certificate_file": %q}}],
				"call_creds": [{"type": "jwt_token_file", "config": {"jwt_token_file": %q}}]}],
			"node": {"id": "curl-1.auth-curl", "metadata": {"role": "grpc", "namespace": "auth-curl", "pod": "curl-1", "serviceAccount": "curl", "cluster": "cluster-1"}}
		}`, cp.XDSAddress, rootsFile, token)
		for file, data := range map[string]string{token: podToken(ctx, t, c, curl.ns, curl.pod, curl.sa, "fleetmesh", false), rootsFile: string(roots), bootstrapFile: doc} {
			if err := os.WriteFile(file, []byte(data), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		// The greeter of the certificate subtest above.
		cmd := exec.CommandContext(ctx, echo, "grpc-call", "-n", "5", "xds:///greeter.auth-svc.svc.cluster.local:9090")
		cmd.Env = append(os.Environ(), "GRPC_XDS_BOOTSTRAP="+bootstrapFile, "GRPC_EXPERIMENTAL_XDS_BOOTSTRAP_CALL_CREDS=true")
		out, err := cmd.CombinedOutput()
		if err != nil || strings.Count(string(out), "OK cluster-1") != 5 {
			t.Fatalf("the proxyless client with a token: %v\n%s", err, out)
		}
	})

	t.Run("garbage tokens cost no review, and starve no proxy", func(t *testing.T) {
		before := reviewResults(t, cp)
		// One address sends tokens as fast as it can: not JWTs, JWTs for
		// another audience, and tokens that claim the audience and a pod
		// with a forged signature, each new.
		const attacks = 300
		garbage := func(i int) string {
			switch i % 3 {
			case 0:
				return fmt.Sprintf("garbage-%d", i)
			case 1:
				return jwt(fmt.Sprintf(`{"aud":["https://kubernetes.default.svc"],"exp":%d,"jti":"%d"}`, time.Now().Add(time.Hour).Unix(), i))
			}
			return forgedToken(fmt.Sprint(i))
		}
		var wg sync.WaitGroup
		for i := range attacks {
			wg.Go(func() {
				_, _ = firstAnswer(ctx, dialWithTokenFrom(t, "127.0.0.2", cp.XDSAddress, roots, garbage(i)), ask(curl))
			})
		}
		// Meanwhile the real pod reconnects with its token.
		start := time.Now()
		_, err := firstAnswer(ctx, dialWithToken(t, cp.XDSAddress, roots, podToken(ctx, t, c, curl.ns, curl.pod, curl.sa, "fleetmesh", false)), ask(curl))
		took := time.Since(start)
		wg.Wait()
		if err != nil {
			t.Fatalf("the pod's own token, beside %d garbage ones: %v; connected: %+v", attacks, err, proxiesOf(cp))
		}
		after := reviewResults(t, cp)
		delta := map[string]int{}
		for k, v := range after {
			delta[k] = v - before[k]
		}
		t.Logf("the pod was let in after %s; the garbage: %v", took.Round(time.Millisecond), delta)
		if delta["malformed"] < 2*attacks/3 {
			t.Errorf("%d of the %d garbage tokens were refused without a review, want every one that is not the audience's pod token (%d)", delta["malformed"], attacks, 2*attacks/3)
		}
		if delta["refused"] > 10 {
			t.Errorf("the API server reviewed %d forged tokens from one address, want its budget (5, and 1 a second)", delta["refused"])
		}
		if delta["throttled"] == 0 {
			t.Error("no forged token was throttled")
		}
	})
}

// forgedToken is a token that claims the audience fleetmesh and a pod, new
// for each id, whose signature is not the API server's.
func forgedToken(id string) string {
	return jwt(fmt.Sprintf(`{"aud":["fleetmesh"],"exp":%d,"jti":%q,"kubernetes.io":{"namespace":"auth-curl","pod":{"name":"curl-1","uid":"x"}},"sub":"system:serviceaccount:auth-curl:curl"}`, time.Now().Add(time.Hour).Unix(), id))
}

// jwt is a JWT of these claims with a signature no one made.
func jwt(claims string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256","kid":"forged"}`)) + "." + enc([]byte(claims)) + "." + enc([]byte("not a signature"))
}

// reviewResults are the control plane's counts of the tokens it was
// presented, by result (fleetmesh_xds_token_reviews_total).
func reviewResults(t testing.TB, cp *testenv.ControlPlane) map[string]int {
	t.Helper()
	metrics, err := cp.Get("/metrics")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, m := range regexp.MustCompile(`fleetmesh_xds_token_reviews_total\{result="([a-z]+)"\} (\d+)`).FindAllStringSubmatch(metrics, -1) {
		out[m[1]], _ = strconv.Atoi(m[2])
	}
	return out
}

// dialWithTokenFrom is dialWithToken from the local address from (""
// for any).
func dialWithTokenFrom(t testing.TB, from, addr string, roots []byte, token string) *grpc.ClientConn {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(roots)
	d := &net.Dialer{}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	conn, err := grpc.NewClient(addr,
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) { return d.DialContext(ctx, "tcp", a) }),
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: xdsServerName, MinVersion: tls.VersionTLS12})),
		grpc.WithPerRPCCredentials(bearer(token)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}
