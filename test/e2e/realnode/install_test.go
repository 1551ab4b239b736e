package realnode

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
	"github.com/fleetmesh/fleetmesh/pkg/inject"
	"github.com/fleetmesh/fleetmesh/test/testenv"
)

// TestTheMemberOverlayRunsInRealPods is the install as a user does it:
// `kubectl apply -k manifests/member`, and the manifests' Deployment runs
// the image built from the Dockerfile with the manifests' arguments, as
// its non-root user, with a read-only root filesystem, until both replicas
// are Ready (/readyz: a mesh is published) without a restart; the
// injection webhook, served by those pods with the certificate they issue
// themselves, injects a pod; a deleted replica is replaced.
func TestTheMemberOverlayRunsInRealPods(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c := realFleet(t).Clusters[0]
	installMember(ctx, t, c)
	pods := controllerPods(ctx, t, c)
	for _, p := range pods {
		for _, s := range p.Status.ContainerStatuses {
			if s.RestartCount != 0 {
				t.Errorf("pod %s: container %s restarted %d times", p.Name, s.Name, s.RestartCount)
			}
		}
	}

	// The webhook injects, served by the pods.
	var last error
	err := testenv.Eventually(ctx, time.Minute, func(ctx context.Context) (bool, error) {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: appNamespace, Name: "probe"},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: testenv.EchoImage}}},
		}
		if last = c.Client.Create(ctx, p, client.DryRunAll); last != nil {
			return false, last
		}
		return inject.ProxyOf(p) != nil, fmt.Errorf("not injected: %v", containerNames(p))
	})
	if err != nil {
		t.Fatalf("the webhook in the pods never injected: %v", err)
	}

	// A replica deleted is replaced and the Deployment is whole again.
	if err := c.Client.Delete(ctx, &pods[0]); err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	err = testenv.Eventually(ctx, 2*time.Minute, func(ctx context.Context) (bool, error) {
		now := controllerPods(ctx, t, c)
		ready := 0
		for _, p := range now {
			if p.Name != pods[0].Name && testenv.PodReady(&p) {
				ready++
			}
		}
		return ready == 2, fmt.Errorf("%d new or surviving replicas Ready", ready)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("a deleted replica replaced and Ready in %v", time.Since(deleted).Round(time.Millisecond))
}

// appNamespace is where the tests' meshed applications run: its pods are
// injected.
const appNamespace = "app"

var installed sync.Once

// installMember installs manifests/member into c once, as a user does,
// and waits until both controller replicas are Ready; it makes the
// namespace appNamespace, labelled for injection.
func installMember(ctx context.Context, t *testing.T, c *testenv.Cluster) {
	t.Helper()
	done := false
	installed.Do(func() {
		doInstallMember(ctx, t, c)
		done = true
	})
	if !done {
		waitAvailable(ctx, t, c, "fleetmesh-system", "fleetmesh-controller", 2)
	}
}

func doInstallMember(ctx context.Context, t *testing.T, c *testenv.Cluster) {
	applyMember(ctx, t, c, "manifests/member")
	if err := c.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: appNamespace, Labels: map[string]string{inject.NamespaceLabel: "enabled"}}}); err != nil {
		t.Fatal(err)
	}
}

// applyMember installs a member overlay into c as a user does, and waits
// until both controller replicas are Ready.
func applyMember(ctx context.Context, t *testing.T, c *testenv.Cluster, overlay string) {
	t.Helper()
	start := time.Now()
	if out, err := c.Kubectl(nil, "apply", "--server-side", "--force-conflicts", "-k", overlay); err != nil {
		t.Fatalf("kubectl apply -k %s: %v\n%s", overlay, err, out)
	}
	// The federation's copy of the member's own Cluster, from which a
	// controller without --cluster-name learns its name.
	if err := c.Client.Create(ctx, &fmv1alpha1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: c.Name, Labels: map[string]string{fmv1alpha1.LocalClusterLabel: "true", fmv1alpha1.ManagedByLabel: fmv1alpha1.ManagedByValue}},
		Spec:       fmv1alpha1.ClusterSpec{Mirrored: true},
	}); err != nil {
		t.Fatal(err)
	}
	waitAvailable(ctx, t, c, "fleetmesh-system", "fleetmesh-controller", 2)
	t.Logf("fleetmesh-controller: 2 replicas Ready %v after kubectl apply -k %s", time.Since(start).Round(time.Millisecond), overlay)
}

func controllerPods(ctx context.Context, t *testing.T, c *testenv.Cluster) []corev1.Pod {
	t.Helper()
	var pods corev1.PodList
	if err := c.Client.List(ctx, &pods, client.InNamespace("fleetmesh-system"), client.MatchingLabels{"app.kubernetes.io/name": "fleetmesh-controller"}); err != nil {
		t.Fatal(err)
	}
	return pods.Items
}

// waitAvailable waits for a Deployment's replicas to be Ready and up to
// date.
func waitAvailable(ctx context.Context, t *testing.T, c *testenv.Cluster, ns, name string, replicas int32) {
	t.Helper()
	if err := c.WaitAvailable(ctx, ns, name, replicas); err != nil {
		t.Fatal(err)
	}
}

func containerNames(p *corev1.Pod) string {
	var names []string
	for _, c := range append(p.Spec.InitContainers, p.Spec.Containers...) {
		names = append(names, c.Name)
	}
	return strings.Join(names, ",")
}
