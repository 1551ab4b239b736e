package v1alpha1_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
	"github.com/fleetmesh/fleetmesh/test/testenv"
)

// api is one real API server with the fleetmesh CRDs, shared by every test
// in this package.
var api *testenv.Cluster

func TestMain(m *testing.M) {
	testenv.Main(m, func() int {
		fleet, err := testenv.StartFleet(context.Background(), testenv.FleetOptions{
			Clusters:            []string{"api"},
			NoControllerManager: true,
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer func() { _ = fleet.Stop() }()
		api = fleet.Clusters[0]
		return m.Run()
	})
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// readObjects decodes every YAML document of a file.
func readObjects(t *testing.T, path string) []*unstructured.Unstructured {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var objs []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return objs
			}
			t.Fatalf("%s: %v", path, err)
		}
		if len(u.Object) > 0 {
			objs = append(objs, u)
		}
	}
}

// TestArticleObjectsAreAccepted applies every object of examples/article,
// the article's YAML with only the API group and name case changed, and
// checks that the API server keeps every field as written.
func TestArticleObjectsAreAccepted(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(testenv.RepoRoot(), "examples", "article", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no article examples found: %v", err)
	}
	kinds := map[string]int{}
	for _, file := range files {
		for _, obj := range readObjects(t, file) {
			name := filepath.Base(file) + "/" + obj.GetKind() + "/" + obj.GetName()
			t.Run(name, func(t *testing.T) {
				ctx := ctxFor(t)
				if ns := obj.GetNamespace(); ns != "" {
					if err := api.EnsureNamespace(ctx, ns); err != nil {
						t.Fatal(err)
					}
				}
				written := obj.DeepCopy()
				if err := api.Client.Create(ctx, obj); err != nil {
					t.Fatalf("the API server refused the article's object: %v", err)
				}
				t.Cleanup(func() { _ = api.Client.Delete(context.Background(), obj) })
				got := &unstructured.Unstructured{}
				got.SetGroupVersionKind(obj.GroupVersionKind())
				if err := api.Client.Get(ctx, client.ObjectKeyFromObject(obj), got); err != nil {
					t.Fatal(err)
				}
				if spec, ok := written.Object["spec"]; ok {
					// Compare as JSON values: the decoders differ in number types.
					if path, diff := subsetDiff(asJSON(t, spec), asJSON(t, got.Object["spec"]), ".spec"); diff != "" {
						t.Fatalf("the API server changed %s: %s", path, diff)
					}
				}
				kinds[obj.GetKind()]++
			})
		}
	}
	for _, kind := range []string{"Cluster", "ServiceExport", "ServiceImport", "GlobalTrafficPolicy"} {
		if kinds[kind] == 0 {
			t.Errorf("no article %s was applied", kind)
		}
	}
}

func asJSON(t *testing.T, v any) any {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// subsetDiff reports the first place where want (what was written) is not
// found unchanged in got (what was read back); fields the API server added,
// such as defaults, are allowed.
func subsetDiff(want, got any, path string) (string, string) {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return path, fmt.Sprintf("want an object, got %v", got)
		}
		for k, v := range w {
			if p, d := subsetDiff(v, g[k], path+"."+k); d != "" {
				return p, d
			}
		}
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return path, fmt.Sprintf("want %v, got %v", want, got)
		}
		for i := range w {
			if p, d := subsetDiff(w[i], g[i], fmt.Sprintf("%s[%d]", path, i)); d != "" {
				return p, d
			}
		}
	default:
		if !reflect.DeepEqual(want, got) {
			return path, fmt.Sprintf("want %v, got %v", want, got)
		}
	}
	return "", ""
}

const (
	gtpHeader = `apiVersion: fleetmesh.io/v1alpha1
kind: GlobalTrafficPolicy
metadata: {name: bad, namespace: default}
`
	exportHeader = `apiVersion: fleetmesh.io/v1alpha1
kind: ServiceExport
metadata: {name: bad, namespace: default}
`
	importHeader = `apiVersion: fleetmesh.io/v1alpha1
kind: ServiceImport
metadata: {name: bad, namespace: default}
`
	clusterHeader = `apiVersion: fleetmesh.io/v1alpha1
kind: Cluster
metadata: {name: bad}
`
	kubeconfig = "kubeconfig: 'apiVersion: v1\n\n    kind: Config'\n"
)

func TestInvalidObjectsAreRefusedNamingTheField(t *testing.T) {
	tooManyTargets := "spec:\n  lbType: ActiveActive\n  targets:\n"
	for i := range 33 {
		tooManyTargets += fmt.Sprintf("  - clusterKey: default/default/default/c%d\n", i)
	}
	tests := []struct {
		name      string
		yaml      string
		wantField string // the field the error must name
		wantText  string // more of the message it must carry
	}{
		{"FailOver needs at least one target", gtpHeader + "spec: {lbType: FailOver}", "spec.targets", "at least one target"},
		{"ActiveActive needs at least one target", gtpHeader + "spec: {lbType: ActiveActive, targets: []}", "spec.targets", "at least one target"},
		{"Locality takes no targets", gtpHeader + "spec: {lbType: Locality, targets: [{clusterKey: default/default/default/cluster-1}]}", "spec.targets", "must be empty when spec.lbType is Locality"},
		{"a policy without lbType is Locality and takes no targets", gtpHeader + "spec: {targets: [{clusterKey: default/default/default/cluster-1}]}", "spec.targets", "Locality"},
		{"a target clusterKey must have four parts", gtpHeader + "spec: {lbType: FailOver, targets: [{clusterKey: cluster-1}]}", "spec.targets[0].clusterKey", "region/zone/group/name"},
		{"a target clusterKey must not have an empty part", gtpHeader + "spec: {lbType: FailOver, targets: [{clusterKey: default//default/cluster-1}]}", "spec.targets[0].clusterKey", "region/zone/group/name"},
		{"a weight must not be negative", gtpHeader + "spec: {lbType: ActiveActive, targets: [{clusterKey: default/default/default/c1, weight: -1}]}", "spec.targets[0].weight", "greater than or equal to 0"},
		{"weights must not all be zero", gtpHeader + "spec: {lbType: ActiveActive, targets: [{clusterKey: default/default/default/c1, weight: 0}, {clusterKey: default/default/default/c3, weight: 0}]}", "spec.targets", "must not be 0 for every target"},
		{"an unknown lbType is refused", gtpHeader + "spec: {lbType: RoundRobin}", "spec.lbType", "Unsupported value"},
		{"priority is only for FailOver", gtpHeader + "spec: {lbType: ActiveActive, targets: [{clusterKey: default/default/default/c1, priority: 2}]}", "spec.targets", "priority is only for lbType FailOver"},
		{"a priority starts at 1", gtpHeader + "spec: {lbType: FailOver, targets: [{clusterKey: default/default/default/c1, priority: 0}]}", "spec.targets[0].priority", "greater than or equal to 1"},
		{"a target is listed once", gtpHeader + "spec: {lbType: FailOver, targets: [{clusterKey: default/default/default/c1}, {clusterKey: default/default/default/c1}]}", "spec.targets[1]", "Duplicate value"},
		{"targets are at most 32", gtpHeader + tooManyTargets, "spec.targets", "must have at most 32 items"},
		{"an export rule port must be at least 1", exportHeader + "spec: {rules: [{portNumber: 0, path: /a}]}", "spec.rules[0].portNumber", "greater than or equal to 1"},
		{"an export rule port must be at most 65535", exportHeader + "spec: {rules: [{portNumber: 70000, path: /a}]}", "spec.rules[0].portNumber", "less than or equal to 65535"},
		{"an export rule path starts with /", exportHeader + "spec: {rules: [{portNumber: 8080, path: cluster-1/httpbin}]}", "spec.rules[0].path", "path must start with /"},
		{"an export rule path has no .. segment", exportHeader + "spec: {rules: [{portNumber: 8080, path: /a/../b}]}", "spec.rules[0].path", "segments"},
		{"an export rule path has no query", exportHeader + "spec: {rules: [{portNumber: 8080, path: \"/x?y\"}]}", "spec.rules[0].path", "must not contain ?, #"},
		{"an export rule path has no whitespace", exportHeader + "spec: {rules: [{portNumber: 8080, path: \"/a b\"}]}", "spec.rules[0].path", "whitespace"},
		{"an export rule needs a path", exportHeader + "spec: {rules: [{portNumber: 8080}]}", "spec.rules[0].path", "Required value"},
		{"an unknown pathType is refused", exportHeader + "spec: {rules: [{portNumber: 8080, path: /a, pathType: Regex}]}", "spec.rules[0].pathType", "Unsupported value"},
		{"an unknown loadBalancer is refused", exportHeader + "spec: {loadBalancer: RandomLoadBalancer}", "spec.loadBalancer", "Unsupported value"},
		{"export targetClusters are clusterKeys", exportHeader + "spec: {targetClusters: [cluster-2]}", "spec.targetClusters[0]", "region/zone/group/name"},
		{"serviceAccountName is * or a name", exportHeader + "spec: {serviceAccountName: Not_A_Name}", "spec.serviceAccountName", `must be "*"`},
		{"serviceAccountName names namespace/name, not more", exportHeader + "spec: {serviceAccountName: \"curl/curl/x\"}", "spec.serviceAccountName", `comma-separated list`},
		{"serviceAccountName is a list, not a list with *", exportHeader + "spec: {serviceAccountName: \"curl/curl,*\"}", "spec.serviceAccountName", `comma-separated list`},
		{"an export that names its callers has no paths at the gateway's edge", exportHeader + "spec: {serviceAccountName: curl/curl, rules: [{portNumber: 8080, path: /a}]}", "spec.rules", "serviceAccountName names callers cannot have rules"},
		{"pathRewrite starts with /", exportHeader + "spec: {pathRewrite: api}", "spec.pathRewrite", "pathRewrite must start with /"},
		{"a Cluster needs a kubeconfig", clusterHeader + "spec: {gatewayHost: 10.0.0.1}", "spec", "exactly one of spec.kubeconfig and spec.kubeconfigSecretRef"},
		{"a Cluster takes one kubeconfig, not two", clusterHeader + "spec:\n  kubeconfigSecretRef: {namespace: fleetmesh, name: c1}\n  " + kubeconfig, "spec", "exactly one of spec.kubeconfig and spec.kubeconfigSecretRef"},
		{"a mirrored Cluster carries no kubeconfig", clusterHeader + "spec:\n  mirrored: true\n  " + kubeconfig, "spec", "mirrored Cluster carries no credentials"},
		{"gatewayHost is a DNS name or an IP", clusterHeader + "spec:\n  gatewayHost: not a host!\n  " + kubeconfig, "spec.gatewayHost", "gatewayHost must be a DNS name or an IP address"},
		{"gatewayPort must be at least 1", clusterHeader + "spec:\n  gatewayPort: 0\n  " + kubeconfig, "spec.gatewayPort", "greater than or equal to 1"},
		{"gatewayPort must be at most 65535", clusterHeader + "spec:\n  gatewayPort: 65536\n  " + kubeconfig, "spec.gatewayPort", "less than or equal to 65535"},
		{"a region has no slash", clusterHeader + "spec:\n  region: us/east\n  " + kubeconfig, "spec.region", "should match"},
		{"a Cluster needs a spec", clusterHeader, "spec", "Required value"},
		{"a kubeconfigSecretRef names its Secret", clusterHeader + "spec: {kubeconfigSecretRef: {namespace: fleetmesh}}", "spec.kubeconfigSecretRef.name", "Required value"},
		{"an import port must be at least 1", importHeader + "spec: {ports: [{port: 0}]}", "spec.ports[0].port", "greater than or equal to 1"},
		{"an unknown import type is refused", importHeader + "spec: {type: LoadBalancer}", "spec.type", "Unsupported value"},
		{"an import endpoint's clusterKey is a clusterKey", importHeader + "spec: {ports: [{port: 80, endpoints: [{clusterKey: cluster-1}]}]}", "spec.ports[0].endpoints[0].clusterKey", "should match"},
		{"an import target port must be at most 65535", importHeader + "spec: {ports: [{port: 80, endpoints: [{clusterKey: default/default/default/c1, target: {port: 99999}}]}]}", "spec.ports[0].endpoints[0].target.port", "less than or equal to 65535"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj := &unstructured.Unstructured{}
			if err := yaml.Unmarshal([]byte(tt.yaml), &obj.Object); err != nil {
				t.Fatalf("test YAML: %v", err)
			}
			err := api.Client.Create(ctxFor(t), obj)
			if err == nil {
				_ = api.Client.Delete(context.Background(), obj)
				t.Fatalf("the API server accepted an invalid %s", obj.GetKind())
			}
			if !apierrors.IsInvalid(err) {
				t.Fatalf("want an Invalid error, got %v", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.wantField+":") {
				t.Errorf("the error does not name the field %s: %s", tt.wantField, msg)
			}
			if !strings.Contains(msg, tt.wantText) {
				t.Errorf("the error does not say %q: %s", tt.wantText, msg)
			}
		})
	}
}

func create(t *testing.T, doc string, into client.Object) {
	t.Helper()
	ctx := ctxFor(t)
	if err := yaml.UnmarshalStrict([]byte(doc), into); err != nil {
		t.Fatal(err)
	}
	if err := api.Client.Create(ctx, into); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = api.Client.Delete(context.Background(), into) })
	if err := api.Client.Get(ctx, client.ObjectKeyFromObject(into), into); err != nil {
		t.Fatal(err)
	}
}

func TestDefaultsAreFilledIn(t *testing.T) {
	t.Run("a policy written without lbType reads back as Locality", func(t *testing.T) {
		p := &fmv1alpha1.GlobalTrafficPolicy{}
		create(t, "apiVersion: fleetmesh.io/v1alpha1\nkind: GlobalTrafficPolicy\nmetadata: {name: nolbtype, namespace: default}\nspec: {}\n", p)
		if p.Spec.LbType != fmv1alpha1.LocalityLbType {
			t.Fatalf("lbType = %q, want Locality", p.Spec.LbType)
		}
	})
	t.Run("a policy written without spec reads back as Locality", func(t *testing.T) {
		p := &fmv1alpha1.GlobalTrafficPolicy{}
		create(t, "apiVersion: fleetmesh.io/v1alpha1\nkind: GlobalTrafficPolicy\nmetadata: {name: nospec, namespace: default}\n", p)
		if p.Spec.LbType != fmv1alpha1.LocalityLbType {
			t.Fatalf("lbType = %q, want Locality", p.Spec.LbType)
		}
	})
	t.Run("a target without weight weighs 1", func(t *testing.T) {
		p := &fmv1alpha1.GlobalTrafficPolicy{}
		create(t, "apiVersion: fleetmesh.io/v1alpha1\nkind: GlobalTrafficPolicy\nmetadata: {name: weights, namespace: default}\nspec: {lbType: ActiveActive, targets: [{clusterKey: default/default/default/cluster-1}, {clusterKey: default/default/default/cluster-3, weight: 2}]}\n", p)
		if w := p.Spec.Targets[0].Weight; w == nil || *w != 1 {
			t.Fatalf("weight = %v, want 1", w)
		}
		if w := p.Spec.Targets[1].Weight; w == nil || *w != 2 {
			t.Fatalf("weight = %v, want 2", w)
		}
	})
	t.Run("a Cluster without region, zone or group reads back in default ones, gateway port 80", func(t *testing.T) {
		c := &fmv1alpha1.Cluster{}
		create(t, "apiVersion: fleetmesh.io/v1alpha1\nkind: Cluster\nmetadata: {name: plain}\nspec:\n  gatewayHost: cluster-A.host\n  "+kubeconfig, c)
		if c.Spec.Region != "default" || c.Spec.Zone != "default" || c.Spec.Group != "default" {
			t.Fatalf("region/zone/group = %q/%q/%q, want default/default/default", c.Spec.Region, c.Spec.Zone, c.Spec.Group)
		}
		if c.Spec.GatewayPort != 80 {
			t.Fatalf("gatewayPort = %d, want 80", c.Spec.GatewayPort)
		}
		if got := c.Key(); got != "default/default/default/plain" {
			t.Fatalf("Key() = %q", got)
		}
	})
	t.Run("an export reads back with RoundRobinLoadBalancer and Prefix paths", func(t *testing.T) {
		e := &fmv1alpha1.ServiceExport{}
		create(t, "apiVersion: fleetmesh.io/v1alpha1\nkind: ServiceExport\nmetadata: {name: defaults, namespace: default}\nspec: {rules: [{portNumber: 8080, path: /a}]}\n", e)
		if e.Spec.LoadBalancer != fmv1alpha1.RoundRobinLoadBalancer {
			t.Fatalf("loadBalancer = %q", e.Spec.LoadBalancer)
		}
		if e.Spec.Rules[0].PathType != fmv1alpha1.PathTypePrefix {
			t.Fatalf("pathType = %q", e.Spec.Rules[0].PathType)
		}
	})
	t.Run("a kubeconfigSecretRef reads back with key kubeconfig", func(t *testing.T) {
		c := &fmv1alpha1.Cluster{}
		create(t, "apiVersion: fleetmesh.io/v1alpha1\nkind: Cluster\nmetadata: {name: secretref}\nspec: {kubeconfigSecretRef: {namespace: fleetmesh, name: secretref}}\n", c)
		if c.Spec.KubeconfigSecretRef.Key != "kubeconfig" {
			t.Fatalf("key = %q", c.Spec.KubeconfigSecretRef.Key)
		}
	})
}

func TestKubectlGetShowsPrinterColumns(t *testing.T) {
	kubectl := filepath.Join(testenv.AssetsDir(), "kubectl")
	ctx := ctxFor(t)
	for _, doc := range []string{
		"apiVersion: fleetmesh.io/v1alpha1\nkind: Cluster\nmetadata: {name: printed}\nspec:\n  gatewayHost: 192.168.1.110\n  gatewayPort: 81\n  " + kubeconfig,
		"apiVersion: fleetmesh.io/v1alpha1\nkind: GlobalTrafficPolicy\nmetadata: {name: printed, namespace: default}\nspec: {lbType: FailOver, targets: [{clusterKey: default/default/default/cluster-1}, {clusterKey: default/default/default/cluster-3}]}\n",
		"apiVersion: fleetmesh.io/v1alpha1\nkind: ServiceExport\nmetadata: {name: printed, namespace: default}\n",
		"apiVersion: fleetmesh.io/v1alpha1\nkind: ServiceImport\nmetadata: {name: printed, namespace: default}\nspec: {ports: [{port: 8080, endpoints: [{clusterKey: default/default/default/cluster-1}]}]}\n",
	} {
		obj := &unstructured.Unstructured{}
		create(t, doc, obj)
	}
	tests := []struct {
		resource string
		header   []string
		row      []string
	}{
		{"fmcluster", []string{"NAME", "REGION", "ZONE", "GROUP", "GATEWAY-HOST", "GATEWAY-PORT", "READY", "AGE"}, []string{"printed", "default", "192.168.1.110", "81"}},
		{"gtp", []string{"NAME", "LB-TYPE", "TARGETS", "AGE"}, []string{"printed", "FailOver", `[{"clusterKey":"default/default/default/cluster-1","weight":1},{"clusterKey":"default/default/default/cluster-3","weight":1}]`}},
		{"sexp", []string{"NAME", "VALID", "CONFLICT", "READY", "AGE"}, []string{"printed"}},
		{"simp", []string{"NAME", "TYPE", "CLUSTERS", "AGE"}, []string{"printed", "ClusterSetIP"}},
	}
	for _, tt := range tests {
		t.Run("kubectl get "+tt.resource, func(t *testing.T) {
			out, err := exec.CommandContext(ctx, kubectl, "--kubeconfig", api.KubeconfigPath, "get", tt.resource, "printed", "-n", "default").CombinedOutput()
			if err != nil {
				t.Fatalf("kubectl: %v\n%s", err, out)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if len(lines) != 2 {
				t.Fatalf("want a header and one row, got:\n%s", out)
			}
			if got := strings.Fields(lines[0]); !reflect.DeepEqual(got, tt.header) {
				t.Errorf("header = %v, want %v", got, tt.header)
			}
			row := strings.Fields(lines[1])
			for _, cell := range tt.row {
				if !slices.Contains(row, cell) {
					t.Errorf("row %v lacks %q", row, cell)
				}
			}
		})
	}
}

// TestServiceAccountNameTakesItsForms creates exports with each form
// serviceAccountName takes: anyone, a name of the export's namespace, and
// a list mixing names and namespace/name.
func TestServiceAccountNameTakesItsForms(t *testing.T) {
	for i, value := range []string{"*", "curl", "curl/curl", "curl/curl,shop/web, api", "team-a/sa.1"} {
		t.Run(value, func(t *testing.T) {
			export := &fmv1alpha1.ServiceExport{
				ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: fmt.Sprintf("callers-%d", i)},
				Spec:       fmv1alpha1.ServiceExportSpec{ServiceAccountName: value},
			}
			if err := api.Client.Create(ctxFor(t), export); err != nil {
				t.Fatalf("serviceAccountName %q was refused: %v", value, err)
			}
			_ = api.Client.Delete(context.Background(), export)
		})
	}
}
