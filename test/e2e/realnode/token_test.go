package realnode

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fleetmesh/fleetmesh/pkg/bootstrap"
	"github.com/fleetmesh/fleetmesh/pkg/inject"
	"github.com/fleetmesh/fleetmesh/pkg/signer"
	"github.com/fleetmesh/fleetmesh/test/testenv"
)

// TestWithoutPodCertificatesProxiesAuthenticateWithTokens is a member
// whose API server serves neither PodCertificateRequests nor
// ClusterTrustBundles and whose kubelet has neither feature, as before
// Kubernetes 1.35: `kubectl apply -k
// manifests/member-token`. xDS stays TLS only. The manifests' gateway and
// two injected pods get a ServiceAccount token of audience fleetmesh,
// bound to the pod, from the real kubelet, and the roots from the
// ConfigMap the controller copies into their namespace; their Envoys
// authenticate with the token, are SYNCED, and one pod calls the other
// through the mesh.
func TestWithoutPodCertificatesProxiesAuthenticateWithTokens(t *testing.T) {
	realFleet(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	refs, err := testenv.ManifestImages()
	if err != nil {
		t.Fatal(err)
	}
	f, err := testenv.StartFleet(ctx, testenv.FleetOptions{
		Clusters:  []string{"older-member"},
		RealNodes: true,
		Images:    refs,
		// A cluster as it was before pod certificates, API and kubelet.
		FeatureGates: "PodCertificateRequest=false,ClusterTrustBundle=false,ClusterTrustBundleProjection=false",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Stop() }()
	c := f.Clusters[0]
	for _, l := range []client.ObjectList{&certificatesv1.PodCertificateRequestList{}, &certificatesv1.ClusterTrustBundleList{}} {
		if err := c.Client.List(ctx, l); !meta.IsNoMatchError(err) {
			t.Fatalf("the API server serves %T (err %v): the test needs a cluster without pod certificates", l, err)
		}
	}

	applyMember(ctx, t, c, "manifests/member-token")
	// The gateway listens (its readiness probe) only once it has its
	// listener, over a stream its token authenticated.
	waitAvailable(ctx, t, c, "fleetmesh-system", "fleetmesh-gateway", 2)

	const ns = "mesh-token"
	if err := c.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{inject.NamespaceLabel: "enabled"}}}); err != nil {
		t.Fatal(err)
	}
	err = testenv.Eventually(ctx, time.Minute, func(ctx context.Context) (bool, error) {
		cm := &corev1.ConfigMap{}
		if err := c.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: signer.RootsConfigMap}, cm); err != nil {
			return false, err
		}
		return strings.Contains(cm.Data[signer.RootsKey], "BEGIN CERTIFICATE"), fmt.Errorf("roots %q", cm.Data[signer.RootsKey])
	})
	if err != nil {
		t.Fatalf("the roots never reached namespace %s: %v", ns, err)
	}

	clientPod := meshedPair(ctx, t, c, ns)
	var token *corev1.ServiceAccountTokenProjection
	for _, v := range clientPod.Spec.Volumes {
		if v.Projected == nil {
			continue
		}
		for _, src := range v.Projected.Sources {
			if src.PodCertificate != nil || src.ClusterTrustBundle != nil {
				t.Fatalf("the injected pod asks for a pod certificate or trust bundle the cluster cannot give: %+v", v)
			}
			if src.ServiceAccountToken != nil && src.ServiceAccountToken.Path == bootstrap.TokenFile {
				token = src.ServiceAccountToken
			}
		}
	}
	if token == nil || token.Audience != bootstrap.TokenAudience {
		t.Fatalf("the injected pod has no token of audience %s: %+v", bootstrap.TokenAudience, clientPod.Spec.Volumes)
	}
	t.Logf("the client's Envoy counted %d 2xx responses from web, over an xDS connection authenticated by its pod's token", callThroughTheMesh(ctx, t, c, ns, clientPod))
}
