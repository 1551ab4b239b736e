package install

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/fleetmesh/fleetmesh/pkg/cli"
	"github.com/fleetmesh/fleetmesh/pkg/kubeauth"
	"github.com/fleetmesh/fleetmesh/pkg/xds/syncz"
	"github.com/fleetmesh/fleetmesh/test/testenv"
)

// checkDebugAPI checks the debug API at address (the manifests' default,
// --debug-auth=kubernetes) with the proxy gateway connected to it:
// anonymous callers get the probes only, a caller RBAC does not allow
// gets 403, and RBAC's grants on proxies.fleetmesh.io and /metrics
// decide what a ServiceAccount's token reads, through the CLI as well.
func checkDebugAPI(t *testing.T, ctx context.Context, address, gateway string) {
	mc := fleet.Cluster("member-1")
	base := "https://" + address
	get := func(hc *http.Client, path string) (int, string) {
		t.Helper()
		resp, err := hc.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	expect := func(hc *http.Client, who, path string, want int) string {
		t.Helper()
		code, body := get(hc, path)
		if code != want {
			t.Errorf("%s GET %s: %d %q, want %d", who, path, code, strings.TrimSpace(body), want)
		}
		return body
	}

	anonymous := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	for _, path := range []string{"/healthz", "/readyz", "/version"} {
		expect(anonymous, "anonymous", path, http.StatusOK)
	}
	for _, path := range []string{"/debug/syncz", "/debug/config_dump?proxy=" + gateway, "/metrics", "/debug/explain?namespace=default&service=kubernetes"} {
		expect(anonymous, "anonymous", path, http.StatusUnauthorized)
	}
	// Plain HTTP gets nothing either.
	if resp, err := http.Get("http://" + address + "/debug/syncz"); err == nil {
		if resp.StatusCode == http.StatusOK {
			t.Errorf("plain HTTP was served /debug/syncz")
		}
		resp.Body.Close()
	}
	// A token the API server never issued is no one.
	forged, err := kubeauth.Client(&rest.Config{Host: mc.Config.Host, BearerToken: "forged"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	expect(forged, "a forged token", "/debug/syncz", http.StatusUnauthorized)

	// A ServiceAccount of another namespace, with a real token and no
	// role: known, refused.
	const team = "debugging"
	if err := mc.EnsureNamespace(ctx, team); err != nil {
		t.Fatal(err)
	}
	if err := mc.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: team, Name: "reader"}}); err != nil {
		t.Fatal(err)
	}
	cs := kubernetes.NewForConfigOrDie(mc.Config)
	tr, err := cs.CoreV1().ServiceAccounts(team).CreateToken(ctx, "reader", &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	readerCfg := &rest.Config{Host: mc.Config.Host, BearerToken: tr.Status.Token, TLSClientConfig: rest.TLSClientConfig{CAData: mc.Config.CAData}}
	reader, err := kubeauth.Client(readerCfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	const who = "system:serviceaccount:debugging:reader"
	if body := expect(reader, who, "/debug/syncz", http.StatusForbidden); !strings.Contains(body, "proxies.fleetmesh.io") {
		t.Errorf("the refusal does not name what RBAC must grant: %q", body)
	}
	expect(reader, who, "/debug/config_dump?proxy="+gateway, http.StatusForbidden)
	expect(reader, who, "/debug/config_dump?proxy=nobody."+team, http.StatusForbidden)
	expect(reader, who, "/metrics", http.StatusForbidden)
	if body := expect(reader, who, "/debug/explain?namespace="+ns+"&service=fleetmesh-controller", http.StatusForbidden); !strings.Contains(body, "list proxies.fleetmesh.io") {
		t.Errorf("the refusal does not name what RBAC must grant: %q", body)
	}

	// The manifests' fleetmesh-proxy-reader in the gateway's namespace,
	// and /metrics: the gateway is listed and dumped, nothing else.
	subject := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "reader", Namespace: team}}
	if err := mc.Client.Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "debugging-reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "fleetmesh-proxy-reader"},
		Subjects:   subject,
	}); err != nil {
		t.Fatal(err)
	}
	if err := mc.Client.Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "debugging-metrics"},
		Rules:      []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}},
	}); err != nil {
		t.Fatal(err)
	}
	if err := mc.Client.Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "debugging-metrics"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "debugging-metrics"},
		Subjects:   subject,
	}); err != nil {
		t.Fatal(err)
	}
	// Refusals are remembered for 10 s.
	var listed []syncz.ProxyStatus
	err = testenv.Eventually(ctx, 30*time.Second, func(context.Context) (bool, error) {
		code, body := get(reader, "/debug/syncz")
		if code != http.StatusOK {
			return false, nil
		}
		return true, json.Unmarshal([]byte(body), &listed)
	})
	if err != nil {
		t.Fatalf("the reader bound to fleetmesh-proxy-reader never listed: %v", err)
	}
	for _, p := range listed {
		if p.Namespace != ns {
			t.Errorf("the reader of namespace %s was shown %s of namespace %s", ns, p.ID, p.Namespace)
		}
	}
	if len(listed) != 1 || listed[0].ID != gateway {
		t.Errorf("the reader was shown %+v, want the gateway %s", listed, gateway)
	}
	if body := expect(reader, who, "/debug/config_dump?proxy="+gateway, http.StatusOK); !strings.Contains(body, "ListenersConfigDump") {
		t.Errorf("the gateway's dump: %.200s", body)
	}
	// Asked for its namespace's proxies, a caller gets them or a refusal.
	expect(reader, who, "/debug/syncz?namespace="+ns, http.StatusOK)
	expect(reader, who, "/debug/syncz?namespace="+team, http.StatusForbidden)
	// Another namespace's proxy, or one not connected, stays refused.
	expect(reader, who, "/debug/config_dump?proxy=nobody."+team, http.StatusForbidden)
	// Where a service's calls go is read as its namespace's proxies are.
	if body := expect(reader, who, "/debug/explain?namespace="+ns+"&service=fleetmesh-controller", http.StatusOK); !strings.Contains(body, `"fromCluster": "member-1"`) {
		t.Errorf("the explanation of %s/fleetmesh-controller: %.300s", ns, body)
	}
	expect(reader, who, "/debug/explain?namespace=default&service=kubernetes", http.StatusForbidden)
	err = testenv.Eventually(ctx, 30*time.Second, func(context.Context) (bool, error) {
		code, _ := get(reader, "/metrics")
		return code == http.StatusOK, nil
	})
	if err != nil {
		t.Errorf("the reader bound to get /metrics never read it: %v", err)
	}

	// The CLI presents the kubeconfig's token, as the reader would run
	// it; the admin's client certificate works as well.
	kubeconfig, err := testenv.KubeconfigFor(readerCfg, "member-1")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "reader.kubeconfig")
	if err := os.WriteFile(path, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	for user, args := range map[string][]string{
		who:     {"--kubeconfig", path},
		"admin": {"--kubeconfig", fleet.KubeconfigPath, "--context", "member-1"},
	} {
		var out strings.Builder
		args = append(args, "proxy-status", gateway, "--control-plane-url", base, "--control-plane-insecure-skip-tls-verify")
		if err := cli.Execute(ctx, &out, args); err != nil {
			t.Errorf("fleetmesh proxy-status as %s: %v", user, err)
			continue
		}
		if len(testenv.TableLines(out.String(), "gateway", "SYNCED")) != 1 {
			t.Errorf("fleetmesh proxy-status as %s:\n%s", user, out.String())
		}
	}
	var out strings.Builder
	if err := cli.Execute(ctx, &out, []string{"--kubeconfig", path, "proxy-status", "--control-plane-url", base}); err == nil || !strings.Contains(err.Error(), "--control-plane-insecure-skip-tls-verify") {
		t.Errorf("an https URL without a CA: %v", err)
	}
}

// checkRefusesAStranger checks that the debug API at address refuses an
// anonymous caller (401) and a ServiceAccount of c that RBAC does not
// let read proxies or /metrics (403).
func checkRefusesAStranger(t *testing.T, ctx context.Context, c *testenv.Cluster, address string) {
	t.Helper()
	if err := c.EnsureNamespace(ctx, "strangers"); err != nil {
		t.Fatal(err)
	}
	if err := c.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "strangers", Name: "stranger"}}); err != nil {
		t.Fatal(err)
	}
	tr, err := kubernetes.NewForConfigOrDie(c.Config).CoreV1().ServiceAccounts("strangers").CreateToken(ctx, "stranger", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := kubeauth.Client(&rest.Config{Host: c.Config.Host, BearerToken: tr.Status.Token}, nil)
	if err != nil {
		t.Fatal(err)
	}
	anonymous := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	for who, want := range map[*http.Client]int{anonymous: http.StatusUnauthorized, stranger: http.StatusForbidden} {
		for _, path := range []string{"/debug/syncz", "/metrics"} {
			resp, err := who.Get("https://" + address + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, want)
			}
		}
	}
}
