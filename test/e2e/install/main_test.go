// Package install installs fleetmesh from manifests/ into real API servers
// and runs the controller as its ServiceAccount: the overlays apply, the
// RBAC is enough and no more, the injection webhook (with the certificate
// the controller issues itself) injects pods, the federation joins a
// member.
package install

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/fleetmesh/fleetmesh/test/testenv"
)

var fleet *testenv.Fleet

func TestMain(m *testing.M) {
	testenv.MainWithFleet(m, testenv.FleetOptions{
		Clusters: []string{"hub", "member-1", "member-2", "member-3"},
		// member-3 gets the manifests' webhook configuration as envtest
		// installs it: its certificate made elsewhere.
		Webhooks: map[string][]string{"member-3": {filepath.Join(testenv.RepoRoot(), "manifests", "member", "webhook.yaml")}},
		// What the federation does in the members is read from their
		// audit logs.
		AuditLog: true,
		// Webhooks reach the Service's endpoints: there is no kube-proxy.
		APIServerFlags: map[string]string{"enable-aggregator-routing": "true"},
	}, &fleet)
}

// perm is one permission as RBAC sees it.
type perm struct {
	Verb, Group, Resource string
}

func (p perm) String() string {
	g := p.Group
	if g == "" {
		g = "core"
	}
	return p.Verb + " " + g + "/" + p.Resource
}

// audit is what one user did in a cluster, read from its API server's
// audit log: the permissions its requests needed and those refused.
type audit struct {
	path, user string
}

func newAudit(c *testenv.Cluster, namespace, serviceAccount string) audit {
	return audit{path: c.AuditLogPath, user: "system:serviceaccount:" + namespace + ":" + serviceAccount}
}

// Forbidden lists the refused requests, "verb group/resource ns/name".
func (a audit) Forbidden() []string {
	_, refused, _ := readAudit(a.path, a.user)
	return refused
}

// Used is the set of permissions the user's requests needed.
func (a audit) Used() sets.Set[perm] {
	used, _, _ := readAudit(a.path, a.user)
	return used
}

// readAudit reads an API server's audit log: the permissions a user's
// requests needed, and the requests refused.
func readAudit(path, user string) (sets.Set[perm], []string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	used := sets.New[perm]()
	refused := sets.New[string]()
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var ev struct {
			Verb string `json:"verb"`
			User struct {
				Username string `json:"username"`
			} `json:"user"`
			ObjectRef *struct {
				Resource, Subresource, APIGroup, Namespace, Name string
			} `json:"objectRef"`
			ResponseStatus struct {
				Code int `json:"code"`
			} `json:"responseStatus"`
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			// The API server may be writing the last line.
			continue
		}
		if ev.User.Username != user || ev.ObjectRef == nil {
			continue
		}
		res := ev.ObjectRef.Resource
		if ev.ObjectRef.Subresource != "" {
			res += "/" + ev.ObjectRef.Subresource
		}
		p := perm{Verb: ev.Verb, Group: ev.ObjectRef.APIGroup, Resource: res}
		used.Insert(p)
		if ev.ResponseStatus.Code == http.StatusForbidden {
			refused.Insert(p.String() + " " + ev.ObjectRef.Namespace + "/" + ev.ObjectRef.Name)
		}
	}
	return used, sets.List(refused), nil
}

// startController runs the built fleetmesh-controller with args against c
// as the ServiceAccount namespace/name (a token of it, as its pod has),
// until the test ends.
func startController(tb testing.TB, ctx context.Context, c *testenv.Cluster, namespace, serviceAccount string, args ...string) *testenv.ControlPlane {
	tb.Helper()
	token, err := kubernetes.NewForConfigOrDie(c.Config).CoreV1().ServiceAccounts(namespace).CreateToken(ctx, serviceAccount,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}, metav1.CreateOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	cfg := rest.AnonymousClientConfig(c.Config)
	cfg.BearerToken = token.Status.Token
	kc, err := testenv.KubeconfigFor(cfg, c.Name)
	if err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(tb.TempDir(), serviceAccount+".kubeconfig")
	if err := os.WriteFile(path, kc, 0o600); err != nil {
		tb.Fatal(err)
	}
	cp, err := c.StartControlPlane(ctx, testenv.ControlPlaneOptions{Args: append([]string{"--kubeconfig=" + path}, args...)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = cp.Stop() })
	return cp
}

// granted reads what the overlay's Roles and ClusterRoles bound to a
// ServiceAccount of fleetmesh-system allow.
func granted(t *testing.T, overlay, serviceAccount string) sets.Set[perm] {
	t.Helper()

	type rule struct {
		APIGroups []string `json:"apiGroups"`
		Resources []string `json:"resources"`
		Verbs     []string `json:"verbs"`
	}
	type object struct {
		Kind     string `json:"kind"`
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
		Rules   []rule `json:"rules"`
		RoleRef struct {
			Kind, Name string
		} `json:"roleRef"`
		Subjects []struct {
			Kind, Name, Namespace string
		} `json:"subjects"`
	}
	roles := map[string][]rule{}
	var bound []string
	for _, doc := range manifestDocs(t, overlay) {
		var o object
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			t.Fatal(err)
		}
		switch o.Kind {
		case "ClusterRole", "Role":
			roles[o.Kind+"/"+o.Metadata.Name] = o.Rules
		case "ClusterRoleBinding", "RoleBinding":
			for _, s := range o.Subjects {
				if s.Kind == "ServiceAccount" && s.Name == serviceAccount {
					bound = append(bound, o.RoleRef.Kind+"/"+o.RoleRef.Name)
				}
			}
		}
	}
	out2 := sets.New[perm]()
	for _, r := range bound {
		for _, rl := range roles[r] {
			for _, g := range rl.APIGroups {
				for _, res := range rl.Resources {
					for _, v := range rl.Verbs {
						out2.Insert(perm{Verb: v, Group: g, Resource: res})
					}
				}
			}
		}
	}
	if out2.Len() == 0 {
		t.Fatalf("manifests/%s grants %s nothing", overlay, serviceAccount)
	}
	return out2
}

// manifestDocs renders an overlay of manifests/ (kubectl kustomize) into
// its YAML documents.
func manifestDocs(t *testing.T, overlay string) []string {
	t.Helper()
	out, err := fleet.Clusters[0].Kubectl(nil, "kustomize", "manifests/"+overlay)
	if err != nil {
		t.Fatalf("kubectl kustomize manifests/%s: %v\n%s", overlay, err, out)
	}
	return strings.Split(out, "\n---\n")
}
