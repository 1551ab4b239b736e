package e2e

import (
	"context"
	"slices"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
	"github.com/fleetmesh/fleetmesh/test/testenv"
)

// TestPolicyStatusReportsTargetsThatExportNothing: a policy naming a
// cluster that does not export the service gets that target in
// status.unmatchedTargets, with the generation read and a condition saying
// it was ignored.
func TestPolicyStatusReportsTargetsThatExportNothing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c1, c2, c3 := fleet.Cluster("cluster-1"), fleet.Cluster("cluster-2"), fleet.Cluster("cluster-3")
	const ns, name = "status", "web"
	createService(ctx, t, c1, ns, name, "http", 80)
	if _, err := c1.RunPod(ctx, testenv.PodOptions{Namespace: ns, Name: name + "-1", Labels: map[string]string{"app": name}}); err != nil {
		t.Fatal(err)
	}
	importService(ctx, t, c2, ns, name, "http", 80, c1)
	applyPolicy(ctx, t, c2, ns, name, fmv1alpha1.FailOverLbType, target(c1, 0), target(c3, 0),
		fmv1alpha1.TrafficTarget{ClusterKey: "eu/eu-1/default/cluster-9"})
	p := &fmv1alpha1.GlobalTrafficPolicy{}
	err := testenv.Eventually(ctx, 10*time.Second, func(ctx context.Context) (bool, error) {
		if err := c2.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, p); err != nil {
			return false, err
		}
		return p.Status.ObservedGeneration == p.Generation, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []fmv1alpha1.ClusterKey{"default/default/default/cluster-3", "eu/eu-1/default/cluster-9"}
	if !slices.Equal(p.Status.UnmatchedTargets, want) {
		t.Errorf("unmatchedTargets = %v, want %v", p.Status.UnmatchedTargets, want)
	}
	cond := meta.FindStatusCondition(p.Status.Conditions, fmv1alpha1.ConditionAccepted)
	if cond == nil || cond.Reason != fmv1alpha1.ReasonUnknownTargets {
		t.Errorf("Accepted condition = %+v, want reason %s", cond, fmv1alpha1.ReasonUnknownTargets)
	}
}
