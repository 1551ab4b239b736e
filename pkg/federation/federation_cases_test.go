package federation_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
	"github.com/fleetmesh/fleetmesh/pkg/controller"
	"github.com/fleetmesh/fleetmesh/pkg/federation"
	"github.com/fleetmesh/fleetmesh/pkg/pki"
	"github.com/fleetmesh/fleetmesh/pkg/signer"
	"github.com/fleetmesh/fleetmesh/test/testenv"
)

func members(ctx context.Context, t *testing.T) (c1, c2, c3 *testenv.Cluster) {
	t.Helper()
	c1, c2, c3 = fleet.Cluster("cluster-1"), fleet.Cluster("cluster-2"), fleet.Cluster("cluster-3")
	for _, c := range []*testenv.Cluster{c1, c2, c3} {
		join(ctx, t, c)
	}
	return c1, c2, c3
}

// imported says whether the cluster has the import ns/name.
func imported(c *testenv.Cluster, ns, name string) func(context.Context) (bool, error) {
	return func(ctx context.Context) (bool, error) {
		_, err := getImport(ctx, c, ns, name)
		return err == nil, client.IgnoreNotFound(err)
	}
}

func importedFrom(ctx context.Context, c *testenv.Cluster, ns, name string) ([]string, error) {
	imp, err := getImport(ctx, c, ns, name)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, p := range imp.Spec.Ports {
		for _, e := range p.Endpoints {
			if !slices.Contains(out, e.ClusterKey) {
				out = append(out, e.ClusterKey)
			}
		}
	}
	return out, nil
}

// TestConflictingExportsAreMarkedAndTheOldestWins: the same service with a
// port "http" of different numbers in two clusters is Conflict=True on
// both; the import carries the older export's definition, and ports of
// other names are merged.
func TestConflictingExportsAreMarkedAndTheOldestWins(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stop := startFederation(t)
	defer stop()
	c1, c2, c3 := members(ctx, t)
	// Both Services exist before either export, as the user writes them
	// (otherwise cluster-3 would first get a derived one).
	createService(ctx, t, c1, "conflict", "api", corev1.ServicePort{Name: "http", Port: 8080, Protocol: corev1.ProtocolTCP})
	createService(ctx, t, c3, "conflict", "api",
		corev1.ServicePort{Name: "http", Port: 9090, Protocol: corev1.ProtocolTCP},
		corev1.ServicePort{Name: "metrics", Port: 9100, Protocol: corev1.ProtocolTCP})
	createExport(ctx, t, c1, "conflict", "api")
	time.Sleep(1100 * time.Millisecond) // creation timestamps have a second's resolution
	createExport(ctx, t, c3, "conflict", "api")

	eventually(ctx, t, "both exports are Conflict=True", func(ctx context.Context) (bool, error) {
		for _, c := range []*testenv.Cluster{c1, c3} {
			e := &fmv1alpha1.ServiceExport{}
			if err := c.Client.Get(ctx, client.ObjectKey{Namespace: "conflict", Name: "api"}, e); err != nil {
				return false, err
			}
			cond := meta.FindStatusCondition(e.Status.Conditions, fmv1alpha1.ConditionConflict)
			if cond == nil || cond.Status != metav1.ConditionTrue || cond.Reason != fmv1alpha1.ReasonPortConflict {
				return false, nil
			}
		}
		return true, nil
	})
	eventually(ctx, t, "an event tells cluster-1's user of the conflict", hasEvent(c1, "conflict", "api", fmv1alpha1.ReasonPortConflict))
	imp, err := getImport(ctx, c2, "conflict", "api")
	if err != nil {
		t.Fatal(err)
	}
	var ports []string
	for _, p := range imp.Spec.Ports {
		ports = append(ports, fmt.Sprintf("%s:%d", p.Name, p.Port))
	}
	if !slices.Equal(ports, []string{"http:8080", "metrics:9100"}) {
		t.Errorf("import ports = %v, want the older http:8080 and the merged metrics:9100", ports)
	}
}

// TestUnexportingRemovesExactlyWhatItContributed: unexport from one
// cluster removes only its endpoints; unexport from the last removes the
// import and the derived Service.
func TestUnexportingRemovesExactlyWhatItContributed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stop := startFederation(t)
	defer stop()
	c1, c2, c3 := members(ctx, t)
	for _, c := range []*testenv.Cluster{c1, c3} {
		createService(ctx, t, c, "unexport", "web", corev1.ServicePort{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP})
		createExport(ctx, t, c, "unexport", "web")
	}
	want := func(keys ...string) func(ctx context.Context) (bool, error) {
		return func(ctx context.Context) (bool, error) {
			got, err := importedFrom(ctx, c2, "unexport", "web")
			if apierrors.IsNotFound(err) {
				return len(keys) == 0, nil
			}
			return slices.Equal(got, keys), err
		}
	}
	eventually(ctx, t, "cluster-2 imports web from both", want("default/default/default/cluster-1", "default/default/default/cluster-3"))
	if err := c1.Client.Delete(ctx, &fmv1alpha1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: "unexport", Name: "web"}}); err != nil {
		t.Fatal(err)
	}
	eventually(ctx, t, "only cluster-3's endpoint stays", want("default/default/default/cluster-3"))
	if err := c3.Client.Delete(ctx, &fmv1alpha1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: "unexport", Name: "web"}}); err != nil {
		t.Fatal(err)
	}
	eventually(ctx, t, "the import is gone", want())
	eventually(ctx, t, "the derived Service is gone", func(ctx context.Context) (bool, error) {
		err := c2.Client.Get(ctx, client.ObjectKey{Namespace: "unexport", Name: "web"}, &corev1.Service{})
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	})
	// The exporters' own Services are untouched.
	for _, c := range []*testenv.Cluster{c1, c3} {
		if err := c.Client.Get(ctx, client.ObjectKey{Namespace: "unexport", Name: "web"}, &corev1.Service{}); err != nil {
			t.Errorf("%s's own Service: %v", c.Name, err)
		}
	}
}

// TestADerivedServiceAUserTakesOverIsReleased is the article's step 4: a
// user deploys httpbin into cluster-2 by giving the derived Service a
// selector; fleetmesh releases it and never deletes it, and the import
// stays.
func TestADerivedServiceAUserTakesOverIsReleased(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stop := startFederation(t)
	defer stop()
	c1, c2, _ := members(ctx, t)
	createService(ctx, t, c1, "takeover", "app", corev1.ServicePort{Port: 8080, Protocol: corev1.ProtocolTCP})
	createExport(ctx, t, c1, "takeover", "app")
	svc := &corev1.Service{}
	eventually(ctx, t, "cluster-2 has the derived Service", func(ctx context.Context) (bool, error) {
		err := c2.Client.Get(ctx, client.ObjectKey{Namespace: "takeover", Name: "app"}, svc)
		return err == nil, client.IgnoreNotFound(err)
	})
	svc.Spec.Selector = map[string]string{"app": "app"}
	if err := c2.Client.Update(ctx, svc); err != nil {
		t.Fatal(err)
	}
	eventually(ctx, t, "the Service is released", func(ctx context.Context) (bool, error) {
		err := c2.Client.Get(ctx, client.ObjectKey{Namespace: "takeover", Name: "app"}, svc)
		return err == nil && svc.Labels[fmv1alpha1.ManagedByLabel] == "", err
	})
	time.Sleep(time.Second) // a few syncs
	if err := c2.Client.Get(ctx, client.ObjectKey{Namespace: "takeover", Name: "app"}, svc); err != nil || svc.Spec.Selector["app"] != "app" {
		t.Fatalf("the user's Service was changed or deleted: %v %+v", err, svc.Spec.Selector)
	}
	if _, err := getImport(ctx, c2, "takeover", "app"); err != nil {
		t.Fatalf("the import went away: %v", err)
	}
}

// TestABrokenMemberSaysWhyAndDisturbsNoOther: a Cluster whose kubeconfig
// does not parse, and one whose API server cannot be reached, report it;
// the other members stay Ready and keep their imports.
func TestABrokenMemberSaysWhyAndDisturbsNoOther(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stop := startFederation(t)
	defer stop()
	c1, c2, _ := members(ctx, t)
	createService(ctx, t, c1, "broken", "svc", corev1.ServicePort{Port: 80, Protocol: corev1.ProtocolTCP})
	createExport(ctx, t, c1, "broken", "svc")
	eventually(ctx, t, "cluster-2 imports svc", imported(c2, "broken", "svc"))
	unreachable, err := testenv.KubeconfigFor(c1.Config, "gone")
	if err != nil {
		t.Fatal(err)
	}
	unreachable = []byte(string(unreachable[:0]) + replaceServer(string(unreachable), "https://10.244.0.99:6443"))
	bad := map[string]string{"bad-kubeconfig": "this is not a kubeconfig", "unreachable": string(unreachable)}
	for name, kc := range bad {
		obj := &fmv1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: fmv1alpha1.ClusterSpec{GatewayHost: "10.244.0.1", Kubeconfig: kc}}
		if err := hub.Client.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = hub.Client.Delete(context.Background(), obj) }()
	}
	for name, reason := range map[string]string{"bad-kubeconfig": fmv1alpha1.ReasonBadKubeconfig, "unreachable": fmv1alpha1.ReasonUnreachable} {
		eventually(ctx, t, name+" reports "+reason, func(ctx context.Context) (bool, error) {
			c := &fmv1alpha1.Cluster{}
			if err := hub.Client.Get(ctx, client.ObjectKey{Name: name}, c); err != nil {
				return false, err
			}
			cond := meta.FindStatusCondition(c.Status.Conditions, fmv1alpha1.ConditionReady)
			return cond != nil && cond.Status == metav1.ConditionFalse && cond.Reason == reason, nil
		})
	}
	eventually(ctx, t, "an event on the Cluster says the kubeconfig is bad", hasEvent(hub, "default", "bad-kubeconfig", fmv1alpha1.ReasonBadKubeconfig))
	c := &fmv1alpha1.Cluster{}
	if err := hub.Client.Get(ctx, client.ObjectKey{Name: "cluster-1"}, c); err != nil || !meta.IsStatusConditionTrue(c.Status.Conditions, fmv1alpha1.ConditionReady) {
		t.Errorf("cluster-1 is disturbed: %v %+v", err, c.Status.Conditions)
	}
	if _, err := getImport(ctx, c2, "broken", "svc"); err != nil {
		t.Errorf("cluster-2's import went away: %v", err)
	}
}

func replaceServer(kubeconfig, server string) string {
	out := ""
	for _, line := range splitLines(kubeconfig) {
		if trimmed := trimLeft(line); len(trimmed) > 7 && trimmed[:7] == "server:" {
			line = line[:len(line)-len(trimmed)] + "server: " + server
		}
		out += line + "\n"
	}
	return out
}

func splitLines(s string) []string {
	var out []string
	start := 0
	for i := range len(s) {
		if s[i] == '\n' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

func trimLeft(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	return s
}

// TestARestartedFederationChangesNothingThatIsRight: after a restart the
// federation converges without rewriting unchanged imports (their
// resourceVersions stay).
func TestARestartedFederationChangesNothingThatIsRight(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stop := startFederation(t)
	c1, c2, _ := members(ctx, t)
	createService(ctx, t, c1, "restart", "svc", corev1.ServicePort{Port: 80, Protocol: corev1.ProtocolTCP})
	createExport(ctx, t, c1, "restart", "svc")
	eventually(ctx, t, "cluster-2 imports svc", func(ctx context.Context) (bool, error) {
		imp, err := getImport(ctx, c2, "restart", "svc")
		return err == nil && len(imp.Status.Clusters) == 1, client.IgnoreNotFound(err)
	})
	time.Sleep(time.Second)
	versions := func() map[string]string {
		out := map[string]string{}
		var list fmv1alpha1.ServiceImportList
		if err := c2.Client.List(ctx, &list); err != nil {
			t.Fatal(err)
		}
		for _, imp := range list.Items {
			out[imp.Namespace+"/"+imp.Name] = imp.ResourceVersion
		}
		var svcs corev1.ServiceList
		if err := c2.Client.List(ctx, &svcs, client.MatchingLabels{fmv1alpha1.ManagedByLabel: fmv1alpha1.ManagedByValue}); err != nil {
			t.Fatal(err)
		}
		for _, s := range svcs.Items {
			out["service "+s.Namespace+"/"+s.Name] = s.ResourceVersion
		}
		return out
	}
	before := versions()
	if before["restart/svc"] == "" || before["service restart/svc"] == "" {
		t.Fatalf("nothing to compare: %v", before)
	}
	stop()
	stop = startFederation(t)
	defer stop()
	// A new export's import appearing proves the restarted federation has
	// run a whole sync since.
	createService(ctx, t, c1, "restart", "probe", corev1.ServicePort{Port: 80, Protocol: corev1.ProtocolTCP})
	createExport(ctx, t, c1, "restart", "probe")
	eventually(ctx, t, "the restarted federation syncs", imported(c2, "restart", "probe"))
	time.Sleep(time.Second)
	after := versions()
	for k, v := range before {
		if after[k] != v {
			t.Errorf("%s was rewritten by the restart: resourceVersion %s → %s", k, v, after[k])
		}
	}
}

// TestAnUnreachableMemberKeepsItsImportsAndConverges freezes cluster-3's
// API server: its Cluster turns not Ready (stale since then), what it
// exported stays imported in cluster-2, the rest of the fleet goes on; it
// comes back Ready and the imports converge without duplicates.
func TestAnUnreachableMemberKeepsItsImportsAndConverges(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	stop := startFederation(t)
	defer stop()
	c1, c2, c3 := members(ctx, t)
	for _, c := range []*testenv.Cluster{c1, c3} {
		createService(ctx, t, c, "outage", "svc", corev1.ServicePort{Port: 80, Protocol: corev1.ProtocolTCP})
		createExport(ctx, t, c, "outage", "svc")
	}
	createService(ctx, t, c3, "outage", "only3", corev1.ServicePort{Port: 80, Protocol: corev1.ProtocolTCP})
	createExport(ctx, t, c3, "outage", "only3")
	both := []string{"default/default/default/cluster-1", "default/default/default/cluster-3"}
	eventually(ctx, t, "cluster-2 imports svc from both", func(ctx context.Context) (bool, error) {
		got, err := importedFrom(ctx, c2, "outage", "svc")
		return slices.Equal(got, both), client.IgnoreNotFound(err)
	})

	if err := c3.FreezeAPIServer(); err != nil {
		t.Fatal(err)
	}
	thawed := false
	defer func() {
		if !thawed {
			_ = c3.ThawAPIServer()
		}
	}()
	eventually(ctx, t, "cluster-3 turns not Ready", func(ctx context.Context) (bool, error) {
		c := &fmv1alpha1.Cluster{}
		if err := hub.Client.Get(ctx, client.ObjectKey{Name: "cluster-3"}, c); err != nil {
			return false, err
		}
		cond := meta.FindStatusCondition(c.Status.Conditions, fmv1alpha1.ConditionReady)
		return cond != nil && cond.Status == metav1.ConditionFalse && cond.Reason == fmv1alpha1.ReasonUnreachable && c.Status.StaleSince != nil, nil
	})
	// The fleet goes on without it...
	createService(ctx, t, c1, "outage", "during", corev1.ServicePort{Port: 80, Protocol: corev1.ProtocolTCP})
	createExport(ctx, t, c1, "outage", "during")
	eventually(ctx, t, "an export made during the outage is imported", imported(c2, "outage", "during"))
	// ...and what cluster-3 exported stays.
	if got, err := importedFrom(ctx, c2, "outage", "svc"); err != nil || !slices.Equal(got, both) {
		t.Errorf("during the outage cluster-2 imports svc from %v (%v), want %v", got, err, both)
	}
	if _, err := getImport(ctx, c2, "outage", "only3"); err != nil {
		t.Errorf("during the outage the import only cluster-3 exports went away: %v", err)
	}

	if err := c3.ThawAPIServer(); err != nil {
		t.Fatal(err)
	}
	thawed = true
	eventually(ctx, t, "cluster-3 is Ready again", func(ctx context.Context) (bool, error) {
		c := &fmv1alpha1.Cluster{}
		if err := hub.Client.Get(ctx, client.ObjectKey{Name: "cluster-3"}, c); err != nil {
			return false, err
		}
		return meta.IsStatusConditionTrue(c.Status.Conditions, fmv1alpha1.ConditionReady) && c.Status.StaleSince == nil, nil
	})
	eventually(ctx, t, "cluster-3 gets the export made during the outage", imported(c3, "outage", "during"))
	if got, err := importedFrom(ctx, c2, "outage", "svc"); err != nil || !slices.Equal(got, both) {
		t.Errorf("after the outage cluster-2 imports svc from %v (%v), want %v once each", got, err, both)
	}
}

// hasEvent looks for an events.k8s.io Event about the named object with
// that reason (events about cluster-scoped objects land in "default").
func hasEvent(c *testenv.Cluster, ns, name, reason string) func(ctx context.Context) (bool, error) {
	return func(ctx context.Context) (bool, error) {
		var list eventsv1.EventList
		if err := c.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return false, err
		}
		for _, e := range list.Items {
			if e.Regarding.Name == name && e.Reason == reason {
				return true, nil
			}
		}
		return false, nil
	}
}

// setCluster changes a member's Cluster object in the control plane and
// returns a function that restores it.
func setCluster(ctx context.Context, t *testing.T, name string, change func(*fmv1alpha1.ClusterSpec)) func() {
	t.Helper()
	c := &fmv1alpha1.Cluster{}
	if err := hub.Client.Get(ctx, client.ObjectKey{Name: name}, c); err != nil {
		t.Fatal(err)
	}
	saved := c.Spec
	change(&c.Spec)
	if err := hub.Client.Update(ctx, c); err != nil {
		t.Fatal(err)
	}
	return func() {
		c := &fmv1alpha1.Cluster{}
		if err := hub.Client.Get(context.Background(), client.ObjectKey{Name: name}, c); err == nil {
			c.Spec = saved
			_ = hub.Client.Update(context.Background(), c)
		}
	}
}

// TestAKubeconfigInASecretJoinsTheMember moves cluster-2's kubeconfig into
// a Secret (kubeconfigSecretRef): the member stays joined and keeps
// receiving imports, without a restart.
func TestAKubeconfigInASecretJoinsTheMember(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stop := startFederation(t)
	defer stop()
	c1, c2, _ := members(ctx, t)
	if err := hub.EnsureNamespace(ctx, "fleetmesh"); err != nil {
		t.Fatal(err)
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "fleetmesh", Name: "cluster-2"}, Data: map[string][]byte{"kubeconfig": c2.Kubeconfig}}
	if err := hub.Client.Create(ctx, secret); err != nil {
		t.Fatal(err)
	}
	restore := setCluster(ctx, t, "cluster-2", func(s *fmv1alpha1.ClusterSpec) {
		s.Kubeconfig = ""
		s.KubeconfigSecretRef = &fmv1alpha1.SecretKeyRef{Namespace: "fleetmesh", Name: "cluster-2", Key: "kubeconfig"}
	})
	defer restore()
	createService(ctx, t, c1, "secretref", "svc", corev1.ServicePort{Port: 80, Protocol: corev1.ProtocolTCP})
	createExport(ctx, t, c1, "secretref", "svc")
	eventually(ctx, t, "cluster-2 imports svc", imported(c2, "secretref", "svc"))
	c := &fmv1alpha1.Cluster{}
	if err := hub.Client.Get(ctx, client.ObjectKey{Name: "cluster-2"}, c); err != nil || !meta.IsStatusConditionTrue(c.Status.Conditions, fmv1alpha1.ConditionReady) {
		t.Errorf("cluster-2 with a Secret: %v %+v", err, c.Status.Conditions)
	}
}

// TestMembersOnOneNetworkShareThePodAddresses puts cluster-1 and cluster-2
// on one network: cluster-1's pods appear in cluster-2 as MCS
// EndpointSlices, and follow as a pod becomes not ready and goes away.
func TestMembersOnOneNetworkShareThePodAddresses(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stop := startFederation(t)
	defer stop()
	c1, c2, _ := members(ctx, t)
	for _, name := range []string{"cluster-1", "cluster-2"} {
		defer setCluster(ctx, t, name, func(s *fmv1alpha1.ClusterSpec) { s.Network = "east" })()
	}
	createService(ctx, t, c1, "flat", "web", corev1.ServicePort{Port: 8080, Protocol: corev1.ProtocolTCP})
	pod, err := c1.RunPod(ctx, testenv.PodOptions{Namespace: "flat", Name: "web-1", Labels: map[string]string{"app": "web"}})
	if err != nil {
		t.Fatal(err)
	}
	createExport(ctx, t, c1, "flat", "web")
	readiness := func(ctx context.Context) (map[string]bool, error) {
		var slices discoveryv1.EndpointSliceList
		err := c2.Client.List(ctx, &slices, client.InNamespace("flat"), client.MatchingLabels{fmv1alpha1.LabelSourceCluster: "cluster-1", fmv1alpha1.LabelServiceName: "web"})
		out := map[string]bool{}
		for _, s := range slices.Items {
			if s.Labels[discoveryv1.LabelManagedBy] != fmv1alpha1.EndpointSliceManagedByFederation {
				continue
			}
			for _, e := range s.Endpoints {
				out[e.Addresses[0]] = e.Conditions.Ready == nil || *e.Conditions.Ready
			}
		}
		return out, err
	}
	want := func(expect map[string]bool) func(ctx context.Context) (bool, error) {
		return func(ctx context.Context) (bool, error) {
			got, err := readiness(ctx)
			return fmt.Sprint(got) == fmt.Sprint(expect), err
		}
	}
	eventually(ctx, t, "cluster-2 has cluster-1's pod, ready", want(map[string]bool{pod.IP: true}))
	if err := pod.SetReady(ctx, false); err != nil {
		t.Fatal(err)
	}
	eventually(ctx, t, "the copy follows the pod to not ready", want(map[string]bool{pod.IP: false}))
	if err := pod.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(ctx, t, "the copy loses the deleted pod", want(map[string]bool{}))
}

// TestAnExistingImportIsAdoptedAndFollowsTheServicesPorts: a ServiceImport
// a user wrote under the name is adopted (labelled and rewritten), and the
// import follows the exporter's Service when its ports change.
func TestAnExistingImportIsAdoptedAndFollowsTheServicesPorts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stop := startFederation(t)
	defer stop()
	c1, c2, _ := members(ctx, t)
	if err := c2.EnsureNamespace(ctx, "adopt"); err != nil {
		t.Fatal(err)
	}
	mine := &fmv1alpha1.ServiceImport{
		ObjectMeta: metav1.ObjectMeta{Namespace: "adopt", Name: "api"},
		Spec:       fmv1alpha1.ServiceImportSpec{Ports: []fmv1alpha1.ServicePort{{Port: 1234}}},
	}
	if err := c2.Client.Create(ctx, mine); err != nil {
		t.Fatal(err)
	}
	createService(ctx, t, c1, "adopt", "api", corev1.ServicePort{Name: "http", Port: 8080, Protocol: corev1.ProtocolTCP})
	createExport(ctx, t, c1, "adopt", "api")
	ports := func(want ...int32) func(ctx context.Context) (bool, error) {
		return func(ctx context.Context) (bool, error) {
			imp, err := getImport(ctx, c2, "adopt", "api")
			if err != nil {
				return false, err
			}
			var got []int32
			for _, p := range imp.Spec.Ports {
				got = append(got, p.Port)
			}
			return slices.Equal(got, want) && imp.Labels[fmv1alpha1.ManagedByLabel] == fmv1alpha1.ManagedByValue, nil
		}
	}
	eventually(ctx, t, "the user's import is adopted and rewritten", ports(8080))
	svc := &corev1.Service{}
	if err := c1.Client.Get(ctx, client.ObjectKey{Namespace: "adopt", Name: "api"}, svc); err != nil {
		t.Fatal(err)
	}
	svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{Name: "grpc", Port: 9090, Protocol: corev1.ProtocolTCP})
	if err := c1.Client.Update(ctx, svc); err != nil {
		t.Fatal(err)
	}
	eventually(ctx, t, "the import follows the new port", ports(8080, 9090))
	eventually(ctx, t, "so does the derived Service", func(ctx context.Context) (bool, error) {
		d := &corev1.Service{}
		if err := c2.Client.Get(ctx, client.ObjectKey{Namespace: "adopt", Name: "api"}, d); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		return len(d.Spec.Ports) == 2, nil
	})
}

// TestAnExportIsNotReadyWhereItsImportCannotBeWritten joins cluster-2 with
// credentials that may read but not write: the export from cluster-1 says
// Ready=False, ImportFailed, naming cluster-2 and the refusal, until the
// rights are granted.
func TestAnExportIsNotReadyWhereItsImportCannotBeWritten(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stop := startFederation(t)
	defer stop()
	c1, c2, _ := members(ctx, t)
	// A user of cluster-2 that may read everything and write nothing.
	reader := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "federation-reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "view-all"},
		Subjects:   []rbacv1.Subject{{Kind: "User", Name: "federation-reader"}},
	}
	if err := c2.Client.Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "view-all"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"*"}, Resources: []string{"*"}, Verbs: []string{"get", "list", "watch"}}},
	}); err != nil {
		t.Fatal(err)
	}
	if err := c2.Client.Create(ctx, reader); err != nil {
		t.Fatal(err)
	}
	readOnly := impersonating(t, c2, "federation-reader")
	restore := setCluster(ctx, t, "cluster-2", func(s *fmv1alpha1.ClusterSpec) { s.Kubeconfig = readOnly })
	defer restore()

	createService(ctx, t, c1, "refused", "svc", corev1.ServicePort{Port: 80, Protocol: corev1.ProtocolTCP})
	createExport(ctx, t, c1, "refused", "svc")
	ready := func(ctx context.Context) (*metav1.Condition, error) {
		e := &fmv1alpha1.ServiceExport{}
		if err := c1.Client.Get(ctx, client.ObjectKey{Namespace: "refused", Name: "svc"}, e); err != nil {
			return nil, err
		}
		return meta.FindStatusCondition(e.Status.Conditions, fmv1alpha1.ConditionReady), nil
	}
	var (
		cond *metav1.Condition
		err  error
	)
	eventually(ctx, t, "the export says its import in cluster-2 failed", func(ctx context.Context) (bool, error) {
		cond, err = ready(ctx)
		return cond != nil && cond.Status == metav1.ConditionFalse && cond.Reason == fmv1alpha1.ReasonImportFailed, err
	})
	if !strings.Contains(cond.Message, "cluster-2 (") || !strings.Contains(cond.Message, "forbidden") {
		t.Errorf("the condition does not name the member and the refusal: %q", cond.Message)
	}

	// Granted the rights, the import is written and the export is Ready.
	writer := reader.DeepCopy()
	writer.Name, writer.RoleRef.Name, writer.ResourceVersion = "federation-writer", "cluster-admin", ""
	if err := c2.Client.Create(ctx, writer); err != nil {
		t.Fatal(err)
	}
	eventually(ctx, t, "the export is Ready once cluster-2 accepts its import", func(ctx context.Context) (bool, error) {
		cond, err = ready(ctx)
		if _, ierr := getImport(ctx, c2, "refused", "svc"); ierr != nil {
			return false, client.IgnoreNotFound(ierr)
		}
		return cond != nil && cond.Status == metav1.ConditionTrue, err
	})
}

// TestAnExportIsNotReadyInTheSyncWhoseImportWasRefused: cluster-2
// refuses this one import (an admission policy) and takes every other
// write. The first Ready the export ever shows is already False,
// ImportFailed, naming cluster-2 and the refusal: a condition says what
// this sync's writes did, not what its plan hoped. Once cluster-2 takes
// the import, the export is Ready.
func TestAnExportIsNotReadyInTheSyncWhoseImportWasRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	stop := startFederation(t)
	defer stop()
	c1, c2, _ := members(ctx, t)
	const ns = "refused-here"
	if err := c2.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	policy := &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "no-imports-in-" + ns},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{fmv1alpha1.GroupVersion.Group}, APIVersions: []string{"*"}, Resources: []string{"serviceimports"}},
				},
			}}},
			Validations: []admissionregistrationv1.Validation{{
				Expression: "object.metadata.namespace != '" + ns + "'", Message: "this cluster takes no imports of " + ns,
			}},
		},
	}
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: policy.Name},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName: policy.Name, ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
		},
	}
	for _, obj := range []client.Object{policy, binding} {
		if err := c2.Client.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	lift := func() {
		for _, obj := range []client.Object{binding, policy} {
			if err := c2.Client.Delete(ctx, obj); client.IgnoreNotFound(err) != nil {
				t.Error(err)
			}
		}
	}
	defer lift()
	probe := &fmv1alpha1.ServiceImport{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "probe"}}
	eventually(ctx, t, "cluster-2 refuses imports of "+ns, func(ctx context.Context) (bool, error) {
		err := c2.Client.Create(ctx, probe.DeepCopy(), client.DryRunAll)
		return apierrors.IsInvalid(err) || apierrors.IsForbidden(err), nil
	})

	// Every Ready condition the export takes, in order.
	wc, err := client.NewWithWatch(c1.Config, client.Options{Scheme: controller.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	watch, err := wc.Watch(ctx, &fmv1alpha1.ServiceExportList{}, client.InNamespace(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Stop()
	createService(ctx, t, c1, ns, "svc", corev1.ServicePort{Port: 80, Protocol: corev1.ProtocolTCP})
	createExport(ctx, t, c1, ns, "svc")
	next := func(what string) metav1.Condition {
		t.Helper()
		for {
			select {
			case ev := <-watch.ResultChan():
				if e, ok := ev.Object.(*fmv1alpha1.ServiceExport); ok {
					if cond := meta.FindStatusCondition(e.Status.Conditions, fmv1alpha1.ConditionReady); cond != nil {
						return *cond
					}
				}
			case <-ctx.Done():
				t.Fatalf("%s: no Ready condition came", what)
			}
		}
	}
	first := next("the first Ready")
	if first.Status != metav1.ConditionFalse || first.Reason != fmv1alpha1.ReasonImportFailed {
		t.Fatalf("the export's first Ready is %s, %s (%q); want False, ImportFailed: cluster-2 refused its import in that sync", first.Status, first.Reason, first.Message)
	}
	if !strings.Contains(first.Message, "cluster-2 (") || !strings.Contains(first.Message, "no-imports-in-"+ns) {
		t.Errorf("the condition does not name the member and the refusal: %q", first.Message)
	}

	lift()
	for cond := first; cond.Status != metav1.ConditionTrue; {
		cond = next("Ready once cluster-2 takes the import")
	}
	if _, err := getImport(ctx, c2, ns, "svc"); err != nil {
		t.Errorf("the export is Ready, but cluster-2 has no import: %v", err)
	}
}

// TestAMemberWhoseCredentialsMayNotReadSaysWhat joins cluster-3 as a user
// with no rights there: the Cluster is Ready=False, Forbidden, naming
// what it may not list and what to apply, at once rather than after a
// cache sync timeout.
func TestAMemberWhoseCredentialsMayNotReadSaysWhat(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stop := startFederation(t)
	defer stop()
	_, _, c3 := members(ctx, t)
	nobody := impersonating(t, c3, "nobody-in-particular")
	restore := setCluster(ctx, t, "cluster-3", func(s *fmv1alpha1.ClusterSpec) { s.Kubeconfig = nobody })
	defer restore()
	var ready *metav1.Condition
	eventually(ctx, t, "cluster-3 is Ready=False, Forbidden", func(ctx context.Context) (bool, error) {
		c := &fmv1alpha1.Cluster{}
		if err := hub.Client.Get(ctx, client.ObjectKey{Name: "cluster-3"}, c); err != nil {
			return false, err
		}
		ready = meta.FindStatusCondition(c.Status.Conditions, fmv1alpha1.ConditionReady)
		return ready != nil && ready.Status == metav1.ConditionFalse && ready.Reason == fmv1alpha1.ReasonForbidden, nil
	})
	if !strings.Contains(ready.Message, "may not list namespaces") || !strings.Contains(ready.Message, "manifests/member") {
		t.Errorf("the condition does not say what is refused and what to do: %q", ready.Message)
	}
}

// impersonating is c's admin kubeconfig acting as user.
func impersonating(t *testing.T, c *testenv.Cluster, user string) string {
	t.Helper()
	kc, err := clientcmd.Load(c.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range kc.AuthInfos {
		u.Impersonate = user
	}
	data, err := clientcmd.Write(*kc)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// TestConstantChurnInOneMemberDelaysNoSync changes an EndpointSlice of
// cluster-1 every 30 ms, faster than the federation's quiet period (100
// ms), for as long as the test runs: an export in cluster-3 still reaches
// cluster-2, because a burst of changes may delay a sync by at most the
// debounce maximum (1 s).
func TestConstantChurnInOneMemberDelaysNoSync(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stop := startFederation(t)
	defer stop()
	c1, c2, c3 := members(ctx, t)
	// The federation is connected and syncing before the churn starts.
	createService(ctx, t, c3, "steady", "first", corev1.ServicePort{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP})
	createExport(ctx, t, c3, "steady", "first")
	eventually(ctx, t, "cluster-2 imports steady/first", imported(c2, "steady", "first"))
	if err := c1.EnsureNamespace(ctx, "churn"); err != nil {
		t.Fatal(err)
	}
	churning, stopChurn := context.WithCancel(ctx)
	defer stopChurn()
	var changes atomic.Int64
	// Three writers, each changing its own slice as fast as the API
	// server takes it: far more often than every 100 ms.
	for w := range 3 {
		slice := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: "churn", Name: fmt.Sprintf("busy-%d", w), Labels: map[string]string{discoveryv1.LabelServiceName: "busy"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.1.0.1"}}},
		}
		if err := c1.Client.Create(ctx, slice); err != nil {
			t.Fatal(err)
		}
		go func() {
			for i := 0; churning.Err() == nil; i++ {
				slice.Endpoints[0].Addresses[0] = fmt.Sprintf("10.%d.%d.%d", w+1, i/250%250, i%250+1)
				if err := c1.Client.Update(churning, slice); err == nil {
					changes.Add(1)
				}
			}
		}()
	}
	time.Sleep(time.Second) // the churn is under way
	if err := c3.Client.Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "steady", Name: "web"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}},
	}); err != nil {
		t.Fatal(err)
	}
	createExport(ctx, t, c3, "steady", "web")
	start := time.Now()
	eventually(ctx, t, "cluster-2 imports steady/web while cluster-1 churns", imported(c2, "steady", "web"))
	stopChurn()
	t.Logf("imported %v after the export, under %d slice changes in cluster-1", time.Since(start).Round(10*time.Millisecond), changes.Load())
}

// TestASlowMemberRecoversWithoutARestart puts cluster-3's API server behind
// a proxy that holds every list, watch and discovery request 8 s (past the
// federation's 5 s request timeout) while its health checks answer at
// once, for a minute: cluster-3 turns not Ready and says why, what it
// exported stays imported, and the rest of the fleet goes on syncing. Then
// the API server is fast again: cluster-3 becomes Ready, and what it
// exported meanwhile is imported, with the same federation still running.
func TestASlowMemberRecoversWithoutARestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	stop := startFederation(t)
	defer stop()
	c1, c2, c3 := members(ctx, t)
	createService(ctx, t, c3, "slow", "before", corev1.ServicePort{Port: 80, Protocol: corev1.ProtocolTCP})
	createExport(ctx, t, c3, "slow", "before")
	eventually(ctx, t, "cluster-2 imports slow/before", imported(c2, "slow", "before"))

	proxy, err := c3.StartSlowProxy()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = proxy.Close() }()
	proxy.SetDelay(8 * time.Second)
	restore := setCluster(ctx, t, "cluster-3", func(s *fmv1alpha1.ClusterSpec) { s.Kubeconfig = string(proxy.Kubeconfig) })
	defer restore()
	slowSince := time.Now()
	var lastSaid string
	ready := func(want bool) func(ctx context.Context) (bool, error) {
		return func(ctx context.Context) (bool, error) {
			c := &fmv1alpha1.Cluster{}
			if err := hub.Client.Get(ctx, client.ObjectKey{Name: "cluster-3"}, c); err != nil {
				return false, err
			}
			cond := meta.FindStatusCondition(c.Status.Conditions, fmv1alpha1.ConditionReady)
			if want {
				return cond != nil && cond.Status == metav1.ConditionTrue, nil
			}
			if cond == nil || cond.Status != metav1.ConditionFalse {
				return false, nil
			}
			if said := cond.Reason + ": " + cond.Message; said != lastSaid {
				t.Logf("%v after it turned slow, cluster-3 says Ready=False %s", time.Since(slowSince).Round(time.Second), said)
				lastSaid = said
			}
			return cond.Reason == fmv1alpha1.ReasonUnreachable || cond.Reason == fmv1alpha1.ReasonConnecting, nil
		}
	}
	eventually(ctx, t, "cluster-3 turns not Ready while its API server is slow", ready(false))

	// While cluster-3 is slow, the fleet goes on and what it exported stays.
	createService(ctx, t, c1, "slow", "during", corev1.ServicePort{Port: 80, Protocol: corev1.ProtocolTCP})
	createExport(ctx, t, c1, "slow", "during")
	start := time.Now()
	eventually(ctx, t, "cluster-2 imports an export of cluster-1 made while cluster-3 is slow", imported(c2, "slow", "during"))
	t.Logf("an export of cluster-1 was imported in cluster-2 %v after it was made, cluster-3 being slow", time.Since(start).Round(10*time.Millisecond))
	createService(ctx, t, c3, "slow", "meanwhile", corev1.ServicePort{Port: 80, Protocol: corev1.ProtocolTCP})
	createExport(ctx, t, c3, "slow", "meanwhile")
	time.Sleep(time.Until(slowSince.Add(time.Minute)))
	if _, err := getImport(ctx, c2, "slow", "before"); err != nil {
		t.Errorf("after a minute of cluster-3 being slow, cluster-2's import of what it exported is gone: %v", err)
	}
	if ok, err := ready(false)(ctx); !ok || err != nil {
		t.Errorf("after a minute of its API server being slow, cluster-3 should still be not Ready (%v)", err)
	}

	proxy.SetDelay(0)
	recovered := time.Now()
	err = testenv.Eventually(ctx, time.Minute, ready(true))
	if err != nil {
		t.Fatalf("cluster-3 was not Ready within a minute of its API server answering again: %v", err)
	}
	t.Logf("cluster-3 Ready %v after its API server answered at once again", time.Since(recovered).Round(10*time.Millisecond))
	eventually(ctx, t, "cluster-2 imports what cluster-3 exported while slow", imported(c2, "slow", "meanwhile"))
}

// TestTheFleetsRootsAreCarriedAndItsTrustDomainChecked gives each member
// workload roots, as its signer publishes them: each gets the others'
// roots, and the member whose signer issues identities in another trust
// domain than the rest is named in a Warning on its Cluster.
func TestTheFleetsRootsAreCarriedAndItsTrustDomainChecked(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stop := startFederation(t)
	defer stop()
	trust := map[string]string{"cluster-1": "fleet.example", "cluster-2": "fleet.example", "cluster-3": "cluster.local"}
	roots := map[string]string{}
	for _, name := range []string{"cluster-1", "cluster-2", "cluster-3"} {
		c := fleet.Cluster(name)
		join(ctx, t, c)
		if err := c.EnsureNamespace(ctx, "fleetmesh-system"); err != nil {
			t.Fatal(err)
		}
		ca, _, err := pki.IssueCA(name, time.Now(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		roots[name] = string(pki.PEMCert(ca.Raw))
		cm := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: "fleetmesh-system", Name: signer.RootsConfigMap, Labels: map[string]string{fmv1alpha1.ManagedByLabel: fmv1alpha1.ManagedByValue}},
			Data:       map[string]string{signer.RootsKey: roots[name], signer.TrustDomainKey: trust[name]},
		}
		if err := c.Client.Create(ctx, cm); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Client.Delete(context.Background(), cm) })
	}
	for _, name := range []string{"cluster-1", "cluster-2", "cluster-3"} {
		c := fleet.Cluster(name)
		eventually(ctx, t, name+" holds the other members' roots", func(ctx context.Context) (bool, error) {
			cm := &corev1.ConfigMap{}
			if err := c.Client.Get(ctx, client.ObjectKey{Namespace: "fleetmesh-system", Name: signer.FleetRootsConfigMap}, cm); err != nil {
				return false, client.IgnoreNotFound(err)
			}
			for other, pem := range roots {
				if got, ok := cm.Data[other+".pem"]; (other == name) == ok || (ok && got != pem) {
					return false, nil
				}
			}
			return true, nil
		})
	}
	eventually(ctx, t, "a Warning names cluster-3's trust domain", hasEvent(hub, "default", "cluster-3", federation.ReasonTrustDomainMismatch))
}

// TestAChangeToOneServiceIsSyncedAlone: in a fleet that has converged, an
// export, and an object of it a user deletes by hand in a member, are
// synced by syncs of that service (kind services), with no full sync of
// the fleet (the resync is set far off).
func TestAChangeToOneServiceIsSyncedAlone(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stop, run := startFederationRun(t, func(o *controller.Options) { o.FederationResync = time.Hour })
	defer stop()
	c1, c2, _ := members(ctx, t)
	createService(ctx, t, c1, "alone", "first", corev1.ServicePort{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP})
	createExport(ctx, t, c1, "alone", "first")
	eventually(ctx, t, "cluster-2 imports alone/first", imported(c2, "alone", "first"))
	// Quiet: no sync of any kind for two seconds.
	const full, services = `fleetmesh_federation_syncs_total{kind="full"}`, `fleetmesh_federation_syncs_total{kind="services"}`
	var before federationSeries
	eventually(ctx, t, "the fleet is quiet", func(context.Context) (bool, error) {
		before = federationMetrics(t, run)
		time.Sleep(2 * time.Second)
		after := federationMetrics(t, run)
		return after.sum(full) == before.sum(full) && after.sum(services) == before.sum(services), nil
	})

	createService(ctx, t, c1, "alone", "second", corev1.ServicePort{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP})
	createExport(ctx, t, c1, "alone", "second")
	eventually(ctx, t, "cluster-2 imports alone/second", imported(c2, "alone", "second"))
	derived := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "alone", Name: "second"}}
	eventually(ctx, t, "cluster-2 has the derived Service alone/second", func(ctx context.Context) (bool, error) {
		err := c2.Client.Get(ctx, client.ObjectKeyFromObject(derived), &corev1.Service{})
		return err == nil, client.IgnoreNotFound(err)
	})
	if err := c2.Client.Delete(ctx, derived); err != nil {
		t.Fatal(err)
	}
	eventually(ctx, t, "the derived Service deleted by hand comes back", func(ctx context.Context) (bool, error) {
		err := c2.Client.Get(ctx, client.ObjectKeyFromObject(derived), &corev1.Service{})
		return err == nil, client.IgnoreNotFound(err)
	})
	after := federationMetrics(t, run)
	if after.sum(full) != before.sum(full) {
		t.Errorf("%v full syncs ran for a change to one service", after.sum(full)-before.sum(full))
	}
	if after.sum(services) <= before.sum(services) {
		t.Error("no sync of the changed service ran")
	}
}
