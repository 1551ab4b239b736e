package realnode

import (
	"context"
	"os"
	"os/exec"
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

	"github.com/fleetmesh/fleetmesh/test/testenv"
)

// checkCLIThroughPortForward runs the built fleetmesh CLI against the
// member overlay's controllers, which run in real pods with the
// manifests' authenticated debug API: the CLI port-forwards to each
// replica through the API server (the real kubelet's streaming server)
// and presents the kubeconfig's credentials. The admin (a client
// certificate) lists every proxy; a ServiceAccount of the application's
// team (a token) is refused until it is bound to fleetmesh-debug-client
// in fleetmesh-system, then reads its own namespace's proxies and no
// other's.
func checkCLIThroughPortForward(ctx context.Context, t *testing.T, c *testenv.Cluster, clientPod corev1.Pod) {
	bin, err := testenv.Binary("fleetmesh")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	kubeconfig := func(name string, cfg *rest.Config) string {
		data, err := testenv.KubeconfigFor(cfg, c.Name)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	fleetmesh := func(kubeconfig string, args ...string) (string, error) {
		out, err := exec.CommandContext(ctx, bin, append([]string{"--kubeconfig", kubeconfig}, args...)...).CombinedOutput()
		return string(out), err
	}
	admin := kubeconfig("admin", c.Config)
	proxy := clientPod.Name + "." + clientPod.Namespace

	out, err := fleetmesh(admin, "proxy-status")
	if err != nil {
		t.Fatalf("fleetmesh proxy-status as the admin: %v\n%s", err, out)
	}
	if len(testenv.TableLines(out, proxy, "SYNCED")) != 1 || len(testenv.TableLines(out, "gateway", "SYNCED")) == 0 {
		t.Errorf("fleetmesh proxy-status as the admin: want the client's sidecar and the gateways, synced:\n%s", out)
	}

	// The team's ServiceAccount, with a token.
	const sa = "team-reader"
	if err := c.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: appNamespace, Name: sa}}); err != nil {
		t.Fatal(err)
	}
	tr, err := kubernetes.NewForConfigOrDie(c.Config).CoreV1().ServiceAccounts(appNamespace).CreateToken(ctx, sa, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	team := kubeconfig("team", &rest.Config{Host: c.Config.Host, BearerToken: tr.Status.Token, TLSClientConfig: rest.TLSClientConfig{CAData: c.Config.CAData}})
	if out, err := fleetmesh(team, "proxy-config", "endpoints", proxy); err == nil || !strings.Contains(out, "forbidden") {
		t.Errorf("the team's ServiceAccount without fleetmesh-debug-client: %v\n%s", err, out)
	}
	subjects := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa, Namespace: appNamespace}}
	for ns, role := range map[string]rbacv1.RoleRef{
		"fleetmesh-system": {APIGroup: rbacv1.GroupName, Kind: "Role", Name: "fleetmesh-debug-client"},
		appNamespace:       {APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "fleetmesh-proxy-reader"},
	} {
		if err := c.Client.Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sa}, RoleRef: role, Subjects: subjects}); err != nil {
			t.Fatal(err)
		}
	}
	// RBAC answers at once; the controllers remember a refusal for 10 s.
	err = testenv.Eventually(ctx, 30*time.Second, func(context.Context) (bool, error) {
		out, err = fleetmesh(team, "proxy-config", "endpoints", proxy, "--fqdn", "web."+appNamespace)
		return err == nil, nil
	})
	if err != nil || !strings.Contains(out, "web") {
		t.Errorf("fleetmesh proxy-config endpoints %s as the team: %v\n%s", proxy, err, out)
	}
	// Its namespace's proxies, not the gateways of fleetmesh-system.
	if out, err := fleetmesh(team, "proxy-status", "-n", appNamespace); err != nil || len(testenv.TableLines(out, proxy, "SYNCED")) != 1 {
		t.Errorf("fleetmesh proxy-status -n %s as the team: %v\n%s", appNamespace, err, out)
	}
	if out, err := fleetmesh(team, "proxy-status", "-n", "fleetmesh-system"); err == nil || !strings.Contains(out, "may not list proxies.fleetmesh.io in namespace fleetmesh-system") {
		t.Errorf("fleetmesh proxy-status -n fleetmesh-system as the team: %v\n%s", err, out)
	}
}
