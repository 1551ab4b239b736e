package install

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
	"sigs.k8s.io/yaml"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
	"github.com/fleetmesh/fleetmesh/pkg/bootstrap"
	"github.com/fleetmesh/fleetmesh/pkg/cli"
	"github.com/fleetmesh/fleetmesh/pkg/inject"
	"github.com/fleetmesh/fleetmesh/pkg/pki"
	"github.com/fleetmesh/fleetmesh/pkg/signer"
	"github.com/fleetmesh/fleetmesh/test/testenv"
)

const ns = "fleetmesh-system"

func TestTheOverlaysApplyWithServerSideDryRun(t *testing.T) {
	// A server-side dry run creates nothing, so the objects in
	// fleetmesh-system need the namespace to exist already: in a cluster
	// where fleetmesh is not installed yet, create it first.
	if err := fleet.Cluster("hub").EnsureNamespace(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	for _, overlay := range []string{"member", "member-token", "control-plane"} {
		out, err := fleet.Cluster("hub").Kubectl(nil, "apply", "--dry-run=server", "-k", "manifests/"+overlay)
		if err != nil {
			t.Errorf("kubectl apply --dry-run=server -k manifests/%s: %v\n%s", overlay, err, out)
		}
	}
}

// warnings collects the warnings the API server returns (admission
// warnings, as kubectl prints them).
type warnings struct {
	mu   sync.Mutex
	list []string
}

func (w *warnings) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = append(w.list, text)
}

func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.list
	w.list = nil
	return out
}

// member is member-1 with the member overlay applied and the controller
// running as its ServiceAccount.
type member struct {
	c       client.Client
	warn    *warnings
	audit   audit
	certDir string
	// xds is the controller's ADS address, debug its debug API's.
	xds, debug string
}

func testPod(namespace, name string, annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Annotations: annotations},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "httpbin", Ports: []corev1.ContainerPort{{ContainerPort: 8080}}}}},
	}
}

// installMember applies manifests/member to a member and runs the
// controller as the manifests' ServiceAccount, its webhook on the address
// of a pod of the manifests' Deployment: the API server reaches it through
// the manifests' Service and webhook configuration. It returns once the
// webhook injects.
func installMember(tb testing.TB, ctx context.Context, name string) *member {
	tb.Helper()
	mc := fleet.Cluster(name)
	if out, err := mc.Kubectl(nil, "apply", "--server-side", "-k", "manifests/member"); err != nil {
		tb.Fatalf("kubectl apply -k manifests/member: %v\n%s", err, out)
	}
	// The federation's copy of the member's own Cluster, from which a
	// controller without --cluster-name learns its name.
	if err := mc.Client.Create(ctx, &fmv1alpha1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{fmv1alpha1.LocalClusterLabel: "true", fmv1alpha1.ManagedByLabel: fmv1alpha1.ManagedByValue}},
		Spec:       fmv1alpha1.ClusterSpec{Mirrored: true},
	}); client.IgnoreAlreadyExists(err) != nil {
		tb.Fatal(err)
	}
	m := &member{audit: newAudit(mc, ns, "fleetmesh-controller"), warn: &warnings{}, certDir: tb.TempDir()}
	ip := mc.PodIP(3)
	if err := testenv.AddAddress(ip); err != nil {
		tb.Fatal(err)
	}
	run := startController(tb, ctx, mc, ns, "fleetmesh-controller",
		"--debug-address="+ip+":15014", "--namespace="+ns, "--inject",
		"--webhook-address="+ip+":9443", "--webhook-cert-dir="+m.certDir, "--webhook-cert-check-interval=500ms",
		"--proxy-image=envoyproxy/envoy:test", "--init-image=fleetmesh-init:test", "--proxy-log-level=info",
		"--workload-signer", "--xds-tls", "--leader-elect")
	m.xds, m.debug = run.XDSAddress, run.DebugAddress
	pod, err := mc.RunPod(ctx, testenv.PodOptions{
		Namespace: ns, Name: "fleetmesh-controller-0", IP: ip, ServiceAccountName: "fleetmesh-controller",
		Labels: map[string]string{"app.kubernetes.io/name": "fleetmesh-controller"},
		Ports: []corev1.ContainerPort{
			{Name: "xds", ContainerPort: 15010}, {Name: "webhook", ContainerPort: 9443}, {Name: "debug", ContainerPort: 15014},
		},
	})
	if err != nil {
		tb.Fatal(err)
	}
	// The controller stops with the test (startController); so does its pod.
	tb.Cleanup(func() { _ = pod.Delete(context.Background()) })
	cfg := rest.CopyConfig(mc.Config)
	cfg.WarningHandler = m.warn
	cfg.QPS, cfg.Burst = 1000, 1000
	if m.c, err = client.New(cfg, client.Options{Scheme: testenv.Scheme}); err != nil {
		tb.Fatal(err)
	}
	for name, labels := range map[string]map[string]string{"app": {inject.NamespaceLabel: "enabled"}, "plain": nil} {
		if err := m.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}); client.IgnoreAlreadyExists(err) != nil {
			tb.Fatal(err)
		}
	}
	// The webhook answers once the Service has the pod's endpoint and the
	// caBundle is in place: until then pods are refused (failurePolicy
	// Fail), never admitted unmeshed.
	var last error
	err = testenv.Eventually(ctx, 30*time.Second, func(ctx context.Context) (bool, error) {
		p := testPod("app", "probe", nil)
		if last = m.c.Create(ctx, p, client.DryRunAll); last != nil {
			return false, nil
		}
		return inject.ProxyOf(p) != nil, nil
	})
	if err != nil {
		tb.Fatalf("the webhook never injected a pod: %v (last error: %v; forbidden: %v)", err, last, m.audit.Forbidden())
	}
	return m
}

func TestTheMemberOverlayInjectsPodsAsItsServiceAccount(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	m := installMember(t, ctx, "member-1")
	c, warn, a, certDir := m.c, m.warn, m.audit, m.certDir
	pod := testPod

	t.Run("a pod in a labelled namespace gets the sidecar and the init container", func(t *testing.T) {
		p := pod("app", "httpbin", nil)
		if err := c.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		if names := containerNames(p.Spec.Containers); !slices.Equal(names, []string{"app"}) {
			t.Errorf("containers %v", names)
		}
		// The proxy is a native sidecar: the API server kept its
		// restartPolicy (it drops fields it does not know).
		if names := containerNames(p.Spec.InitContainers); !slices.Equal(names, []string{inject.InitContainer, inject.ProxyContainer}) {
			t.Errorf("init containers %v", names)
		}
		if rp := inject.ProxyOf(p).RestartPolicy; rp == nil || *rp != corev1.ContainerRestartPolicyAlways {
			t.Errorf("the sidecar's restartPolicy is %v, want Always", rp)
		}
		if p.Annotations[inject.AnnotationStatus] == "" {
			t.Errorf("annotations %v", p.Annotations)
		}
		init := p.Spec.InitContainers[0]
		caps := init.SecurityContext.Capabilities.Add
		if !slices.Contains(caps, "NET_ADMIN") || !slices.Contains(init.Args, "--proxy-uid=1337") {
			t.Errorf("init container %+v", init)
		}

		// A second pass changes nothing: the injected pod, created again
		// (dry run), comes back as it went in.
		again := pod("app", "httpbin-2", nil)
		again.Spec = *p.Spec.DeepCopy()
		again.Annotations = p.Annotations
		if err := c.Create(ctx, again, client.DryRunAll); err != nil {
			t.Fatal(err)
		}
		if len(again.Spec.Containers) != 1 || len(again.Spec.InitContainers) != 2 {
			t.Errorf("re-injection changed the pod: %v / %v", containerNames(again.Spec.Containers), containerNames(again.Spec.InitContainers))
		}
		checkBootstrap(t, p)
	})
	t.Run("opted-out and unlabelled pods are untouched", func(t *testing.T) {
		for _, p := range []*corev1.Pod{
			pod("app", "opted-out", map[string]string{inject.AnnotationInject: "false"}),
			pod("plain", "unlabelled", nil),
		} {
			if err := c.Create(ctx, p); err != nil {
				t.Fatal(err)
			}
			if inject.ProxyOf(p) != nil || len(p.Spec.InitContainers) != 0 {
				t.Errorf("%s/%s was injected: %v", p.Namespace, p.Name, containerNames(p.Spec.Containers))
			}
		}
		if w := warn.take(); len(w) != 0 {
			t.Errorf("warnings for pods that opted out: %q", w)
		}
	})
	t.Run("a pod with an annotation the injector does not understand is untouched, with a warning and an event", func(t *testing.T) {
		for name, ann := range map[string]map[string]string{
			"bad-inject":   {inject.AnnotationInject: "maybe"},
			"bad-excludes": {inject.AnnotationExcludeOutboundPorts: "postgres"},
		} {
			p := pod("app", name, ann)
			if err := c.Create(ctx, p); err != nil {
				t.Fatal(err)
			}
			if inject.ProxyOf(p) != nil {
				t.Errorf("%s was injected", name)
			}
			w := warn.take()
			if len(w) != 1 || !strings.Contains(w[0], "the pod is not injected") {
				t.Errorf("%s: warnings %q", name, w)
			}
			err := testenv.Eventually(ctx, 10*time.Second, func(ctx context.Context) (bool, error) {
				var list eventsv1.EventList
				if err := c.List(ctx, &list, client.InNamespace("app")); err != nil {
					return false, err
				}
				return slices.ContainsFunc(list.Items, func(e eventsv1.Event) bool {
					return e.Regarding.Name == name && e.Reason == "SidecarNotInjected"
				}), nil
			})
			if err != nil {
				t.Errorf("no SidecarNotInjected event for %s: %v", name, err)
			}
		}
	})
	t.Run("a Deployment's pod (no name yet) that is not injected gets the event on its ReplicaSet", func(t *testing.T) {
		p := testPod("app", "", map[string]string{inject.AnnotationInject: "perhaps"})
		p.GenerateName = "web-5d8f7-"
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-5d8f7", UID: "0d2c4a5e-1111-4222-8333-944455556666"}}
		if err := c.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		if inject.ProxyOf(p) != nil {
			t.Error("injected")
		}
		_ = warn.take()
		err := testenv.Eventually(ctx, 10*time.Second, func(ctx context.Context) (bool, error) {
			var list eventsv1.EventList
			if err := c.List(ctx, &list, client.InNamespace("app")); err != nil {
				return false, err
			}
			return slices.ContainsFunc(list.Items, func(e eventsv1.Event) bool {
				return e.Regarding.Kind == "ReplicaSet" && e.Regarding.Name == "web-5d8f7" && e.Reason == "SidecarNotInjected"
			}), nil
		})
		if err != nil {
			t.Errorf("no SidecarNotInjected event on the ReplicaSet: %v", err)
		}
	})
	t.Run("discovery reports on a policy and an import", func(t *testing.T) {
		if err := c.Create(ctx, &fmv1alpha1.GlobalTrafficPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "httpbin"},
		}); err != nil {
			t.Fatal(err)
		}
		if err := c.Create(ctx, importOfNothing("app", "httpbin")); err != nil {
			t.Fatal(err)
		}
		err := testenv.Eventually(ctx, 20*time.Second, func(ctx context.Context) (bool, error) {
			gtp := &fmv1alpha1.GlobalTrafficPolicy{}
			imp := &fmv1alpha1.ServiceImport{}
			err := errors.Join(c.Get(ctx, client.ObjectKey{Namespace: "app", Name: "httpbin"}, gtp), c.Get(ctx, client.ObjectKey{Namespace: "app", Name: "httpbin"}, imp))
			return err == nil && meta.FindStatusCondition(gtp.Status.Conditions, fmv1alpha1.ConditionAccepted) != nil &&
				meta.IsStatusConditionTrue(imp.Status.Conditions, fmv1alpha1.ConditionReady), err
		})
		if err != nil {
			t.Error(err)
		}
	})
	t.Run("the workload signer answers a pod's certificate request", func(t *testing.T) {
		// A stand-in for the kubelet, which asks when a pod mounts a
		// podCertificate volume (test/e2e/realnode has the real one).
		mc := fleet.Cluster("member-1")
		if err := mc.EnsureNamespace(ctx, "identity"); err != nil {
			t.Fatal(err)
		}
		if err := mc.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "identity", Name: "reader"}}); err != nil {
			t.Fatal(err)
		}
		p, err := mc.RunPod(ctx, testenv.PodOptions{Namespace: "identity", Name: "with-identity", ServiceAccountName: "reader"})
		if err != nil {
			t.Fatal(err)
		}
		req, _, err := mc.RequestPodCertificate(ctx, p.Namespace, p.Name, signer.Name, 3600)
		if err != nil {
			t.Fatal(err)
		}
		leaf := pki.ParseCert([]byte(req.Status.CertificateChain))
		if leaf == nil || len(leaf.URIs) != 1 || leaf.URIs[0].String() != "spiffe://cluster.local/ns/identity/sa/reader" {
			t.Errorf("the request's answer: %+v", req.Status)
		}
	})
	t.Run("the gateway of the manifests connects, is configured and listens on its container port", func(t *testing.T) {
		envoy := startManifestGateway(t, ctx, m.xds)
		err := testenv.Eventually(ctx, 20*time.Second, func(ctx context.Context) (bool, error) {
			var out strings.Builder
			// The controller "pod" has no kubelet to port-forward to:
			// its debug API is reached at its address, as the admin.
			args := []string{
				"--kubeconfig", fleet.KubeconfigPath, "--context", "member-1", "proxy-status", "fleetmesh-gateway-7d9." + ns,
				"--control-plane-url", "https://" + m.debug, "--control-plane-insecure-skip-tls-verify",
			}
			if err := cli.Execute(ctx, &out, args); err != nil {
				return false, nil
			}
			return len(testenv.TableLines(out.String(), "gateway", "SYNCED")) == 1, nil
		})
		if err != nil {
			t.Fatalf("the gateway never showed SYNCED in proxy-status: %v\n%s", err, envoy.Log())
		}
		t.Run("the debug API answers whom RBAC lets read, and no one else", func(t *testing.T) {
			checkDebugAPI(t, ctx, m.debug, "fleetmesh-gateway-7d9."+ns)
		})
		listeners, err := envoy.Get("/listeners")
		// On its pod's address, as in a pod.
		if err != nil || !strings.Contains(listeners, ":8080") {
			t.Errorf("the gateway's listeners: %q %v", listeners, err)
		}
	})
	t.Run("the serving certificate is renewed and the webhook keeps injecting", func(t *testing.T) {
		secret := &corev1.Secret{}
		key := client.ObjectKey{Namespace: ns, Name: "fleetmesh-webhook-cert"}
		if err := c.Get(ctx, key, secret); err != nil {
			t.Fatal(err)
		}
		old := secret.Data["tls.crt"]
		// A certificate that no longer names the Service must be replaced.
		delete(secret.Data, "tls.crt")
		if err := c.Update(ctx, secret); err != nil {
			t.Fatal(err)
		}
		err := testenv.Eventually(ctx, 20*time.Second, func(ctx context.Context) (bool, error) {
			served, err := os.ReadFile(filepath.Join(certDir, "tls.crt"))
			if err != nil || len(served) == 0 || string(served) == string(old) {
				return false, nil
			}
			p := pod("app", "after-renewal", nil)
			if err := c.Create(ctx, p, client.DryRunAll); err != nil {
				return false, nil
			}
			return inject.ProxyOf(p) != nil, nil
		})
		if err != nil {
			t.Errorf("after renewal: %v", err)
		}
		cfg := &admissionregistrationv1.MutatingWebhookConfiguration{}
		if err := c.Get(ctx, client.ObjectKey{Name: "fleetmesh-sidecar-injector"}, cfg); err != nil || len(cfg.Webhooks[0].ClientConfig.CABundle) == 0 {
			t.Errorf("caBundle: %v", err)
		}
	})

	// Every request the controller made was allowed, and every permission
	// the manifests grant was used: one verb fewer and it would fail.
	if f := a.Forbidden(); len(f) > 0 {
		t.Errorf("the controller was refused: %q", f)
	}
	checkLeastPrivilege(t, granted(t, "member", "fleetmesh-controller"), a.Used(), perm{"patch", "events.k8s.io", "events"},
		// Leader election's events are patched only when one repeats.
		perm{"patch", "", "events"},
		// Checked by the API server on the signer's writes, not requests.
		perm{"sign", "certificates.k8s.io", "signers"}, perm{"attest", "certificates.k8s.io", "signers"},
		// Only when the workload CA is renewed (years) or its roots were
		// changed by hand.
		perm{"update", "certificates.k8s.io", "clustertrustbundles"}, perm{"update", "", "configmaps"},
		// Only when the fleet's other members all leave it: their roots'
		// trust bundle goes.
		perm{"delete", "certificates.k8s.io", "clustertrustbundles"},
		// Only when the federation writes an EndpointSlice (members on a
		// shared network): the check reads the Service it joins.
		perm{"get", "", "services"})
}

// checkLeastPrivilege says which granted permissions went unused (except
// those only rare paths need, e.g. patching an event series). "list" is
// needed wherever "watch" is: this API server streams an informer's
// initial list over the watch, an older one answers a list request.
// importOfNothing is a ServiceImport with one port and no endpoints, as a
// federation may write one.
func importOfNothing(ns, name string) *fmv1alpha1.ServiceImport {
	return &fmv1alpha1.ServiceImport{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       fmv1alpha1.ServiceImportSpec{Type: fmv1alpha1.ClusterSetIP, Ports: []fmv1alpha1.ServicePort{{Name: "http", Port: 8080, Protocol: corev1.ProtocolTCP}}},
	}
}

func checkLeastPrivilege(t *testing.T, grantedPerms, used sets.Set[perm], rare ...perm) {
	t.Helper()
	for p := range used {
		if p.Verb == "watch" {
			rare = append(rare, perm{"list", p.Group, p.Resource})
		}
	}
	sorted := func(s sets.Set[perm]) []string {
		var out []string
		for p := range s {
			out = append(out, p.String())
		}
		slices.Sort(out)
		return out
	}
	for _, p := range sorted(grantedPerms.Difference(used).Delete(rare...)) {
		t.Errorf("the manifests grant %s, which the controller never used", p)
	}
	for _, p := range sorted(used.Difference(grantedPerms)) {
		t.Errorf("the controller used %s, which the manifests do not grant", p)
	}
}

func containerNames(cs []corev1.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

// checkBootstrap checks the injected sidecar's bootstrap: its node
// identity from the downward API, interception, and the xDS address.
func checkBootstrap(t *testing.T, p *corev1.Pod) {
	t.Helper()
	b := loadBootstrap(t, *inject.ProxyOf(p), map[string]string{"POD_NAME": p.Name, "POD_NAMESPACE": p.Namespace, "SERVICE_ACCOUNT": "default", "POD_IP": "10.0.0.7"})
	md := b.GetNode().GetMetadata().GetFields()
	if b.GetNode().GetId() != "httpbin.app" || md["role"].GetStringValue() != "sidecar" || md["pod"].GetStringValue() != "httpbin" ||
		md["namespace"].GetStringValue() != "app" || md["cluster"].GetStringValue() != "member-1" || md["interception"].GetStringValue() != "iptables" {
		t.Errorf("node %v", b.GetNode())
	}
}

// loadBootstrap expands a container's --config-yaml as the kubelet would
// (its $(VAR)s from the downward API) and checks the bootstrap: proto
// validation, the real Envoy's --mode validate, the xDS address.
func loadBootstrap(t *testing.T, c corev1.Container, env map[string]string) *bootstrapv3.Bootstrap {
	t.Helper()
	i := slices.Index(c.Args, "--config-yaml")
	if i < 0 || i+1 >= len(c.Args) {
		t.Fatalf("container %s has no --config-yaml: %v", c.Name, c.Args)
	}
	for _, e := range c.Env {
		if _, ok := env[e.Name]; !ok || e.ValueFrom == nil || e.ValueFrom.FieldRef == nil {
			t.Errorf("container %s: env %s is not from the downward API", c.Name, e.Name)
		}
	}
	raw := c.Args[i+1]
	for k, v := range env {
		raw = strings.ReplaceAll(raw, "$("+k+")", v)
	}
	if strings.Contains(raw, "$(") {
		t.Errorf("container %s: the bootstrap refers to a variable the container does not define: %s", c.Name, raw)
	}
	b := &bootstrapv3.Bootstrap{}
	if err := protojson.Unmarshal([]byte(raw), b); err != nil {
		t.Fatalf("container %s: %v", c.Name, err)
	}
	if err := b.ValidateAll(); err != nil {
		t.Errorf("container %s: bootstrap: %v", c.Name, err)
	}
	xds := b.GetStaticResources().GetClusters()[0].GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
	if xds.GetAddress() != "fleetmesh-controller.fleetmesh-system.svc" || xds.GetPortValue() != 15010 {
		t.Errorf("container %s: xDS address %v", c.Name, xds)
	}
	// The identity directory the pod's volume provides, with its SDS
	// files, for Envoy to find.
	if strings.Contains(raw, inject.IdentityDir) {
		dir := t.TempDir()
		identity, roots, err := bootstrap.SDSFiles(dir, testenv.ServerSPIFFEID(ns))
		if err != nil {
			t.Fatal(err)
		}
		if err := testenv.WriteProjected(dir, map[string][]byte{bootstrap.IdentitySDSFile: identity, bootstrap.RootsSDSFile: roots}); err != nil {
			t.Fatal(err)
		}
		raw = strings.ReplaceAll(raw, inject.IdentityDir, dir)
	}
	out, err := exec.Command(testenv.EnvoyBinary(), "--mode", "validate", "--config-yaml", raw, "--disable-hot-restart").CombinedOutput()
	if err != nil {
		t.Errorf("container %s: envoy --mode validate: %v\n%s", c.Name, err, out)
	}
	return b
}

func TestTheGatewayBootstrapLoadsInEnvoy(t *testing.T) {
	gw := gatewayContainer(t)
	b := loadBootstrap(t, gw, map[string]string{"POD_NAME": "fleetmesh-gateway-7d9", "POD_NAMESPACE": ns})
	if md := b.GetNode().GetMetadata().GetFields(); md["role"].GetStringValue() != "gateway" || md["listenPort"].GetStringValue() != "8080" ||
		b.GetNode().GetId() != "fleetmesh-gateway-7d9.fleetmesh-system" {
		t.Errorf("gateway node %v", b.GetNode())
	}
}

// gatewayContainer is the Envoy container of manifests/member's
// fleetmesh-gateway Deployment.
func gatewayContainer(t *testing.T) corev1.Container {
	t.Helper()
	return gatewayPod(t).Spec.Containers[0]
}

// gatewayPod is the pod template of the manifests' gateway.
func gatewayPod(t *testing.T) corev1.PodTemplateSpec {
	t.Helper()
	for _, doc := range manifestDocs(t, "member") {
		var d appsv1.Deployment
		if err := yaml.Unmarshal([]byte(doc), &d); err != nil {
			t.Fatal(err)
		}
		if d.Kind == "Deployment" && d.Name == "fleetmesh-gateway" {
			return d.Spec.Template
		}
	}
	t.Fatal("manifests/member has no fleetmesh-gateway Deployment")
	return corev1.PodTemplateSpec{}
}

func TestOneVerbFewerIsForbidden(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	member := fleet.Cluster("member-1")
	// The manifests' ClusterRole without "patch" on globaltrafficpolicies/status.
	out, err := member.Kubectl(nil, "get", "clusterrole", "fleetmesh-controller", "-o", "json")
	if err != nil {
		// The member overlay is applied by the test above; apply it here
		// when this test runs alone.
		if out, err := member.Kubectl(nil, "apply", "--server-side", "-k", "manifests/member"); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		out, err = member.Kubectl(nil, "get", "clusterrole", "fleetmesh-controller", "-o", "json")
	}
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	_ = out
	var role struct {
		Rules []map[string]any `json:"rules"`
	}
	if err := json.Unmarshal([]byte(out), &role); err != nil {
		t.Fatal(err)
	}
	var rules []map[string]any
	for _, r := range role.Rules {
		if res, _ := r["resources"].([]any); len(res) == 1 && res[0] == "globaltrafficpolicies/status" {
			continue
		}
		rules = append(rules, r)
	}
	manifest, _ := json.Marshal(map[string]any{
		"apiVersion": "v1", "kind": "List", "items": []any{
			map[string]any{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": map[string]any{"name": "fewer", "namespace": ns}},
			map[string]any{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": map[string]any{"name": "fleetmesh-fewer"}, "rules": rules},
			map[string]any{
				"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": map[string]any{"name": "fleetmesh-fewer"},
				"roleRef":  map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "fleetmesh-fewer"},
				"subjects": []any{map[string]any{"kind": "ServiceAccount", "name": "fewer", "namespace": ns}},
			},
		},
	})
	path := filepath.Join(t.TempDir(), "fewer.json")
	if err := os.WriteFile(path, manifest, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := member.Kubectl(nil, "apply", "-f", path); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if err := member.EnsureNamespace(ctx, "fewer"); err != nil {
		t.Fatal(err)
	}
	if err := member.Client.Create(ctx, &fmv1alpha1.GlobalTrafficPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "fewer", Name: "web"},
	}); err != nil {
		t.Fatal(err)
	}
	a := newAudit(member, ns, "fewer")
	startController(t, ctx, member, ns, "fewer", "--cluster-name=member-1", "--namespace="+ns)
	err = testenv.Eventually(ctx, 20*time.Second, func(context.Context) (bool, error) {
		return slices.ContainsFunc(a.Forbidden(), func(s string) bool { return strings.HasPrefix(s, "patch fleetmesh.io/globaltrafficpolicies/status") }), nil
	})
	if err != nil {
		t.Errorf("without patch on globaltrafficpolicies/status the controller was not refused: %v (refused: %q)", err, a.Forbidden())
	}
}

func TestTheControlPlaneOverlayFederatesAsItsServiceAccount(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	hub := fleet.Cluster("hub")
	if out, err := hub.Kubectl(nil, "apply", "--server-side", "-k", "manifests/control-plane"); err != nil {
		t.Fatalf("kubectl apply -k manifests/control-plane: %v\n%s", err, out)
	}
	a := newAudit(hub, ns, "fleetmesh-controller")
	// Tokens joined with a life of 30 minutes are renewed at once.
	run := startController(t, ctx, hub, ns, "fleetmesh-controller", "--cluster-name=control-plane", "--federation", "--leader-elect",
		"--namespace="+ns, "--kubeconfig-secret-namespace="+ns, "--member-token-ttl=2h", "--member-token-renew-before=1h")

	// Discovery runs here too and reports on policies and imports (the
	// control-plane cluster may be a member of its own fleet).
	if err := hub.EnsureNamespace(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	if err := hub.Client.Create(ctx, &fmv1alpha1.GlobalTrafficPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "httpbin"}}); err != nil {
		t.Fatal(err)
	}
	if err := hub.Client.Create(ctx, importOfNothing("app", "httpbin")); err != nil {
		t.Fatal(err)
	}
	// A Cluster whose kubeconfig would run a command in the control plane
	// (whoever may write a Cluster could do that): the command never
	// runs, the Cluster says why, naming the field, and the members joined
	// beside it (below) become Ready.
	marker := filepath.Join(t.TempDir(), "the-exec-plugin-ran")
	hostile := &fmv1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "hostile"}, Spec: fmv1alpha1.ClusterSpec{GatewayHost: "10.244.0.98", Kubeconfig: fmt.Sprintf(`apiVersion: v1
kind: Config
current-context: evil
contexts: [{name: evil, context: {cluster: evil, user: evil}}]
clusters: [{name: evil, cluster: {server: "https://10.244.0.98:6443", insecure-skip-tls-verify: true}}]
users: [{name: evil, user: {exec: {apiVersion: client.authentication.k8s.io/v1, command: /bin/sh, args: [-c, "touch %s"], interactiveMode: Never}}}]
`, marker)}}
	if err := hub.Client.Create(ctx, hostile); err != nil {
		t.Fatal(err)
	}
	var said string
	waitFor(t, ctx, "the hostile Cluster says its kubeconfig is refused", func(ctx context.Context) (bool, error) {
		c := &fmv1alpha1.Cluster{}
		if err := hub.Client.Get(ctx, client.ObjectKeyFromObject(hostile), c); err != nil {
			return false, err
		}
		cond := meta.FindStatusCondition(c.Status.Conditions, fmv1alpha1.ConditionReady)
		if cond != nil {
			said = cond.Reason + ": " + cond.Message
		}
		return cond != nil && cond.Reason == fmv1alpha1.ReasonBadKubeconfig && strings.Contains(cond.Message, `spec.kubeconfig: the kubeconfig is refused: users["evil"].user.exec`), nil
	})
	t.Logf("the hostile Cluster: %s", said)

	// The operator installs fleetmesh in two members and joins them with
	// the CLI: the federation acts in them as their fleetmesh-federation
	// ServiceAccount.
	installed := map[string]*member{}
	for _, m := range []string{"member-1", "member-2"} {
		// The member's controller runs as the manifests have it: it
		// checks the EndpointSlices the federation writes there.
		installed[m] = installMember(t, ctx, m)
		fleetmesh(t, ctx, "--context", "hub", "cluster", "join", m, "--member-context", m, "--network", "flat", "--gateway-host", "10.244.0.9", "--token-ttl", "30m")
	}
	waitFor(t, ctx, "the federation reports both members Ready", func(ctx context.Context) (bool, error) {
		for _, m := range []string{"member-1", "member-2"} {
			c := &fmv1alpha1.Cluster{}
			if err := hub.Client.Get(ctx, client.ObjectKey{Name: m}, c); err != nil || !meta.IsStatusConditionTrue(c.Status.Conditions, fmv1alpha1.ConditionReady) {
				return false, client.IgnoreNotFound(err)
			}
		}
		return true, nil
	})
	// The federation tried the hostile Cluster again meanwhile (and
	// would have run its exec plugin each time).
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the hostile Cluster's exec plugin ran in the control plane (%s: %v)", marker, err)
	}
	if err := hub.Client.Delete(ctx, hostile); err != nil {
		t.Fatal(err)
	}

	// The 30-minute tokens are renewed by the federation, as the member's
	// ServiceAccount, for two hours; the members stay Ready.
	waitFor(t, ctx, "the federation renews both members' tokens", func(ctx context.Context) (bool, error) {
		var rows []cli.MemberRow
		if err := json.Unmarshal([]byte(fleetmesh(t, ctx, "--context", "hub", "cluster", "list", "-o", "json")), &rows); err != nil {
			return false, err
		}
		renewed := 0
		for _, r := range rows {
			if r.TokenExpires != nil && time.Until(r.TokenExpires.Time) > 90*time.Minute && r.Ready == "True" {
				renewed++
			}
		}
		return renewed == 2, nil
	})
	checkTokensAreRevoked(t, ctx, hub)
	if table := fleetmesh(t, ctx, "--context", "hub", "cluster", "list"); len(testenv.TableLines(table, "member-1", "True", "in 1")) != 1 {
		t.Errorf("cluster list does not show the token's expiry:\n%s", table)
	}
	var hubEvents eventsv1.EventList
	if err := hub.Client.List(ctx, &hubEvents); err != nil || !slices.ContainsFunc(hubEvents.Items, func(e eventsv1.Event) bool {
		return e.Regarding.Name == "member-1" && e.Reason == "TokenRenewed"
	}) {
		t.Errorf("no TokenRenewed event on Cluster member-1: %v", err)
	}

	// An export from member-1 reaches member-2: import, derived Service,
	// EndpointSlices (one network); an Ingress and the export's status in
	// member-1.
	m1, m2 := fleet.Cluster("member-1"), fleet.Cluster("member-2")
	if _, err := m1.RunPod(ctx, testenv.PodOptions{Namespace: "web", Name: "web-1", Labels: map[string]string{"app": "web"}, Ports: []corev1.ContainerPort{{ContainerPort: 8080}}}); err != nil {
		t.Fatal(err)
	}
	if err := m1.Client.Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "web"},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Port: 8080}}},
	}); err != nil {
		t.Fatal(err)
	}
	export := &fmv1alpha1.ServiceExport{
		ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "web"},
		Spec:       fmv1alpha1.ServiceExportSpec{Rules: []fmv1alpha1.ServiceExportRule{{PortNumber: 8080, Path: "/web", PathType: fmv1alpha1.PathTypePrefix}}},
	}
	if err := m1.Client.Create(ctx, export); err != nil {
		t.Fatal(err)
	}
	webObjects := func(ctx context.Context) (imports, services, slices, ingresses int, err error) {
		var imp fmv1alpha1.ServiceImportList
		var svc corev1.ServiceList
		var eps discoveryv1.EndpointSliceList
		var ing networkingv1.IngressList
		for _, l := range []struct {
			c    *testenv.Cluster
			list client.ObjectList
		}{{m2, &imp}, {m2, &svc}, {m2, &eps}, {m1, &ing}} {
			if err := l.c.Client.List(ctx, l.list, client.InNamespace("web")); err != nil {
				return 0, 0, 0, 0, err
			}
		}
		return len(imp.Items), len(svc.Items), len(eps.Items), len(ing.Items), nil
	}
	var state string
	err := testenv.Eventually(ctx, 30*time.Second, func(ctx context.Context) (bool, error) {
		i, s, e, g, err := webObjects(ctx)
		got := &fmv1alpha1.ServiceExport{}
		if gerr := m1.Client.Get(ctx, client.ObjectKeyFromObject(export), got); gerr != nil {
			return false, gerr
		}
		state = fmt.Sprintf("imports %d, services %d, slices %d in member-2; ingresses %d, export status %v in member-1", i, s, e, g, got.Status.Conditions)
		return i == 1 && s == 1 && e == 1 && g == 1 && meta.IsStatusConditionTrue(got.Status.Conditions, fmv1alpha1.ConditionValid), err
	})
	if err != nil {
		r1 := newAudit(m1, "fleetmesh-system", "fleetmesh-federation").Forbidden()
		r2 := newAudit(m2, "fleetmesh-system", "fleetmesh-federation").Forbidden()
		t.Fatalf("the export never reached member-2: %s; refused in member-1 %q, member-2 %q", state, r1, r2)
	}
	// Rules dropped: the Ingress goes (the export stays, so only the
	// federation can delete it).
	if err := m1.Client.Get(ctx, client.ObjectKeyFromObject(export), export); err != nil {
		t.Fatal(err)
	}
	export.Spec.Rules = nil
	if err := m1.Client.Update(ctx, export); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the Ingress of dropped rules goes", func(ctx context.Context) (bool, error) {
		_, _, _, g, err := webObjects(ctx)
		return g == 0, err
	})
	// An export of no Service is reported on the export and in an event
	// (an MCS API export: the member serves it, from manifests/member).
	ghost := &mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "ghost"}}
	if err := m1.Client.Create(ctx, ghost); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "an event says the ghost export has no Service", func(ctx context.Context) (bool, error) {
		var list eventsv1.EventList
		if err := m1.Client.List(ctx, &list, client.InNamespace("web")); err != nil {
			return false, err
		}
		return slices.ContainsFunc(list.Items, func(e eventsv1.Event) bool {
			return e.Regarding.Name == "ghost" && e.Reason == fmv1alpha1.ReasonNoService
		}), nil
	})
	// Withdrawn, and a member leaving: what they contributed goes.
	for _, e := range []client.Object{export, ghost} {
		if err := m1.Client.Delete(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, ctx, "the withdrawn export leaves nothing behind", func(ctx context.Context) (bool, error) {
		i, s, e, g, err := webObjects(ctx)
		return i+s+e+g == 0, err
	})
	fleetmesh(t, ctx, "--context", "hub", "cluster", "leave", "member-2")
	waitFor(t, ctx, "member-1 forgets member-2", func(ctx context.Context) (bool, error) {
		err := m1.Client.Get(ctx, client.ObjectKey{Name: "member-2"}, &fmv1alpha1.Cluster{})
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	})

	// Its debug API knows callers and refuses those RBAC does not allow.
	checkRefusesAStranger(t, ctx, hub, run.DebugAddress)

	// Leader election renews its lease (an update) every few seconds.
	waitFor(t, ctx, "the lease is renewed", func(context.Context) (bool, error) {
		return a.Used().Has(perm{"update", "coordination.k8s.io", "leases"}), nil
	})
	if f := a.Forbidden(); len(f) > 0 {
		t.Errorf("the controller was refused: %q", f)
	}
	checkLeastPrivilege(t, granted(t, "control-plane", "fleetmesh-controller"), a.Used(),
		perm{"patch", "events.k8s.io", "events"}, perm{"patch", "", "events"})

	// In the members, the API servers' audit logs say what the federation
	// did as its ServiceAccount.
	used := sets.New[perm]()
	for _, m := range []*testenv.Cluster{m1, m2} {
		fed := newAudit(m, "fleetmesh-system", "fleetmesh-federation")
		u, refused := fed.Used(), fed.Forbidden()
		if len(refused) > 0 {
			t.Errorf("the federation was refused in %s: %q", m.Name, refused)
		}
		used = used.Union(u)
	}
	// Server-side apply is a patch in the log, but one that creates the
	// object is authorized for create as well (without it: refused).
	rare := []perm{{"patch", "events.k8s.io", "events"}}
	for p := range used {
		if p.Verb == "patch" && !strings.Contains(p.Resource, "/") {
			rare = append(rare, perm{"create", p.Group, p.Resource})
		}
	}
	checkLeastPrivilege(t, granted(t, "member", "fleetmesh-federation"), used, rare...)

	// (After reading the audit logs: this refusal is meant.) explain
	// through the hub uses the federation's identity, which may not reach
	// the member's controller: it says to use the member's own context,
	// which works (the controller "pod" has no kubelet to port-forward
	// to: its debug API is reached at its address).
	var explainOut strings.Builder
	err = cli.Execute(ctx, &explainOut, []string{"--kubeconfig", fleet.KubeconfigPath, "--context", "hub", "explain", "kubernetes.default", "--from-cluster", "member-1"})
	if err == nil || !strings.Contains(err.Error(), "run explain with member-1's own context") {
		t.Errorf("explain through the federation's identity: %v", err)
	}
	if out := fleetmesh(t, ctx, "--context", "member-1", "explain", "kubernetes.default", "--from-cluster", "member-1",
		"--control-plane-url", "https://"+installed["member-1"].debug, "--control-plane-insecure-skip-tls-verify"); !strings.Contains(out, "kubernetes.default from member-1 (no GlobalTrafficPolicy: Locality)") {
		t.Errorf("explain from the member's context:\n%s", out)
	}
}

// fleetmesh runs the CLI with the fleet's kubeconfig.
func fleetmesh(t *testing.T, ctx context.Context, args ...string) string {
	t.Helper()
	var out strings.Builder
	if err := cli.Execute(ctx, &out, append([]string{"--kubeconfig", fleet.KubeconfigPath}, args...)); err != nil {
		t.Fatalf("fleetmesh %v: %v\n%s", args, err, out.String())
	}
	return out.String()
}

func waitFor(t *testing.T, ctx context.Context, what string, cond func(context.Context) (bool, error)) {
	t.Helper()
	if err := testenv.Eventually(ctx, 30*time.Second, cond); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// BenchmarkPodCreate measures what injection adds to creating a pod: the
// API server's round trip to the webhook (through the Service, TLS) and
// the patch (server-side dry run: nothing is stored).
func BenchmarkPodCreate(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	m := installMember(b, ctx, "member-1")
	for _, tc := range []struct{ name, namespace string }{{"injected", "app"}, {"not-injected", "plain"}} {
		b.Run(tc.name, func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				p := testPod(tc.namespace, fmt.Sprintf("bench-%d", i), nil)
				if err := m.c.Create(ctx, p, client.DryRunAll); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestInjectionWithACertificateFromElsewhere runs the webhook with
// --manage-webhook-certs=false on a certificate someone else made (here
// envtest, as cert-manager would in a cluster), the manifests' webhook
// configuration installed by envtest's webhook install options.
func TestInjectionWithACertificateFromElsewhere(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := fleet.Cluster("member-3")
	w := c.Webhooks
	run, err := c.StartControlPlane(ctx, testenv.ControlPlaneOptions{Args: []string{
		"--cluster-name=member-3", "--namespace=" + ns, "--inject", "--manage-webhook-certs=false",
		fmt.Sprintf("--webhook-address=%s:%d", w.LocalServingHost, w.LocalServingPort), "--webhook-cert-dir=" + w.LocalServingCertDir,
		"--proxy-image=envoyproxy/envoy:test", "--init-image=fleetmesh-init:test", "--proxy-log-level=info",
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = run.Stop() }()
	if err := c.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "app", Labels: map[string]string{inject.NamespaceLabel: "enabled"}}}); err != nil {
		t.Fatal(err)
	}
	var p *corev1.Pod
	err = testenv.Eventually(ctx, 20*time.Second, func(ctx context.Context) (bool, error) {
		p = testPod("app", "httpbin", nil)
		if err := c.Client.Create(ctx, p); err != nil {
			return false, nil // the webhook server is starting
		}
		return true, nil
	})
	if err != nil || inject.ProxyOf(p) == nil {
		t.Fatalf("not injected: %v %v", err, p)
	}
	if err := c.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "fleetmesh-webhook-cert"}, &corev1.Secret{}); !apierrors.IsNotFound(err) {
		t.Errorf("with --manage-webhook-certs=false the controller issued a certificate anyway: %v", err)
	}
}

// startManifestGateway runs the Envoy of manifests/gateway as its pod would
// (arguments, downward API values, its identity volume's files for a
// stand-in pod fleetmesh-gateway-7d9 whose certificate the member's signer
// issued), pointed at xds instead of the fleetmesh-controller Service,
// with its admin on a free port and its identity in a directory of its
// own: the only changes.
func startManifestGateway(t *testing.T, ctx context.Context, xds string) *testenv.Envoy {
	t.Helper()
	const podName = "fleetmesh-gateway-7d9"
	mc := fleet.Cluster("member-1")
	tmpl := gatewayPod(t)
	// The SDS files the manifests' annotations hold are what the
	// bootstrap package writes for the identity directory.
	const identityDir = "/var/run/fleetmesh/identity"
	serverID := testenv.ServerSPIFFEID(ns)
	identity, roots, err := bootstrap.SDSFiles(identityDir, serverID)
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string][]byte{inject.AnnotationSDSIdentity: identity, inject.AnnotationSDSRoots: roots} {
		var got, wanted discoveryv3.DiscoveryResponse
		if err := errors.Join(protojson.Unmarshal([]byte(tmpl.Annotations[key]), &got), protojson.Unmarshal(want, &wanted)); err != nil || !proto.Equal(&got, &wanted) {
			t.Fatalf("the gateway's annotation %s is not what bootstrap.SDSFiles writes (%v):\n%s", key, err, want)
		}
	}
	if _, err := mc.RunPod(ctx, testenv.PodOptions{Namespace: ns, Name: podName, ServiceAccountName: tmpl.Spec.ServiceAccountName}); err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{}
	if err := mc.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: signer.RootsConfigMap}, cm); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, err := mc.WriteIdentity(ctx, ns, podName, signer.Name, dir, func(key, chain []byte) (map[string][]byte, error) {
		return bootstrap.IdentityFiles(dir, serverID, key, chain, []byte(cm.Data["roots.pem"]))
	}); err != nil {
		t.Fatal(err)
	}
	args := tmpl.Spec.Containers[0].Args
	i := slices.Index(args, "--config-yaml")
	if i < 0 {
		t.Fatalf("no --config-yaml in %v", args)
	}
	host, port, _ := strings.Cut(xds, ":")
	admin, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	raw := strings.NewReplacer(
		"$(POD_NAME)", podName, "$(POD_NAMESPACE)", ns,
		`"address":"fleetmesh-controller.fleetmesh-system.svc","portValue":15010`, `"address":"`+host+`","portValue":`+port,
		`"portValue":15000`, fmt.Sprintf(`"portValue":%d`, admin),
		identityDir, dir,
	).Replace(args[i+1])
	e, err := testenv.StartEnvoy("manifest-gateway", []byte(raw), admin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Stop() })
	if err := e.WaitReady(ctx, 30*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, e.Log())
	}
	return e
}
