package install

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
	"github.com/fleetmesh/fleetmesh/test/testenv"
)

// TestTheFederationMayWriteOnlyWhatItManages: with the member overlay's
// RBAC and admission policy for the federation's ServiceAccount (in
// member-3, whose audit log no other test reads for it), a token of that
// ServiceAccount — what a control plane that is taken over holds — may
// make, change and delete objects labelled
// app.kubernetes.io/managed-by=fleetmesh, and is refused any change to a
// user's Service or namespace that its RBAC alone would allow.
func TestTheFederationMayWriteOnlyWhatItManages(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := fleet.Cluster("member-3")
	admin, fed := asFederation(ctx, t, c)

	const shop = "shop"
	if err := c.EnsureNamespace(ctx, shop); err != nil {
		t.Fatal(err)
	}
	service := func(name string, ours bool) *corev1.Service {
		s := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: shop, Name: name},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 8080}}},
		}
		if ours {
			s.Labels = map[string]string{fmv1alpha1.ManagedByLabel: fmv1alpha1.ManagedByValue}
		}
		return s
	}
	if _, err := admin.CoreV1().Services(shop).Create(ctx, service("mine", false), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The policy is in force once the API server has compiled it.
	var refusal error
	err := testenv.Eventually(ctx, 30*time.Second, func(context.Context) (bool, error) {
		refusal = fed.CoreV1().Services(shop).Delete(ctx, "mine", metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}})
		return refusal != nil, nil
	})
	if err != nil {
		t.Fatalf("the federation may delete a user's Service: %v", err)
	}
	if !strings.Contains(refusal.Error(), "only objects labelled app.kubernetes.io/managed-by=fleetmesh; services shop/mine is not") {
		t.Errorf("the refusal does not say why: %v", refusal)
	}

	refused := map[string]error{}
	_, refused["take over a user's Service"] = fed.CoreV1().Services(shop).Patch(ctx, "mine", "application/merge-patch+json",
		[]byte(`{"metadata":{"labels":{"app.kubernetes.io/managed-by":"fleetmesh"}},"spec":{"selector":{"app":"evil"}}}`), metav1.PatchOptions{})
	_, refused["create an unlabelled Service"] = fed.CoreV1().Services(shop).Create(ctx, service("unlabelled", false), metav1.CreateOptions{})
	_, refused["create an unlabelled namespace"] = fed.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "unlabelled"}}, metav1.CreateOptions{})
	for what, err := range refused {
		if err == nil {
			t.Errorf("the federation may %s", what)
		}
	}

	// Its own: made, changed, released, deleted.
	allowed := map[string]error{}
	_, allowed["create a labelled namespace"] = fed.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: "imported", Labels: map[string]string{fmv1alpha1.ManagedByLabel: fmv1alpha1.ManagedByValue},
	}}, metav1.CreateOptions{})
	_, allowed["create a labelled Service"] = fed.CoreV1().Services(shop).Create(ctx, service("derived", true), metav1.CreateOptions{})
	_, allowed["change its Service"] = fed.CoreV1().Services(shop).Patch(ctx, "derived", "application/merge-patch+json",
		[]byte(`{"metadata":{"annotations":{"changed":"yes"}}}`), metav1.PatchOptions{})
	allowed["delete its Service"] = fed.CoreV1().Services(shop).Delete(ctx, "derived", metav1.DeleteOptions{})
	_, allowed["create another labelled Service"] = fed.CoreV1().Services(shop).Create(ctx, service("released", true), metav1.CreateOptions{})
	_, allowed["release its Service (drop the label)"] = fed.CoreV1().Services(shop).Patch(ctx, "released", "application/merge-patch+json",
		[]byte(`{"metadata":{"labels":{"app.kubernetes.io/managed-by":null}}}`), metav1.PatchOptions{})
	for what, err := range allowed {
		if err != nil {
			t.Errorf("the federation may not %s: %v", what, err)
		}
	}
	// Released, the Service is the user's: out of its reach.
	if err := fed.CoreV1().Services(shop).Delete(ctx, "released", metav1.DeleteOptions{}); err == nil {
		t.Errorf("the federation may delete a Service it released")
	}
}

// asFederation applies the member overlay's RBAC and admission policies
// for the federation's ServiceAccount in c, and returns an admin client
// and a client with a token of that ServiceAccount: what a control plane
// that is taken over holds.
func asFederation(ctx context.Context, t *testing.T, c *testenv.Cluster) (admin, fed *kubernetes.Clientset) {
	t.Helper()
	if err := c.EnsureNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"manifests/member/federation-rbac.yaml", "manifests/member/federation-policy.yaml"} {
		if out, err := c.Kubectl(nil, "apply", "--server-side", "-f", f); err != nil {
			t.Fatalf("kubectl apply -f %s: %v\n%s", f, err, out)
		}
	}
	admin = kubernetes.NewForConfigOrDie(c.Config)
	tr, err := admin.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "fleetmesh-federation",
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := rest.AnonymousClientConfig(c.Config)
	cfg.BearerToken = tr.Status.Token
	return admin, kubernetes.NewForConfigOrDie(cfg)
}

// TestTheFederationWritesOnlyWhatTheFleetNeeds plays a control plane
// that is taken over, holding the federation's token for member-3: each
// write its RBAC allows but the fleet never needs is refused by member-3's
// API server, with the member overlay's admission policies and the
// member's own check of EndpointSlices (its controller, serving
// manifests/member/webhook.yaml), and the writes the fleet needs pass.
func TestTheFederationWritesOnlyWhatTheFleetNeeds(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := fleet.Cluster("member-3")
	admin, fed := asFederation(ctx, t, c)
	// member-3's controller serves the check where envtest pointed the
	// manifests' webhook configurations.
	w := c.Webhooks
	run, err := c.StartControlPlane(ctx, testenv.ControlPlaneOptions{Args: []string{
		"--cluster-name=member-3", "--namespace=" + ns, "--inject", "--manage-webhook-certs=false",
		fmt.Sprintf("--webhook-address=%s:%d", w.LocalServingHost, w.LocalServingPort), "--webhook-cert-dir=" + w.LocalServingCertDir,
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = run.Stop() }()
	if _, err := admin.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, "fleetmesh-federation-guard", metav1.GetOptions{}); err != nil {
		t.Fatalf("the manifests' check of the federation's EndpointSlices is not installed: %v", err)
	}

	const shop = "fleet-needs"
	if err := c.EnsureNamespace(ctx, shop); err != nil {
		t.Fatal(err)
	}
	ours := map[string]string{fmv1alpha1.ManagedByLabel: fmv1alpha1.ManagedByValue}
	service := func(name string, mutate func(*corev1.Service)) *corev1.Service {
		s := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: shop, Name: name, Labels: maps.Clone(ours)},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 8080}}},
		}
		if mutate != nil {
			mutate(s)
		}
		return s
	}
	// A user's Services: one of pods, as kube-system/kube-dns is, and
	// one without a selector.
	if _, err := admin.CoreV1().Services(shop).Create(ctx, service("dns", func(s *corev1.Service) {
		s.Labels, s.Spec.Selector = nil, map[string]string{"k8s-app": "dns"}
	}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CoreV1().Services(shop).Create(ctx, service("external", func(s *corev1.Service) { s.Labels = nil }), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	slice := func(name, joins string, mutate func(*discoveryv1.EndpointSlice)) *discoveryv1.EndpointSlice {
		s := &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Namespace: shop, Name: name, Labels: map[string]string{
				fmv1alpha1.ManagedByLabel:    fmv1alpha1.ManagedByValue,
				discoveryv1.LabelManagedBy:   fmv1alpha1.EndpointSliceManagedByFederation,
				discoveryv1.LabelServiceName: joins,
			}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.244.66.6"}}},
			Ports:       []discoveryv1.EndpointPort{{Port: ptr.To[int32](8080)}},
		}
		if mutate != nil {
			mutate(s)
		}
		return s
	}
	ingress := func(name, class string) *networkingv1.Ingress {
		return &networkingv1.Ingress{
			ObjectMeta: metav1.ObjectMeta{Namespace: shop, Name: name, Labels: maps.Clone(ours)},
			Spec: networkingv1.IngressSpec{IngressClassName: ptr.To(class), DefaultBackend: &networkingv1.IngressBackend{
				Service: &networkingv1.IngressServiceBackend{Name: "derived", Port: networkingv1.ServiceBackendPort{Number: 8080}},
			}},
		}
	}
	token := func(spec authenticationv1.TokenRequestSpec) error {
		_, err := fed.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "fleetmesh-federation", &authenticationv1.TokenRequest{Spec: spec}, metav1.CreateOptions{})
		return err
	}
	boundTo := func(secret string) *authenticationv1.BoundObjectReference {
		return &authenticationv1.BoundObjectReference{Kind: "Secret", APIVersion: "v1", Name: secret}
	}

	// The policies are in force once the API server has compiled them.
	err = testenv.Eventually(ctx, 30*time.Second, func(context.Context) (bool, error) {
		_, err := fed.CoreV1().Services(shop).Create(ctx, service("probe", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeLoadBalancer }),
			metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err != nil, nil
	})
	if err != nil {
		t.Fatal("the federation may create a LoadBalancer Service")
	}

	// What the fleet needs, first: the refusals below are of what is
	// different, not of everything.
	if _, err := fed.CoreV1().Services(shop).Create(ctx, service("derived", nil), metav1.CreateOptions{}); err != nil {
		t.Fatalf("the federation may not derive a Service: %v", err)
	}
	allowed := []struct {
		what  string
		write func() error
	}{
		{"create a headless derived Service", func() error {
			_, err := fed.CoreV1().Services(shop).Create(ctx, service("headless", func(s *corev1.Service) { s.Spec.ClusterIP = corev1.ClusterIPNone }), metav1.CreateOptions{})
			return err
		}},
		{"write an EndpointSlice of its derived Service", func() error {
			_, err := fed.DiscoveryV1().EndpointSlices(shop).Create(ctx, slice("derived-cluster-1-abc", "derived", nil), metav1.CreateOptions{})
			return err
		}},
		{"write an Ingress of class fleetmesh", func() error {
			_, err := fed.NetworkingV1().Ingresses(shop).Create(ctx, ingress("derived", "fleetmesh"), metav1.CreateOptions{})
			return err
		}},
		{"write the fleet's roots", func() error {
			_, err := fed.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "fleetmesh-fleet-roots", Labels: maps.Clone(ours)}}, metav1.CreateOptions{})
			return err
		}},
		{"make the Secret its next token is bound to", func() error {
			_, err := fed.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "fleetmesh-federation-token-a", Labels: maps.Clone(ours)}, Type: corev1.SecretTypeOpaque}, metav1.CreateOptions{})
			return err
		}},
		{"ask for a day's token bound to it", func() error {
			return token(authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](86400), BoundObjectRef: boundTo("fleetmesh-federation-token-a")})
		}},
	}
	for _, a := range allowed {
		if err := a.write(); err != nil {
			t.Errorf("the federation may not %s: %v", a.what, err)
		}
	}

	refused := []struct {
		what, why string
		write     func() error
	}{
		{"an EndpointSlice joining a user's Service of pods (kube-dns, say)", "Service fleet-needs/dns is not labelled", func() error {
			_, err := fed.DiscoveryV1().EndpointSlices(shop).Create(ctx, slice("hijack", "dns", nil), metav1.CreateOptions{})
			return err
		}},
		{"an EndpointSlice joining a user's selector-less Service", "Service fleet-needs/external is not labelled", func() error {
			_, err := fed.DiscoveryV1().EndpointSlices(shop).Create(ctx, slice("hijack-external", "external", nil), metav1.CreateOptions{})
			return err
		}},
		{"an EndpointSlice of its own Service moved onto a user's", "Service fleet-needs/dns is not labelled", func() error {
			_, err := fed.DiscoveryV1().EndpointSlices(shop).Patch(ctx, "derived-cluster-1-abc", types.MergePatchType,
				[]byte(`{"metadata":{"labels":{"kubernetes.io/service-name":"dns"}}}`), metav1.PatchOptions{})
			return err
		}},
		{"an EndpointSlice the EndpointSlice controller would take for its own", "labelled endpointslice.kubernetes.io/managed-by=federation.fleetmesh.io", func() error {
			_, err := fed.DiscoveryV1().EndpointSlices(shop).Create(ctx, slice("unmarked", "derived", func(s *discoveryv1.EndpointSlice) {
				s.Labels[discoveryv1.LabelManagedBy] = "endpointslice-controller.k8s.io"
			}), metav1.CreateOptions{})
			return err
		}},
		{"a LoadBalancer Service", "selector-less ClusterIP", func() error {
			_, err := fed.CoreV1().Services(shop).Create(ctx, service("lb", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeLoadBalancer }), metav1.CreateOptions{})
			return err
		}},
		{"a NodePort Service", "selector-less ClusterIP", func() error {
			_, err := fed.CoreV1().Services(shop).Create(ctx, service("np", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeNodePort }), metav1.CreateOptions{})
			return err
		}},
		{"a Service with external IPs", "selector-less ClusterIP", func() error {
			_, err := fed.CoreV1().Services(shop).Create(ctx, service("eip", func(s *corev1.Service) { s.Spec.ExternalIPs = []string{"10.244.66.7"} }), metav1.CreateOptions{})
			return err
		}},
		{"a Service that selects pods", "selector-less ClusterIP", func() error {
			_, err := fed.CoreV1().Services(shop).Create(ctx, service("sel", func(s *corev1.Service) { s.Spec.Selector = map[string]string{"k8s-app": "dns"} }), metav1.CreateOptions{})
			return err
		}},
		{"a release of its Service that changes it too", "changing nothing else", func() error {
			_, err := fed.CoreV1().Services(shop).Patch(ctx, "derived", types.MergePatchType,
				[]byte(`{"metadata":{"labels":{"app.kubernetes.io/managed-by":null}},"spec":{"externalIPs":["10.244.66.7"]}}`), metav1.PatchOptions{})
			return err
		}},
		{"an Ingress of another class", "only Ingresses of class fleetmesh", func() error {
			_, err := fed.NetworkingV1().Ingresses(shop).Create(ctx, ingress("nginx", "nginx"), metav1.CreateOptions{})
			return err
		}},
		{"another ConfigMap", "only the ConfigMap fleetmesh-system/fleetmesh-fleet-roots", func() error {
			_, err := fed.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "fleetmesh-workload-roots-evil", Labels: maps.Clone(ours)}}, metav1.CreateOptions{})
			return err
		}},
		{"another Secret", "only the empty, opaque Secrets", func() error {
			_, err := fed.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "evil", Labels: maps.Clone(ours)}, Type: corev1.SecretTypeOpaque}, metav1.CreateOptions{})
			return err
		}},
		{"a Secret the token controller would fill with a token of the controller's ServiceAccount", "only the empty, opaque Secrets", func() error {
			_, err := fed.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{
				Namespace: ns, Name: "fleetmesh-federation-token-b", Labels: maps.Clone(ours),
				Annotations: map[string]string{corev1.ServiceAccountNameKey: "fleetmesh-controller"},
			}, Type: corev1.SecretTypeServiceAccountToken}, metav1.CreateOptions{})
			return err
		}},
		{"an unbound token", "bound to Secret fleetmesh-federation-token-a or -b", func() error {
			return token(authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)})
		}},
		{"a token of ten years", "valid for a day at most", func() error {
			return token(authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](10 * 365 * 86400), BoundObjectRef: boundTo("fleetmesh-federation-token-a")})
		}},
		{"a token bound to another object", "bound to Secret fleetmesh-federation-token-a or -b", func() error {
			return token(authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600), BoundObjectRef: boundTo("fleetmesh-fleet-roots")})
		}},
	}
	for _, r := range refused {
		err := r.write()
		t.Logf("%s: %v", r.what, err)
		if err == nil {
			t.Errorf("the federation may write %s", r.what)
		} else if !strings.Contains(err.Error(), r.why) {
			t.Errorf("%s: refused without saying why (%q): %v", r.what, r.why, err)
		}
	}
}
