package install

import (
	"context"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
	if err := c.EnsureNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"manifests/member/federation-rbac.yaml", "manifests/member/federation-policy.yaml"} {
		if out, err := c.Kubectl(nil, "apply", "--server-side", "-f", f); err != nil {
			t.Fatalf("kubectl apply -f %s: %v\n%s", f, err, out)
		}
	}
	admin := kubernetes.NewForConfigOrDie(c.Config)
	tr, err := admin.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "fleetmesh-federation",
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := rest.AnonymousClientConfig(c.Config)
	cfg.BearerToken = tr.Status.Token
	fed := kubernetes.NewForConfigOrDie(cfg)

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
	err = testenv.Eventually(ctx, 30*time.Second, func(context.Context) (bool, error) {
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
