package inject

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fleetmesh/fleetmesh/pkg/bootstrap"
)

func testConfig() *Config {
	return &Config{
		ProxyImage: "envoyproxy/envoy:v1.40.0", InitImage: "ghcr.io/fleetmesh/fleetmesh-init:v0.1.0",
		XDSAddress: "fleetmesh-controller.fleetmesh-system.svc:15010", ClusterName: "cluster-1", LogLevel: "warning",
		Resources: DefaultResources(), Version: "v0.1.0",
	}
}

func appPod(annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "httpbin", Name: "httpbin-1", Annotations: annotations},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "httpbin", Image: "kennethreitz/httpbin"}}},
	}
}

func TestInjectAddsTheSidecarAndTheInitContainerOnce(t *testing.T) {
	pod := appPod(nil)
	if skip := Inject(pod, testConfig()); skip != nil {
		t.Fatalf("skipped: %+v", skip)
	}
	// The redirection, then the proxy as a native sidecar; the app alone
	// among the containers.
	if len(pod.Spec.Containers) != 1 || len(pod.Spec.InitContainers) != 2 ||
		pod.Spec.InitContainers[0].Name != InitContainer || pod.Spec.InitContainers[1].Name != ProxyContainer {
		t.Fatalf("containers %+v", pod.Spec)
	}
	if pod.Annotations[AnnotationStatus] != "v0.1.0" {
		t.Errorf("annotations %v", pod.Annotations)
	}
	proxy := ProxyOf(pod)
	if proxy.RestartPolicy == nil || *proxy.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Error("the proxy is not a native sidecar (restartPolicy Always)")
	}
	if proxy.StartupProbe == nil || proxy.StartupProbe.HTTPGet.Port.IntValue() != 15021 {
		t.Errorf("the proxy's startup probe %+v", proxy.StartupProbe)
	}
	if *proxy.SecurityContext.RunAsUser != 1337 || !*proxy.SecurityContext.ReadOnlyRootFilesystem {
		t.Errorf("the proxy must run as uid 1337 on a read-only root: %+v", proxy.SecurityContext)
	}
	injected := pod.DeepCopy()
	if skip := Inject(pod, testConfig()); skip == nil || skip.Reason != "AlreadyInjected" || skip.Warn {
		t.Errorf("second pass: %+v", skip)
	}
	if !equality.Semantic.DeepEqual(pod, injected) {
		t.Error("a second pass changed the pod")
	}
}

func TestExclusionAnnotationsReachTheInitContainer(t *testing.T) {
	pod := appPod(map[string]string{
		AnnotationExcludeInboundPorts:     "9100, 8081",
		AnnotationExcludeOutboundPorts:    "5432",
		AnnotationExcludeOutboundIPRanges: "169.254.169.254/32,10.96.0.0/12",
	})
	if skip := Inject(pod, testConfig()); skip != nil {
		t.Fatalf("skipped: %+v", skip)
	}
	args := pod.Spec.InitContainers[0].Args
	for _, want := range []string{
		"--exclude-inbound-ports=15000,15021,9100,8081",
		"--exclude-outbound-ports=15010,5432",
		"--exclude-outbound-ip-ranges=169.254.169.254/32,10.96.0.0/12",
		"--proxy-uid=1337",
	} {
		if !slices.Contains(args, want) {
			t.Errorf("init args %q lack %q", args, want)
		}
	}
}

func TestPodsInjectLeavesAloneSayWhy(t *testing.T) {
	hostNet := appPod(nil)
	hostNet.Spec.HostNetwork = true
	for _, tc := range []struct {
		name   string
		pod    *corev1.Pod
		reason string
		warn   bool
		says   string
	}{
		{"opted out", appPod(map[string]string{AnnotationInject: "false"}), "OptedOut", false, "is false"},
		{"an inject value it does not understand", appPod(map[string]string{AnnotationInject: "yes please"}), "InvalidAnnotation", true, `"yes please" is not "true" or "false"`},
		{"a port that is not a port", appPod(map[string]string{AnnotationExcludeInboundPorts: "http"}), "InvalidAnnotation", true, AnnotationExcludeInboundPorts},
		{"a range that is not a range", appPod(map[string]string{AnnotationExcludeOutboundIPRanges: "10.0.0.0/40"}), "InvalidAnnotation", true, AnnotationExcludeOutboundIPRanges},
		{"excluding the capture port", appPod(map[string]string{AnnotationExcludeInboundPorts: "15006"}), "InvalidAnnotation", true, "inbound capture port"},
		{"host network", hostNet, "HostNetwork", true, "host's network"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := tc.pod.DeepCopy()
			skip := Inject(tc.pod, testConfig())
			if skip == nil || skip.Reason != tc.reason || skip.Warn != tc.warn || !strings.Contains(skip.Message, tc.says) {
				t.Fatalf("got %+v, want reason %s mentioning %q", skip, tc.reason, tc.says)
			}
			if !equality.Semantic.DeepEqual(tc.pod, before) {
				t.Error("the pod was changed")
			}
		})
	}
}

func TestConfigValidateNamesTheSetting(t *testing.T) {
	for field, edit := range map[string]func(*Config){
		"proxy image":     func(c *Config) { c.ProxyImage = "" },
		"init image":      func(c *Config) { c.InitImage = "" },
		"xDS address":     func(c *Config) { c.XDSAddress = "" },
		"cluster name":    func(c *Config) { c.ClusterName = "" },
		"proxy log level": func(c *Config) { c.LogLevel = "loud" },
		"XDSAddress":      func(c *Config) { c.XDSAddress = "no-port" },
	} {
		c := testConfig()
		edit(c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: got %v", field, err)
		}
	}
}

// BenchmarkInject is the injector's own work per pod (the webhook adds the
// admission round trip: see test/e2e/install's BenchmarkPodCreate).
func BenchmarkInject(b *testing.B) {
	c := testConfig()
	for b.Loop() {
		if skip := Inject(appPod(nil), c); skip != nil {
			b.Fatal(skip)
		}
	}
}

func TestASidecarWithAnIdentityGetsItsCertificateVolumeAndSpeaksTLS(t *testing.T) {
	c := testConfig()
	c.Identity = &Identity{Signer: "fleetmesh.io/workload", ServerID: "spiffe://cluster.local/ns/fleetmesh-system/sa/fleetmesh-controller"}
	pod := appPod(nil)
	if skip := Inject(pod, c); skip != nil {
		t.Fatalf("skipped: %+v", skip)
	}
	if len(pod.Spec.Volumes) != 1 || pod.Spec.Volumes[0].Projected == nil {
		t.Fatalf("volumes %+v", pod.Spec.Volumes)
	}
	sources := pod.Spec.Volumes[0].Projected.Sources
	if pc := sources[0].PodCertificate; pc == nil || pc.SignerName != "fleetmesh.io/workload" || pc.KeyPath != "key.pem" || pc.CertificateChainPath != "cert.pem" {
		t.Errorf("the podCertificate source: %+v", sources[0])
	}
	for _, key := range []string{AnnotationSDSIdentity, AnnotationSDSRoots} {
		if !strings.Contains(pod.Annotations[key], IdentityDir) {
			t.Errorf("annotation %s = %q, want SDS naming files in %s", key, pod.Annotations[key], IdentityDir)
		}
	}
	if !strings.Contains(pod.Annotations[AnnotationSDSRoots], c.Identity.ServerID) {
		t.Errorf("the roots SDS does not check the server's identity: %s", pod.Annotations[AnnotationSDSRoots])
	}
	proxy := ProxyOf(pod)
	if len(proxy.VolumeMounts) != 1 || proxy.VolumeMounts[0].MountPath != IdentityDir || !proxy.VolumeMounts[0].ReadOnly {
		t.Errorf("the proxy's mounts: %+v", proxy.VolumeMounts)
	}
	if boot := strings.Join(proxy.Args, " "); !strings.Contains(boot, "envoy.transport_sockets.tls") || !strings.Contains(boot, `"sni":"fleetmesh-controller.fleetmesh-system.svc"`) {
		t.Errorf("the bootstrap does not speak TLS to the xDS server: %s", boot)
	}
	if len(pod.Spec.Containers[0].VolumeMounts) != 0 {
		t.Error("the app mounts the sidecar's identity")
	}
}

func TestASidecarWithATokenGetsItAndTheRootsOfItsNamespace(t *testing.T) {
	c := testConfig()
	c.Identity = &Identity{Signer: "fleetmesh.io/workload", Token: true, RootsConfigMap: "fleetmesh-workload-roots"}
	pod := appPod(nil)
	if skip := Inject(pod, c); skip != nil {
		t.Fatalf("skipped: %+v", skip)
	}
	if len(pod.Spec.Volumes) != 1 || pod.Spec.Volumes[0].Projected == nil || len(pod.Spec.Volumes[0].Projected.Sources) != 2 {
		t.Fatalf("volumes %+v", pod.Spec.Volumes)
	}
	sources := pod.Spec.Volumes[0].Projected.Sources
	if tok := sources[0].ServiceAccountToken; tok == nil || tok.Audience != bootstrap.TokenAudience || tok.Path != bootstrap.TokenFile || *tok.ExpirationSeconds != 3600 {
		t.Errorf("the token source: %+v", sources[0])
	}
	if cm := sources[1].ConfigMap; cm == nil || cm.Name != "fleetmesh-workload-roots" || len(cm.Items) != 1 || cm.Items[0].Path != bootstrap.RootsFile {
		t.Errorf("the roots source: %+v", sources[1])
	}
	if _, ok := pod.Annotations[AnnotationSDSIdentity]; ok {
		t.Error("a pod with a token gets SDS files for a certificate it has not")
	}
	proxy := ProxyOf(pod)
	if len(proxy.VolumeMounts) != 1 || proxy.VolumeMounts[0].MountPath != IdentityDir || !proxy.VolumeMounts[0].ReadOnly {
		t.Errorf("the proxy's mounts: %+v", proxy.VolumeMounts)
	}
	boot := strings.Join(proxy.Args, " ")
	for _, want := range []string{"envoy.grpc_credentials.file_based_metadata", IdentityDir + "/token", `"stringValue":"fleetmesh-controller.fleetmesh-system.svc"`} {
		if !strings.Contains(boot, want) {
			t.Errorf("the bootstrap has no %s: %s", want, boot)
		}
	}
	if len(pod.Spec.Containers[0].VolumeMounts) != 0 {
		t.Error("the app mounts the sidecar's token")
	}
}

func TestAClusterThatCannotRunTheProxyAdmitsPodsAsTheyAreAndSaysWhy(t *testing.T) {
	pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}}}
	skip := Inject(pod, &Config{Unavailable: "Kubernetes v1.28.4 has no native sidecars"})
	if skip == nil || skip.Reason != "ClusterUnsupported" || !skip.Warn || skip.Message != "Kubernetes v1.28.4 has no native sidecars" {
		t.Fatalf("skip = %+v", skip)
	}
	if len(pod.Spec.InitContainers) != 0 || len(pod.Spec.Containers) != 1 {
		t.Errorf("the pod was changed: %+v", pod.Spec)
	}
}
