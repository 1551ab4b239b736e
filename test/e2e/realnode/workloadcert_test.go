package realnode

import (
	"context"
	"crypto/x509"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fleetmesh/fleetmesh/pkg/discovery"
	"github.com/fleetmesh/fleetmesh/pkg/inject"
	"github.com/fleetmesh/fleetmesh/pkg/pki"
	"github.com/fleetmesh/fleetmesh/pkg/signer"
	"github.com/fleetmesh/fleetmesh/test/testenv"
)

// TestTheKubeletGetsAPodItsWorkloadCertificate: a pod mounts a
// podCertificate projected volume asking fleetmesh.io/workload for a
// one-hour certificate, and the signer's roots from its ClusterTrustBundle.
// The real kubelet makes the request with a key it keeps, the controller
// of the member overlay (in real pods) issues it, and the kubelet starts
// the pod with its credential bundle: the request names the pod, and the
// certificate names spiffe://cluster.local/ns/<namespace>/sa/<service
// account>, for that hour, and chains to the published roots.
func TestTheKubeletGetsAPodItsWorkloadCertificate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c := realFleet(t).Clusters[0]
	installMember(ctx, t, c)
	const ns, sa = "identity", "reader"
	if err := c.EnsureNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	if err := c.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sa}}); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "with-identity"},
		Spec: corev1.PodSpec{
			ServiceAccountName: sa,
			Containers: []corev1.Container{{
				Name: "app", Image: testenv.EchoImage, ImagePullPolicy: corev1.PullNever,
				VolumeMounts: []corev1.VolumeMount{{Name: "identity", MountPath: "/var/run/fleetmesh/identity", ReadOnly: true}},
			}},
			Volumes: []corev1.Volume{{Name: "identity", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
				Sources: []corev1.VolumeProjection{
					{PodCertificate: &corev1.PodCertificateProjection{
						SignerName: signer.Name, KeyType: "ECDSAP256", MaxExpirationSeconds: ptr.To[int32](3600),
						CredentialBundlePath: "credentials.pem",
					}},
					{ClusterTrustBundle: &corev1.ClusterTrustBundleProjection{
						SignerName: ptr.To(signer.Name), LabelSelector: &metav1.LabelSelector{}, Path: "roots.pem",
					}},
				},
			}}}},
		},
	}
	start := time.Now()
	if err := c.Client.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	err := testenv.Eventually(ctx, 2*time.Minute, func(ctx context.Context) (bool, error) {
		err := c.Client.Get(ctx, client.ObjectKeyFromObject(pod), pod)
		return err == nil && testenv.PodReady(pod), err
	})
	if err != nil {
		t.Fatalf("the pod never started with its certificate: %v; status %+v", err, pod.Status)
	}
	t.Logf("the pod was Ready %v after it was created", time.Since(start).Round(time.Millisecond))

	var requests certificatesv1.PodCertificateRequestList
	if err := c.Client.List(ctx, &requests, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	var issued *certificatesv1.PodCertificateRequest
	for i := range requests.Items {
		if r := &requests.Items[i]; r.Spec.PodUID == pod.UID && meta.IsStatusConditionTrue(r.Status.Conditions, certificatesv1.PodCertificateRequestConditionTypeIssued) {
			issued = r
		}
	}
	if issued == nil {
		t.Fatalf("no issued request for the pod among %d", len(requests.Items))
	}
	if issued.Spec.PodName != pod.Name || issued.Spec.ServiceAccountName != sa || issued.Spec.NodeName == "" {
		t.Errorf("the kubelet's request names pod %s, service account %s, node %q", issued.Spec.PodName, issued.Spec.ServiceAccountName, issued.Spec.NodeName)
	}
	leaf := pki.ParseCert([]byte(issued.Status.CertificateChain))
	if leaf == nil {
		t.Fatalf("the certificate chain holds no certificate: %q", issued.Status.CertificateChain)
	}
	want := fmt.Sprintf("spiffe://cluster.local/ns/%s/sa/%s", ns, sa)
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != want {
		t.Errorf("the certificate names %v, want %s", leaf.URIs, want)
	}
	if life := leaf.NotAfter.Sub(leaf.NotBefore); life != time.Hour {
		t.Errorf("the certificate lives %v, want the hour asked for", life)
	}
	bundle := &certificatesv1.ClusterTrustBundle{}
	if err := c.Client.Get(ctx, client.ObjectKey{Name: signer.TrustBundle}, bundle); err != nil {
		t.Fatalf("the signer's ClusterTrustBundle: %v", err)
	}
	roots := x509.NewCertPool()
	for _, r := range pki.ParseCerts([]byte(bundle.Spec.TrustBundle)) {
		roots.AddCert(r)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("the certificate does not chain to the published roots: %v", err)
	}
	t.Logf("issued %s until %s", want, leaf.NotAfter.Format(time.RFC3339))
}

// TestInjectedSidecarsAuthenticateWithTheirPodCertificates: the member's
// controller runs with --xds-tls, as manifests/member says: it serves ADS
// over TLS to workloads with a certificate only. Two injected pods get
// the identity volume, the real kubelet gets their certificates from the
// controller's signer, their Envoys connect over TLS and are SYNCED, and
// one calls the other through the mesh.
func TestInjectedSidecarsAuthenticateWithTheirPodCertificates(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := realFleet(t).Clusters[0]
	installMember(ctx, t, c)
	dep := &appsv1.Deployment{}
	if err := c.Client.Get(ctx, client.ObjectKey{Namespace: "fleetmesh-system", Name: "fleetmesh-controller"}, dep); err != nil {
		t.Fatal(err)
	}
	if args := dep.Spec.Template.Spec.Containers[0].Args; !slices.Contains(args, "--xds-tls") {
		t.Fatalf("manifests/member runs the controller without --xds-tls: %v", args)
	}

	const ns = "mesh-tls"
	if err := c.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{inject.NamespaceLabel: "enabled"}}}); err != nil {
		t.Fatal(err)
	}
	clientPod := meshedPair(ctx, t, c, ns)
	if !slices.ContainsFunc(clientPod.Spec.Volumes, func(v corev1.Volume) bool {
		return v.Projected != nil && len(v.Projected.Sources) > 0 && v.Projected.Sources[0].PodCertificate != nil
	}) {
		t.Fatalf("the injected pod has no podCertificate volume: %+v", clientPod.Spec.Volumes)
	}
	t.Logf("the client's Envoy counted %d 2xx responses from web, over an xDS connection authenticated by its pod certificate", callThroughTheMesh(ctx, t, c, ns, clientPod))

	t.Run("STRICT closes every port of a meshed pod to plaintext, those no Service names too", func(t *testing.T) {
		// A meshed pod that also serves gRPC on 9090, a port no Service
		// names, and a pod outside the mesh that calls it.
		dep, _ := echoApp(ns, "strict-web", 1, corev1.EnvVar{Name: "MESSAGE", Value: "strict-web"}, corev1.EnvVar{Name: "GRPC_PORT", Value: "9090"})
		const plain = "mesh-tls-outside"
		if err := c.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: plain}}); err != nil {
			t.Fatal(err)
		}
		outside, _ := echoApp(plain, "outside", 1)
		for _, d := range []*appsv1.Deployment{dep, outside} {
			if err := c.Client.Create(ctx, d); err != nil {
				t.Fatal(err)
			}
		}
		waitAvailable(ctx, t, c, ns, "strict-web", 1)
		waitAvailable(ctx, t, c, plain, "outside", 1)
		podOf := func(ns, app string) corev1.Pod {
			var pods corev1.PodList
			if err := c.Client.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{"app": app}); err != nil || len(pods.Items) != 1 {
				t.Fatalf("the pod of %s/%s: %v (%d pods)", ns, app, err, len(pods.Items))
			}
			return pods.Items[0]
		}
		web, caller := podOf(ns, "strict-web"), podOf(plain, "outside")
		call := func() string {
			out, _ := c.Kubectl(nil, "-n", plain, "exec", caller.Name, "-c", "app", "--", "/echo", "grpc-call", "-n", "1", web.Status.PodIP+":9090")
			return strings.TrimSpace(out)
		}
		var got string
		err := testenv.Eventually(ctx, time.Minute, func(context.Context) (bool, error) {
			got = call()
			return got == "OK strict-web", nil
		})
		if err != nil {
			t.Fatalf("PERMISSIVE: a plaintext caller of the port no Service names got %q, want it passed through", got)
		}
		nsObj := &corev1.Namespace{}
		if err := c.Client.Get(ctx, client.ObjectKey{Name: ns}, nsObj); err != nil {
			t.Fatal(err)
		}
		nsObj.Labels[discovery.MTLSModeKey] = "STRICT"
		if err := c.Client.Update(ctx, nsObj); err != nil {
			t.Fatal(err)
		}
		err = testenv.Eventually(ctx, time.Minute, func(context.Context) (bool, error) {
			got = call()
			return strings.HasPrefix(got, "error"), nil
		})
		if err != nil {
			t.Fatalf("STRICT: a plaintext caller of the port no Service names got %q, want the connection closed", got)
		}
		t.Logf("STRICT: the plaintext caller of port 9090 got %q", got)
	})
}
