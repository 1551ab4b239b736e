package federation

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
)

// writeClusterStatus reports a member's conditions on its Cluster object.
func (f *Federation) writeClusterStatus(ctx context.Context, c *fmv1alpha1.Cluster, conn *memberConn, gateway metav1.Condition, ip string, known bool) error {
	f.mu.Lock()
	st, info, connected := conn.state, conn.info, conn.cluster != nil
	f.mu.Unlock()
	next := c.DeepCopy()
	ready := condition(fmv1alpha1.ConditionReady, st.reachable, "Reachable", "the member's API server answers with these credentials", c.Generation)
	if !st.reachable {
		ready.Reason, ready.Message = st.reason, st.message
	}
	joined := condition(fmv1alpha1.ConditionJoined, known, "Joined", "the member takes part in the federation", c.Generation)
	if !known {
		joined.Reason, joined.Message = "NotSynced", "the member's objects are not read now; its last contributions are kept"
	}
	prev := meta.FindStatusCondition(c.Status.Conditions, fmv1alpha1.ConditionReady)
	if st.dialing && prev != nil && prev.ObservedGeneration == c.Generation {
		// What the status says was found with these credentials; a
		// restarted federation does not report itself connecting.
		return nil
	}
	if (prev == nil || prev.Status != ready.Status || prev.Reason != ready.Reason) && st.reason != fmv1alpha1.ReasonConnecting {
		if st.reachable {
			f.events.Eventf(c, nil, corev1.EventTypeNormal, "Joined", "Join", "the member's API server answers; it takes part in the federation")
		} else {
			f.events.Eventf(c, nil, corev1.EventTypeWarning, ready.Reason, "Connect", "%s", ready.Message)
		}
	}
	meta.SetStatusCondition(&next.Status.Conditions, ready)
	meta.SetStatusCondition(&next.Status.Conditions, joined)
	meta.SetStatusCondition(&next.Status.Conditions, gateway)
	if connected {
		for _, cond := range info.capabilities {
			cond.ObservedGeneration = c.Generation
			meta.SetStatusCondition(&next.Status.Conditions, cond)
		}
		next.Status.KubernetesVersion = info.version
	}
	next.Status.ClusterKey = string(c.Key())
	next.Status.GatewayIP = ip
	next.Status.StaleSince = st.staleSince
	// lastSyncTime moves with every other change, and at most every 30s
	// otherwise: each status write wakes the federation up again.
	changed := !equality.Semantic.DeepEqual(withoutTimes(c.Status), withoutTimes(next.Status))
	if known && (changed || c.Status.LastSyncTime == nil || time.Since(c.Status.LastSyncTime.Time) > 30*time.Second) {
		now := metav1.Now()
		next.Status.LastSyncTime = &now
		changed = true
	}
	if !changed {
		return nil
	}
	if err := f.hub.Status().Patch(ctx, next, client.MergeFrom(c), client.FieldOwner(FieldOwner)); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("write status of Cluster %s: %w", c.Name, err)
	}
	return nil
}

// withoutTimes is a status without the times that change on their own.
func withoutTimes(st fmv1alpha1.ClusterStatus) fmv1alpha1.ClusterStatus {
	st = *st.DeepCopy()
	st.LastSyncTime = nil
	for i := range st.Conditions {
		st.Conditions[i].LastTransitionTime = metav1.Time{}
	}
	return st
}

// resolve turns a host into an IP (an IP stays as it is).
func resolve(ctx context.Context, host string) (string, error) {
	if host == "" {
		return "", errors.New("spec.gatewayHost is empty: the member is st.reachable only on a shared network")
	}
	if ip := net.ParseIP(host); ip != nil {
		return ip.String(), nil
	}
	rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupIP(rctx, "ip", host)
	if err != nil {
		return "", fmt.Errorf("spec.gatewayHost %q does not resolve: %w", host, err)
	}
	if len(addrs) == 0 {
		return "", fmt.Errorf("spec.gatewayHost %q resolves to no address", host)
	}
	return addrs[0].String(), nil
}
