// Package install installs fleetmesh from manifests/ into real API servers
// and runs the controller as its ServiceAccount: the overlays apply, the
// RBAC is enough and no more, the injection webhook (with the certificate
// the controller issues itself) injects pods, the federation joins a
// member.
package install

import (
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"k8s.io/apimachinery/pkg/util/sets"
	apirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/client-go/rest"
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

// audit records every request a client makes, as the API server's
// authorizer sees it, and every one it refused.
type audit struct {
	mu        sync.Mutex
	used      sets.Set[perm]
	forbidden []string
	parse     *apirequest.RequestInfoFactory
}

func newAudit() *audit {
	return &audit{used: sets.New[perm](), parse: &apirequest.RequestInfoFactory{
		APIPrefixes: sets.NewString("api", "apis"), GrouplessAPIPrefixes: sets.NewString("api"),
	}}
}

func (a *audit) RoundTrip(rt http.RoundTripper) http.RoundTripper {
	return roundTripper(func(req *http.Request) (*http.Response, error) {
		resp, err := rt.RoundTrip(req)
		info, ierr := a.parse.NewRequestInfo(req)
		if ierr != nil || !info.IsResourceRequest {
			return resp, err
		}
		res := info.Resource
		if info.Subresource != "" {
			res += "/" + info.Subresource
		}
		p := perm{Verb: info.Verb, Group: info.APIGroup, Resource: res}
		a.mu.Lock()
		defer a.mu.Unlock()
		a.used.Insert(p)
		if err == nil && resp.StatusCode == http.StatusForbidden {
			a.forbidden = append(a.forbidden, p.String()+" "+req.URL.Path)
		}
		return resp, err
	})
}

func (a *audit) Forbidden() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.forbidden)
}

func (a *audit) Used() sets.Set[perm] {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.used.Clone()
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// asServiceAccount is the admin config of c acting as a ServiceAccount,
// with every request audited.
func asServiceAccount(c *testenv.Cluster, namespace, name string, a *audit) *rest.Config {
	cfg := rest.CopyConfig(c.Config)
	cfg.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + namespace + ":" + name,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"},
	}
	cfg.WrapTransport = a.RoundTrip
	cfg.QPS, cfg.Burst = 100, 200
	return cfg
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
