package install

import (
	"context"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
	"github.com/fleetmesh/fleetmesh/pkg/controller"
	"github.com/fleetmesh/fleetmesh/test/testenv"
)

func TestEveryShippedBinaryStartsAndExplainsItself(t *testing.T) {
	dir, err := testenv.Binaries()
	if err != nil {
		t.Fatal(err)
	}
	bins, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil || len(bins) < 3 {
		t.Fatalf("built binaries %v: %v", bins, err)
	}
	for _, bin := range bins {
		t.Run(filepath.Base(bin), func(t *testing.T) {
			out, err := exec.Command(bin, "--help").CombinedOutput()
			if err != nil || strings.Contains(string(out), "panic:") || !strings.Contains(string(out), "Usage:") {
				t.Fatalf("%s --help: %v\n%s", filepath.Base(bin), err, out)
			}
		})
	}
}

// shippedContainer is a container of the overlay that runs one of
// fleetmesh's own images.
type shippedContainer struct {
	deployment string
	corev1.Container
}

func shippedContainers(t *testing.T, overlay string) []shippedContainer {
	t.Helper()
	var out []shippedContainer
	for _, doc := range manifestDocs(t, overlay) {
		var d appsv1.Deployment
		if err := yaml.Unmarshal([]byte(doc), &d); err != nil {
			t.Fatal(err)
		}
		if d.Kind != "Deployment" {
			continue
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			if strings.HasPrefix(c.Image, "ghcr.io/fleetmesh/") {
				out = append(out, shippedContainer{d.Name, c})
			}
		}
	}
	if len(out) == 0 {
		t.Fatalf("manifests/%s runs none of fleetmesh's images", overlay)
	}
	return out
}

// TestTheBuiltControllerRunsWithItsManifestsArguments runs the built
// fleetmesh-controller with exactly the command and arguments of each
// overlay's Deployment. What a pod would add is added: the kubeconfig
// in-cluster configuration stands for, the downward API's POD_NAMESPACE,
// and the webhook's certificate folder (an emptyDir in the pod).
func TestTheBuiltControllerRunsWithItsManifestsArguments(t *testing.T) {
	for _, tt := range []struct {
		overlay, cluster string
		// prepare readies the cluster as the install would have.
		prepare func(context.Context, *testing.T, *testenv.Cluster)
		// check looks for what the running controller must have done.
		check func(context.Context, *testenv.Cluster) (bool, error)
	}{{
		overlay: "member", cluster: "member-2",
		prepare: func(ctx context.Context, t *testing.T, c *testenv.Cluster) {
			// The federation's copy of the member's own Cluster names it.
			if err := c.Client.Create(ctx, &fmv1alpha1.Cluster{
				ObjectMeta: metav1.ObjectMeta{Name: c.Name, Labels: map[string]string{fmv1alpha1.LocalClusterLabel: "true", fmv1alpha1.ManagedByLabel: fmv1alpha1.ManagedByValue}},
				Spec:       fmv1alpha1.ClusterSpec{Mirrored: true},
			}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				// Leave no webhook behind that refuses pods.
				_ = c.Client.Delete(context.Background(), &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "fleetmesh-sidecar-injector"}})
				_ = c.Client.Delete(context.Background(), &fmv1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: c.Name}})
			})
		},
		// --inject: the controller issued its webhook certificate and
		// patched the caBundle.
		check: func(ctx context.Context, c *testenv.Cluster) (bool, error) {
			var w admissionregistrationv1.MutatingWebhookConfiguration
			if err := c.Client.Get(ctx, client.ObjectKey{Name: "fleetmesh-sidecar-injector"}, &w); err != nil {
				return false, err
			}
			return len(w.Webhooks) > 0 && len(w.Webhooks[0].ClientConfig.CABundle) > 0, nil
		},
	}, {
		overlay: "control-plane", cluster: "hub",
		prepare: func(_ context.Context, t *testing.T, c *testenv.Cluster) {
			// The federation test after this one sees the lease created.
			t.Cleanup(func() {
				_, _ = c.Kubectl(nil, "delete", "lease", "-n", ns, controller.LeaseName, "--ignore-not-found")
			})
		},
		// --federation --leader-elect: the lease is taken.
		check: func(ctx context.Context, c *testenv.Cluster) (bool, error) {
			out, err := c.Kubectl(nil, "get", "lease", "-n", ns, controller.LeaseName, "-o", "jsonpath={.spec.holderIdentity}")
			return err == nil && out != "", nil
		},
	}} {
		t.Run(tt.overlay, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			c := fleet.Cluster(tt.cluster)
			if out, err := c.Kubectl(nil, "apply", "--server-side", "-k", "manifests/"+tt.overlay); err != nil {
				t.Fatalf("kubectl apply -k manifests/%s: %v\n%s", tt.overlay, err, out)
			}
			if tt.prepare != nil {
				tt.prepare(ctx, t, c)
			}
			for _, sc := range shippedContainers(t, tt.overlay) {
				if sc.deployment != "fleetmesh-controller" {
					t.Fatalf("manifests/%s runs %s from fleetmesh's image: this test knows only fleetmesh-controller", tt.overlay, sc.deployment)
				}
				if !slices.Equal(sc.Command, []string{"fleetmesh-controller"}) {
					t.Fatalf("command %q: not a binary of cmd/", sc.Command)
				}
				args := slices.Clone(sc.Args)
				for i, a := range args {
					if strings.HasPrefix(a, "--webhook-cert-dir=") {
						args[i] = "--webhook-cert-dir=" + t.TempDir()
					}
				}
				cp, err := c.StartControlPlane(ctx, testenv.ControlPlaneOptions{
					Args: args, Env: []string{"POD_NAMESPACE=" + ns}, WaitReady: true,
				})
				if err != nil {
					t.Fatal(err)
				}
				if err := testenv.Eventually(ctx, 30*time.Second, func(ctx context.Context) (bool, error) { return tt.check(ctx, c) }); err != nil {
					t.Errorf("fleetmesh-controller %s: %v\n%s", strings.Join(args, " "), err, cp.Log())
				}
				if err := cp.Stop(); err != nil {
					t.Error(err)
				}
			}
		})
	}
}
