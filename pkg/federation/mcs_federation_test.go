package federation_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
	"github.com/fleetmesh/fleetmesh/pkg/federation"
	"github.com/fleetmesh/fleetmesh/test/testenv"
)

func createMCSExport(ctx context.Context, t *testing.T, c *testenv.Cluster, ns, name string, labels map[string]string) *mcsv1beta1.ServiceExport {
	t.Helper()
	e := &mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: mcsv1beta1.ServiceExportSpec{ExportedLabels: labels}}
	if err := c.Client.Create(ctx, e); err != nil {
		t.Fatal(err)
	}
	return e
}

// mcsImportMatches says whether the member's MCS import ns/name has type
// ClusterSetIP and the cluster IP of the Service it names (derived by the
// MCS API's name for it) as its clusterset IP, lists the clusters given
// and is Ready.
func mcsImportMatches(c *testenv.Cluster, ns, name string, clusters ...string) func(context.Context) (bool, error) {
	return func(ctx context.Context) (bool, error) {
		imp, svc := &mcsv1beta1.ServiceImport{}, &corev1.Service{}
		if err := c.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, imp); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		derived := imp.Annotations[federation.DerivedServiceAnnotation]
		if derived != federation.DerivedName(ns, name) {
			return false, nil
		}
		if err := c.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: derived}, svc); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		var got []string
		for _, cl := range imp.Status.Clusters {
			got = append(got, cl.Cluster)
		}
		return imp.Spec.Type == mcsv1beta1.ClusterSetIP && slices.Equal(imp.Spec.IPs, svc.Spec.ClusterIPs) &&
			slices.Equal(imp.Spec.IPFamilies, svc.Spec.IPFamilies) && slices.Equal(got, clusters) &&
			meta.IsStatusConditionTrue(imp.Status.Conditions, string(mcsv1beta1.ServiceImportConditionReady)), nil
	}
}

func noMCSImport(c *testenv.Cluster, ns, name string) func(context.Context) (bool, error) {
	return func(ctx context.Context) (bool, error) {
		err := c.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &mcsv1beta1.ServiceImport{})
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	}
}

// TestAnMCSExportIsImportedInEveryMemberAndWithdrawnCleanly: a Service
// exported by a multicluster.x-k8s.io ServiceExport alone becomes a
// standard ServiceImport in every member, the exporter included, each with
// the address of a Service derived there under the MCS API's name for it
// as its clusterset IP, and the
// fleetmesh.io import the data plane reads; the export says so in the MCS
// API's reasons. Withdrawn, it leaves nothing behind.
func TestAnMCSExportIsImportedInEveryMemberAndWithdrawnCleanly(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c1, c2, c3 := members(ctx, t)
	defer startFederation(t)()
	createService(ctx, t, c1, "mcs-shop", "web", corev1.ServicePort{Name: "http", Port: 8080})
	export := createMCSExport(ctx, t, c1, "mcs-shop", "web", map[string]string{"tier": "front"})

	for _, c := range []*testenv.Cluster{c1, c2, c3} {
		eventually(ctx, t, c.Name+" holds the MCS import with its own clusterset IP", mcsImportMatches(c, "mcs-shop", "web", "cluster-1"))
	}
	imp := &mcsv1beta1.ServiceImport{}
	if err := c2.Client.Get(ctx, client.ObjectKey{Namespace: "mcs-shop", Name: "web"}, imp); err != nil || imp.Labels["tier"] != "front" {
		t.Errorf("the exported label did not reach cluster-2's import: %v %v", imp.Labels, err)
	}
	eventually(ctx, t, "cluster-2 imports it through fleetmesh.io too", imported(c2, "mcs-shop", "web"))
	eventually(ctx, t, "the MCS export is Valid, Ready and in no conflict, in the MCS API's reasons", func(ctx context.Context) (bool, error) {
		if err := c1.Client.Get(ctx, client.ObjectKeyFromObject(export), export); err != nil {
			return false, err
		}
		for typ, reason := range map[mcsv1beta1.ServiceExportConditionType]mcsv1beta1.ServiceExportConditionReason{
			mcsv1beta1.ServiceExportConditionValid: mcsv1beta1.ServiceExportReasonValid, mcsv1beta1.ServiceExportConditionReady: mcsv1beta1.ServiceExportReasonExported,
			mcsv1beta1.ServiceExportConditionConflict: mcsv1beta1.ServiceExportReasonNoConflicts,
		} {
			if c := meta.FindStatusCondition(export.Status.Conditions, string(typ)); c == nil || c.Reason != string(reason) {
				return false, nil
			}
		}
		return true, nil
	})

	if err := c1.Client.Delete(ctx, export); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*testenv.Cluster{c1, c2, c3} {
		eventually(ctx, t, c.Name+" no longer holds the MCS import", noMCSImport(c, "mcs-shop", "web"))
	}
	eventually(ctx, t, "the clusterset Service in cluster-2 goes", func(ctx context.Context) (bool, error) {
		err := c2.Client.Get(ctx, client.ObjectKey{Namespace: "mcs-shop", Name: federation.DerivedName("mcs-shop", "web")}, &corev1.Service{})
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	})
	if err := c2.Client.Get(ctx, client.ObjectKey{Namespace: "mcs-shop", Name: "web"}, &corev1.Service{}); !apierrors.IsNotFound(err) {
		t.Errorf("cluster-2 has a Service of the exported name, which the MCS API leaves to its users: %v", err)
	}
}

// TestAMemberWithoutTheMCSAPISaysSoAndTakesItUpWhenInstalled: a member
// whose API server does not serve multicluster.x-k8s.io still imports
// through fleetmesh.io; its Cluster says what to install. Once the CRDs
// are applied there, the federation reads and writes the MCS API in it
// with no restart.
func TestAMemberWithoutTheMCSAPISaysSoAndTakesItUpWhenInstalled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c1, _, c3 := members(ctx, t)
	crds := envtest.CRDInstallOptions{Paths: []string{testenv.MCSCRDDir()}}
	if err := envtest.UninstallCRDs(c3.Config, crds); err != nil {
		t.Fatal(err)
	}
	reinstall := func() error {
		_, err := envtest.InstallCRDs(c3.Config, envtest.CRDInstallOptions{Paths: []string{testenv.MCSCRDDir()}})
		return err
	}
	t.Cleanup(func() { _ = reinstall() })
	dc := discovery.NewDiscoveryClientForConfigOrDie(c3.Config)
	eventually(ctx, t, "cluster-3 stops serving the MCS API", func(context.Context) (bool, error) {
		_, err := dc.ServerResourcesForGroupVersion(mcsv1beta1.GroupVersion.String())
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	})

	defer startFederation(t)()
	createService(ctx, t, c1, "mcs-late", "web", corev1.ServicePort{Name: "http", Port: 8080})
	createMCSExport(ctx, t, c1, "mcs-late", "web", nil)
	eventually(ctx, t, "cluster-3 imports the MCS export through fleetmesh.io", imported(c3, "mcs-late", "web"))
	mcsCondition := func(status metav1.ConditionStatus, reason string) func(context.Context) (bool, error) {
		return func(ctx context.Context) (bool, error) {
			c := &fmv1alpha1.Cluster{}
			if err := hub.Client.Get(ctx, client.ObjectKey{Name: "cluster-3"}, c); err != nil {
				return false, err
			}
			cond := meta.FindStatusCondition(c.Status.Conditions, fmv1alpha1.ConditionMCSAPI)
			return cond != nil && cond.Status == status && cond.Reason == reason, nil
		}
	}
	eventually(ctx, t, "Cluster cluster-3 says it serves no MCS API", mcsCondition(metav1.ConditionFalse, fmv1alpha1.ReasonNotServed))
	c := &fmv1alpha1.Cluster{}
	if err := hub.Client.Get(ctx, client.ObjectKey{Name: "cluster-3"}, c); err != nil {
		t.Fatal(err)
	}
	if cond := meta.FindStatusCondition(c.Status.Conditions, fmv1alpha1.ConditionMCSAPI); !strings.Contains(cond.Message, "manifests/mcs-crd") || !strings.Contains(cond.Message, "multicluster.x-k8s.io/v1beta1") {
		t.Errorf("the condition does not say what to install: %q", cond.Message)
	}

	// What else the member's Kubernetes offers is on the Cluster too.
	for typ, reason := range map[string]string{fmv1alpha1.ConditionPodCertificates: fmv1alpha1.ReasonServed, fmv1alpha1.ConditionNativeSidecars: fmv1alpha1.ReasonSupported} {
		if cond := meta.FindStatusCondition(c.Status.Conditions, typ); cond == nil || cond.Status != metav1.ConditionTrue || cond.Reason != reason {
			t.Errorf("Cluster cluster-3: %s = %+v, want True/%s", typ, cond, reason)
		}
	}
	if c.Status.KubernetesVersion == "" {
		t.Error("Cluster cluster-3 does not say its Kubernetes version")
	}

	if err := reinstall(); err != nil {
		t.Fatal(err)
	}
	eventually(ctx, t, "Cluster cluster-3 serves the MCS API", mcsCondition(metav1.ConditionTrue, fmv1alpha1.ReasonServed))
	eventually(ctx, t, "cluster-3 holds the MCS import", mcsImportMatches(c3, "mcs-late", "web", "cluster-1"))
}
