// Package skew replays the article on a fleet of mixed Kubernetes
// versions ("多版本共存"): cluster-1's API server and controller manager
// are 1.33, cluster-2's (the consumer's) 1.35, cluster-3's and the control
// plane's 1.37, each built from source; fleetmesh's binaries are the same
// everywhere.
package skew

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
	"github.com/fleetmesh/fleetmesh/pkg/cli"
	"github.com/fleetmesh/fleetmesh/test/article"
	"github.com/fleetmesh/fleetmesh/test/testenv"
)

var fleet *article.Fleet

// versions are the members' Kubernetes minors older than the lab's.
var versions = map[string]string{"cluster-1": "1.33", "cluster-2": "1.35"}

func TestMain(m *testing.M) {
	testenv.Main(m, func() int {
		var err error
		fleet, err = article.Start(context.Background(), article.Options{Versions: versions})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer fleet.Stop()
		return m.Run()
	})
}

// TestTheArticleOnMembersOfOlderVersions: the federation reports each
// member's version and what it lacks, and the article's flow (exports,
// Locality, FailOver, a local httpbin, ActiveActive) and the MCS API's
// imports work as on a fleet of one version.
func TestTheArticleOnMembersOfOlderVersions(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	hub := fleet.Cluster("control-plane")

	t.Run("each Cluster says its version and what it offers", func(t *testing.T) {
		want := map[string]struct {
			version  string
			podCerts metav1.ConditionStatus
		}{
			"cluster-1": {"v1.33.", metav1.ConditionFalse},
			"cluster-2": {"v1.35.", metav1.ConditionFalse},
			"cluster-3": {"v1.37.", metav1.ConditionTrue},
		}
		var problems []string
		err := testenv.Eventually(ctx, 30*time.Second, func(ctx context.Context) (bool, error) {
			var now []string
			defer func() { problems = now }()
			for name, w := range want {
				c := &fmv1alpha1.Cluster{}
				if err := hub.Client.Get(ctx, client.ObjectKey{Name: name}, c); err != nil {
					now = problems
					return false, err
				}
				certs := meta.FindStatusCondition(c.Status.Conditions, fmv1alpha1.ConditionPodCertificates)
				switch {
				case !strings.HasPrefix(c.Status.KubernetesVersion, w.version):
					now = append(now, fmt.Sprintf("%s: version %q", name, c.Status.KubernetesVersion))
				case certs == nil || certs.Status != w.podCerts:
					now = append(now, fmt.Sprintf("%s: PodCertificates %+v", name, certs))
				case certs.Status == metav1.ConditionFalse && !strings.Contains(certs.Message, "manifests/member-token"):
					now = append(now, fmt.Sprintf("%s: PodCertificates does not say what to install: %q", name, certs.Message))
				case !meta.IsStatusConditionTrue(c.Status.Conditions, fmv1alpha1.ConditionNativeSidecars),
					!meta.IsStatusConditionTrue(c.Status.Conditions, fmv1alpha1.ConditionMCSAPI),
					!meta.IsStatusConditionTrue(c.Status.Conditions, fmv1alpha1.ConditionReady):
					now = append(now, fmt.Sprintf("%s: conditions %+v", name, c.Status.Conditions))
				}
			}
			return len(now) == 0, nil
		})
		if err != nil {
			t.Fatalf("%v: %s", err, strings.Join(problems, "; "))
		}
		// The CLI lists them so.
		var out strings.Builder
		if err := cli.Execute(ctx, &out, []string{"--kubeconfig", fleet.KubeconfigPath, "--context", "control-plane", "cluster", "list"}); err != nil {
			t.Fatal(err)
		}
		for _, line := range [][]string{{"cluster-1", "v1.33.", "PodCertificates"}, {"cluster-2", "v1.35.", "PodCertificates"}, {"cluster-3", "v1.37."}} {
			if len(testenv.TableLines(out.String(), line...)) != 1 {
				t.Errorf("fleetmesh cluster list has no row with %q:\n%s", line, out.String())
			}
		}
	})

	if err := article.DeployTheArticle(ctx, fleet); err != nil {
		t.Fatal(err)
	}
	within := func(t *testing.T, ok func(map[string]int) bool) {
		t.Helper()
		got, err := fleet.Within(ctx, 20*time.Second, ok)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("30 calls: %v", got)
	}

	t.Run("exports become imports in cluster-2 (1.35), both groups", func(t *testing.T) {
		want := []string{"httpbin/httpbin", "httpbin/httpbin-cluster-1", "httpbin/httpbin-cluster-3"}
		err := testenv.Eventually(ctx, 30*time.Second, func(ctx context.Context) (bool, error) {
			imports, err := fleet.Imports(ctx)
			return slices.Equal(imports, want), err
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"cluster-1", "cluster-2"} {
			imp := &mcsv1beta1.ServiceImport{}
			err := testenv.Eventually(ctx, 20*time.Second, func(ctx context.Context) (bool, error) {
				err := fleet.Cluster(name).Client.Get(ctx, client.ObjectKey{Namespace: "httpbin", Name: "httpbin"}, imp)
				return err == nil && len(imp.Spec.IPs) == 1, client.IgnoreNotFound(err)
			})
			if err != nil {
				t.Errorf("%s (Kubernetes %s) holds no MCS import of httpbin with a clusterset IP: %+v %v", name, versions[name], imp.Spec, err)
			}
		}
	})
	t.Run("Locality: calls fail", func(t *testing.T) {
		if err := fleet.WaitRouted(ctx); err != nil {
			t.Fatalf("the sidecar never answered 503 for httpbin: %v", err)
		}
		within(t, func(c map[string]int) bool { return c["failed"] == 30 })
	})
	t.Run("FailOver: calls alternate between cluster-1 (1.33) and cluster-3 (1.37)", func(t *testing.T) {
		if err := fleet.Policy(ctx, fmv1alpha1.FailOverLbType); err != nil {
			t.Fatal(err)
		}
		within(t, func(c map[string]int) bool { return c["cluster-1"] == 15 && c["cluster-3"] == 15 })
	})
	t.Run("httpbin deployed in cluster-2 (1.35): every call stays local", func(t *testing.T) {
		if _, err := fleet.DeployLocalHTTPBin(ctx); err != nil {
			t.Fatal(err)
		}
		within(t, func(c map[string]int) bool { return c["cluster-2"] == 30 })
	})
	t.Run("ActiveActive: calls spread over all three", func(t *testing.T) {
		if err := fleet.Policy(ctx, fmv1alpha1.ActiveActiveLbType); err != nil {
			t.Fatal(err)
		}
		within(t, func(c map[string]int) bool {
			return c["cluster-1"] == 10 && c["cluster-2"] == 10 && c["cluster-3"] == 10
		})
	})
	t.Run("the GlobalTrafficPolicy's status is written by cluster-2's (1.35) control plane", func(t *testing.T) {
		gtp := &fmv1alpha1.GlobalTrafficPolicy{}
		err := testenv.Eventually(ctx, 20*time.Second, func(ctx context.Context) (bool, error) {
			err := fleet.Cluster("cluster-2").Client.Get(ctx, client.ObjectKey{Namespace: "httpbin", Name: "httpbin"}, gtp)
			return err == nil && meta.IsStatusConditionTrue(gtp.Status.Conditions, fmv1alpha1.ConditionAccepted) && gtp.Status.ObservedGeneration == gtp.Generation, err
		})
		if err != nil {
			t.Errorf("policy status %+v: %v", gtp.Status, err)
		}
	})
}
