// Package mcs checks fleetmesh as an implementation of the Kubernetes MCS
// API: the built federation over real API servers, and each member's
// clusterset.local names answered by a real CoreDNS whose Corefile
// `fleetmesh dns enable` wrote.
package mcs

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
	"github.com/fleetmesh/fleetmesh/pkg/cli"
	"github.com/fleetmesh/fleetmesh/pkg/federation"
	"github.com/fleetmesh/fleetmesh/test/testenv"
)

var (
	fleet *testenv.Fleet
	// resolvers are the members' CoreDNS, by cluster.
	resolvers = map[string]*testenv.CoreDNS{}
)

var members = []string{"cluster-1", "cluster-2"}

func TestMain(m *testing.M) {
	testenv.Main(m, func() int {
		ctx := context.Background()
		var err error
		fleet, err = testenv.StartFleet(ctx, testenv.FleetOptions{Clusters: append([]string{"control-plane"}, members...), Workloads: true})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer func() { _ = fleet.Stop() }()
		stop, err := setUp(ctx)
		defer stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return m.Run()
	})
}

// setUp runs the built federation over the members, joined on one
// network, and each member's CoreDNS with clusterset.local enabled.
func setUp(ctx context.Context) (func(), error) {
	var stops []func()
	stop := func() {
		for _, s := range stops {
			s()
		}
	}
	hub := fleet.Cluster("control-plane")
	fed, err := hub.StartControlPlane(ctx, testenv.ControlPlaneOptions{Args: []string{"--cluster-name=control-plane", "--federation"}})
	if err != nil {
		return stop, err
	}
	stops = append(stops, func() { _ = fed.Stop() })
	for _, name := range members {
		c := fleet.Cluster(name)
		if err := hub.Client.Create(ctx, &fmv1alpha1.Cluster{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec:       fmv1alpha1.ClusterSpec{GatewayHost: fmt.Sprintf("10.244.0.%d", 80+c.Index), Network: "flat", Kubeconfig: string(c.Kubeconfig)},
		}); err != nil {
			return stop, err
		}
		port, err := testenv.FreeDNSPort()
		if err != nil {
			return stop, err
		}
		corefile, err := cli.ClustersetCorefile(c.Corefile(port), cli.ClustersetZone)
		if err != nil {
			return stop, err
		}
		d, err := testenv.StartCoreDNS(ctx, corefile, port)
		if err != nil {
			return stop, fmt.Errorf("%s: %w", name, err)
		}
		stops = append(stops, func() { _ = d.Stop() })
		resolvers[name] = d
	}
	return stop, nil
}

// answers are the records of one kind a member's CoreDNS answers for
// name, as strings (A: the address, SRV: "port target", TXT: the text),
// sorted; the rcode's name when it is not NOERROR.
func answers(ctx context.Context, cluster, name string, qtype uint16) ([]string, error) {
	r, err := resolvers[cluster].Query(ctx, name, qtype)
	if err != nil {
		return nil, err
	}
	if r.Rcode != dns.RcodeSuccess {
		return []string{dns.RcodeToString[r.Rcode]}, nil
	}
	var out []string
	for _, rr := range r.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, rr.A.String())
		case *dns.SRV:
			out = append(out, fmt.Sprintf("%d %s", rr.Port, rr.Target))
		case *dns.TXT:
			out = append(out, rr.Txt...)
		}
	}
	sort.Strings(out)
	return out, nil
}

// expectAnswers waits until the member's CoreDNS answers want.
func expectAnswers(ctx context.Context, t *testing.T, cluster, name string, qtype uint16, want ...string) {
	t.Helper()
	sort.Strings(want)
	var got []string
	err := testenv.Eventually(ctx, 30*time.Second, func(ctx context.Context) (bool, error) {
		var err error
		got, err = answers(ctx, cluster, name, qtype)
		return slices.Equal(got, want), err
	})
	if err != nil {
		t.Fatalf("%s: %s %s answers %q, want %q (%v)", cluster, dns.TypeToString[qtype], name, got, want, err)
	}
}

func mcsExport(ctx context.Context, t *testing.T, c *testenv.Cluster, ns, name string) {
	t.Helper()
	if err := c.Client.Create(ctx, &mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}); err != nil {
		t.Fatal(err)
	}
}

func service(ctx context.Context, t *testing.T, c *testenv.Cluster, ns, name string, headless bool, port corev1.ServicePort) *corev1.Service {
	t.Helper()
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.ServiceSpec{
		Selector: map[string]string{"app": name}, Ports: []corev1.ServicePort{port},
	}}
	if headless {
		svc.Spec.ClusterIP = corev1.ClusterIPNone
	}
	if err := c.EnsureNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	if err := c.Client.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	return svc
}

// TestClustersetIPNamesAnswerEachMembersOwnAddress: a ClusterSetIP
// service exported through the MCS API from both members is
// <svc>.<ns>.svc.clusterset.local in each, answered with that member's
// clusterset IP (the address of the Service the federation derived there
// under the MCS API's name for it, which its proxies route by its
// GlobalTrafficPolicy), with SRV records of its port and the zone's TXT
// dns-version; withdrawn everywhere, the name is gone.
func TestClustersetIPNamesAnswerEachMembersOwnAddress(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const ns, fqdn = "mcs-web", "web.mcs-web.svc.clusterset.local."
	for _, name := range members {
		c := fleet.Cluster(name)
		service(ctx, t, c, ns, "web", false, corev1.ServicePort{Name: "http", Port: 8080, Protocol: corev1.ProtocolTCP})
		if _, err := c.RunPod(ctx, testenv.PodOptions{Namespace: ns, Name: "web-1", Labels: map[string]string{"app": "web"}, Ports: []corev1.ContainerPort{{ContainerPort: 8080}}}); err != nil {
			t.Fatal(err)
		}
		mcsExport(ctx, t, c, ns, "web")
	}
	for _, name := range members {
		c := fleet.Cluster(name)
		derived := &corev1.Service{}
		err := testenv.Eventually(ctx, 30*time.Second, func(ctx context.Context) (bool, error) {
			err := c.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: federation.DerivedName(ns, "web")}, derived)
			return err == nil, client.IgnoreNotFound(err)
		})
		if err != nil {
			t.Fatalf("%s: no clusterset Service: %v", name, err)
		}
		expectAnswers(ctx, t, name, fqdn, dns.TypeA, derived.Spec.ClusterIP)
		expectAnswers(ctx, t, name, "_http._tcp."+fqdn, dns.TypeSRV, "8080 "+fqdn)
		expectAnswers(ctx, t, name, "dns-version.clusterset.local.", dns.TypeTXT, "1.1.0")
	}
	for _, name := range members {
		if err := fleet.Cluster(name).Client.Delete(ctx, &mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range members {
		expectAnswers(ctx, t, name, fqdn, dns.TypeA, "NXDOMAIN")
	}
}

// TestHeadlessNamesAnswerEveryMembersPods: a headless service of
// StatefulSet-like pods exported from both members (one network) is, in
// each member, every ready pod of both (the MCS slices fleetmesh writes:
// a member's own pods and the other's), each pod by
// <hostname>.<cluster>.<svc>.<ns>.svc.clusterset.local, and SRV records
// of all of them, merged as the MCS API says.
func TestHeadlessNamesAnswerEveryMembersPods(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const ns, fqdn = "mcs-db", "db.mcs-db.svc.clusterset.local."
	pods := map[string][]string{"cluster-1": {"db-0", "db-1"}, "cluster-2": {"db-0"}}
	ips := map[string]string{} // by hostname.cluster
	var all []string
	for _, name := range members {
		c := fleet.Cluster(name)
		service(ctx, t, c, ns, "db", true, corev1.ServicePort{Name: "pg", Port: 5432, Protocol: corev1.ProtocolTCP})
		for _, host := range pods[name] {
			p, err := c.RunPod(ctx, testenv.PodOptions{
				Namespace: ns, Name: host, Labels: map[string]string{"app": "db"}, Hostname: host, Subdomain: "db",
				Ports: []corev1.ContainerPort{{ContainerPort: 5432}},
			})
			if err != nil {
				t.Fatal(err)
			}
			ips[host+"."+name] = p.IP
			all = append(all, p.IP)
		}
		mcsExport(ctx, t, c, ns, "db")
	}
	for _, name := range members {
		expectAnswers(ctx, t, name, fqdn, dns.TypeA, all...)
		for pod, ip := range ips {
			expectAnswers(ctx, t, name, pod+"."+fqdn, dns.TypeA, ip)
		}
		var srv []string
		for pod := range ips {
			srv = append(srv, "5432 "+pod+"."+fqdn)
		}
		expectAnswers(ctx, t, name, "_pg._tcp."+fqdn, dns.TypeSRV, srv...)
	}
	imp := &mcsv1beta1.ServiceImport{}
	err := testenv.Eventually(ctx, 20*time.Second, func(ctx context.Context) (bool, error) {
		err := fleet.Cluster("cluster-1").Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "db"}, imp)
		return imp.Spec.Type == mcsv1beta1.Headless && len(imp.Spec.IPs) == 0 && imp.Status.EndpointSliceObjects == mcsv1beta1.EndpointSliceObjectsPresent &&
			len(imp.Status.Clusters) == 2, client.IgnoreNotFound(err)
	})
	if err != nil {
		t.Errorf("cluster-1's import of the headless service: %+v %+v: %v", imp.Spec, imp.Status, err)
	}
}
