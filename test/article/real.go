package article

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
	"github.com/fleetmesh/fleetmesh/pkg/inject"
	"github.com/fleetmesh/fleetmesh/test/testenv"
)

// RealFleet is the article's fleet in real pods: four clusters with a real
// node each (testenv.FleetOptions.RealNodes), fleetmesh installed on them
// with `kubectl apply -k manifests/control-plane` and `manifests/member`
// from the images built here, the members joined with `fleetmesh cluster
// join`, and the article's applications applied from its own YAML. Every
// call the article makes with curl is made from the curl pod, by name,
// and captured by its sidecar. It must run inside the test network, as
// root.
type RealFleet struct {
	Objects
	// CLI is the built fleetmesh command.
	CLI string
	// Gateways are the members' gateway addresses (the fleetmesh-gateway
	// Service's LoadBalancer address, port 80), by cluster.
	Gateways map[string]string
	// CurlPod is the curl pod in cluster-2, set by StartCurl.
	CurlPod string

	grpcClientPod string
}

// RealOptions shape the fleet in real pods.
type RealOptions struct {
	// Flat puts the members on one network: their pods reach each other.
	Flat bool
	// Progress hears each stage of the start, if set.
	Progress func(format string, args ...any)
}

// SystemNamespace is where the overlays install fleetmesh.
const SystemNamespace = "fleetmesh-system"

// StartReal starts the fleet, installs fleetmesh and joins the members.
func StartReal(ctx context.Context, o RealOptions) (*RealFleet, error) {
	say := o.Progress
	if say == nil {
		say = func(string, ...any) {}
	}
	refs, err := testenv.ManifestImages()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	cli, err := testenv.Binary("fleetmesh")
	if err != nil {
		return nil, err
	}
	// Built once per process; the nodes load them.
	if _, err := testenv.NodeImages(refs); err != nil {
		return nil, err
	}
	say("built fleetmesh's binaries and images (%s, %s and the init image) in %s", refs.Controller, refs.Proxy, time.Since(start).Round(100*time.Millisecond))
	opts := testenv.FleetOptions{Clusters: append([]string{"control-plane"}, Members...), RealNodes: true, Images: refs}
	if o.Flat {
		opts.Networks = map[string]string{}
		for _, m := range Members {
			opts.Networks[m] = "flat"
		}
	}
	start = time.Now()
	say("starting 4 clusters, each an API server, controller manager, scheduler and a real node (containerd, kubelet, kube-proxy, CoreDNS) ...")
	tf, err := testenv.StartFleet(ctx, opts)
	if err != nil {
		return nil, err
	}
	say("  nodes Ready in %s", time.Since(start).Round(100*time.Millisecond))
	f := &RealFleet{Objects: Objects{tf}, CLI: cli, Gateways: map[string]string{}}
	if err := f.install(ctx, o, say); err != nil {
		_ = tf.Stop()
		return nil, err
	}
	return f, nil
}

func (f *RealFleet) install(ctx context.Context, o RealOptions, say func(string, ...any)) error {
	start := time.Now()
	say("$ kubectl --context control-plane apply -k manifests/control-plane")
	if out, err := f.Cluster("control-plane").Kubectl(nil, "apply", "--server-side", "-k", "manifests/control-plane"); err != nil {
		return fmt.Errorf("kubectl apply -k manifests/control-plane: %w\n%s", err, out)
	}
	for _, m := range Members {
		say("$ kubectl --context %s apply -k manifests/member", m)
		if out, err := f.Cluster(m).Kubectl(nil, "apply", "--server-side", "-k", "manifests/member"); err != nil {
			return fmt.Errorf("kubectl apply -k manifests/member in %s: %w\n%s", m, err, out)
		}
	}
	if err := f.Cluster("control-plane").WaitAvailable(ctx, SystemNamespace, "fleetmesh-controller", 2); err != nil {
		return err
	}
	for _, m := range Members {
		ip, err := f.Cluster(m).LoadBalancerIP(ctx, SystemNamespace, "fleetmesh-gateway")
		if err != nil {
			return err
		}
		f.Gateways[m] = net.JoinHostPort(ip, "80")
		args := []string{"--context", "control-plane", "cluster", "join", m, "--member-context", m, "--gateway-host", ip, "--gateway-port", "80"}
		if o.Flat {
			args = append(args, "--network", "flat")
		}
		say("$ fleetmesh %s", strings.Join(args, " "))
		if out, err := f.Fleetmesh(ctx, args...); err != nil {
			return err
		} else {
			say("%s", indent(out))
		}
	}
	// A member's controllers are Ready once the federation has told them
	// which cluster they serve and they have published its mesh.
	var wg sync.WaitGroup
	errs := make([]error, len(Members))
	for i, m := range Members {
		wg.Go(func() {
			c := f.Cluster(m)
			errs[i] = errors.Join(c.WaitAvailable(ctx, SystemNamespace, "fleetmesh-controller", 2), c.WaitAvailable(ctx, SystemNamespace, "fleetmesh-gateway", 2))
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	err := testenv.Eventually(ctx, time.Minute, func(ctx context.Context) (bool, error) {
		var list fmv1alpha1.ClusterList
		if err := f.Cluster("control-plane").Client.List(ctx, &list); err != nil {
			return false, err
		}
		ready := 0
		for _, c := range list.Items {
			if cond := findCondition(c.Status.Conditions, "Ready"); cond != nil && cond.Status == metav1.ConditionTrue {
				ready++
			}
		}
		return ready == len(Members), fmt.Errorf("%d of %d members Ready", ready, len(Members))
	})
	if err != nil {
		out, _ := f.Fleetmesh(ctx, "--context", "control-plane", "cluster", "list")
		return fmt.Errorf("the members never became Ready: %w\n%s", err, out)
	}
	out, _ := f.Fleetmesh(ctx, "--context", "control-plane", "cluster", "list")
	say("$ fleetmesh --context control-plane cluster list\n%s", indent(out))
	say("  fleetmesh installed and the members joined in %s", time.Since(start).Round(100*time.Millisecond))
	return nil
}

func findCondition(conds []metav1.Condition, t string) *metav1.Condition {
	for i := range conds {
		if conds[i].Type == t {
			return &conds[i]
		}
	}
	return nil
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ")
}

// Fleetmesh runs the built fleetmesh command with the fleet's kubeconfig
// and returns its output; its error carries the output.
func (f *RealFleet) Fleetmesh(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, f.CLI, append([]string{"--kubeconfig", f.KubeconfigPath}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("fleetmesh %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// GatewayAddress is a member's gateway, host:port.
func (f *RealFleet) GatewayAddress(cluster string) string { return f.Gateways[cluster] }

// CurlProxy is the curl pod's sidecar, as the CLI names proxies.
func (f *RealFleet) CurlProxy() string { return f.CurlPod + ".curl" }

// httpbinYAML is the article's httpbin: a Deployment answering with the
// message and its Services, with the test's echo image where the article
// runs pipy.
const httpbinYAML = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: httpbin
  labels:
    app: pipy
spec:
  replicas: 1
  selector:
    matchLabels:
      app: pipy
  template:
    metadata:
      labels:
        app: pipy
    spec:
      containers:
      - name: pipy
        image: %[1]s
        ports:
        - containerPort: 8080
        env:
        - name: BODY
          value: %[2]q
---
apiVersion: v1
kind: Service
metadata:
  name: httpbin
spec:
  ports:
  - port: 8080
    targetPort: 8080
    protocol: TCP
  selector:
    app: pipy
---
apiVersion: v1
kind: Service
metadata:
  name: httpbin-%[3]s
spec:
  ports:
  - port: 8080
    targetPort: 8080
    protocol: TCP
  selector:
    app: pipy
`

// curlYAML is the article's curl client, with the echo image (its `get`
// is the curl) where the article runs curlimages/curl.
const curlYAML = `apiVersion: v1
kind: ServiceAccount
metadata:
  name: curl
---
apiVersion: v1
kind: Service
metadata:
  name: curl
  labels:
    app: curl
    service: curl
spec:
  ports:
  - name: http
    port: 80
  selector:
    app: curl
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: curl
spec:
  replicas: 1
  selector:
    matchLabels:
      app: curl
  template:
    metadata:
      labels:
        app: curl
    spec:
      serviceAccountName: curl
      containers:
      - name: curl
        image: %s
        env:
        - name: PORT
          value: "80"
`

// meshedNamespace is the article's `kubectl create namespace` and `osm
// namespace add`: a namespace whose pods get the sidecar.
func meshedNamespace(ctx context.Context, c *testenv.Cluster, name string) error {
	ns := &corev1.Namespace{}
	err := c.Client.Get(ctx, client.ObjectKey{Name: name}, ns)
	if err != nil {
		ns = &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if err := c.Client.Create(ctx, ns); err != nil {
			return fmt.Errorf("create namespace %s in %s: %w", name, c.Name, err)
		}
	}
	if ns.Labels == nil {
		ns.Labels = map[string]string{}
	}
	ns.Labels[inject.NamespaceLabel] = "enabled"
	return c.Client.Update(ctx, ns)
}

// apply is the article's `kubectl apply -n ns -f -` and its `kubectl wait`
// for the Deployment name.
//
// kubectl apply reads an object, then creates it if it found none: a
// Service the federation derives meanwhile (the cluster imports the
// service from another member until it exports its own) makes the create
// fail with AlreadyExists. A user applies again, and so does this; the
// second apply takes the Service over.
func apply(ctx context.Context, c *testenv.Cluster, ns, yaml, deployment string) error {
	for attempt := 1; ; attempt++ {
		out, err := c.Kubectl(strings.NewReader(yaml), "apply", "-n", ns, "-f", "-")
		if err == nil {
			break
		}
		if attempt == 3 || !strings.Contains(out, "AlreadyExists") && !strings.Contains(out, "already exists") {
			return fmt.Errorf("kubectl apply -n %s in %s: %w\n%s", ns, c.Name, err, out)
		}
	}
	return c.WaitAvailable(ctx, ns, deployment, 1)
}

// DeployMeshedHTTPBin is the article's step 1 in a member: httpbin in the
// meshed namespace httpbin, answering body.
func (f *RealFleet) DeployMeshedHTTPBin(ctx context.Context, cluster, body string) error {
	c := f.Cluster(cluster)
	if err := meshedNamespace(ctx, c, "httpbin"); err != nil {
		return err
	}
	return apply(ctx, c, "httpbin", fmt.Sprintf(httpbinYAML, testenv.EchoImage, body, cluster), "httpbin")
}

// DeployLocalHTTPBin is the article's step 4: httpbin applied in cluster-2
// (its Services over the ones fleetmesh derived). Stop deletes it.
func (f *RealFleet) DeployLocalHTTPBin(ctx context.Context) (Stopper, error) {
	c := f.Cluster("cluster-2")
	if err := meshedNamespace(ctx, c, "httpbin"); err != nil {
		return nil, err
	}
	if err := apply(ctx, c, "httpbin", fmt.Sprintf(httpbinYAML, testenv.EchoImage, "Hi, I am from cluster-2!\n", "cluster-2"), "httpbin"); err != nil {
		return nil, err
	}
	return deleteDeployment(c, "httpbin", "httpbin"), nil
}

// deleteDeployment is a Stopper that deletes the Deployment ns/name (its
// pods go as Kubernetes deletes them).
func deleteDeployment(c *testenv.Cluster, ns, name string) Stopper {
	return stopFunc(func(context.Context) error {
		if out, err := c.Kubectl(nil, "-n", ns, "delete", "deployment", name, "--wait=false"); err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		return nil
	})
}

// Stopper is something deployed that a step takes away.
type Stopper interface {
	Stop(ctx context.Context) error
}

type stopFunc func(ctx context.Context) error

func (s stopFunc) Stop(ctx context.Context) error { return s(ctx) }

// StartCurl is the article's curl client in the meshed namespace curl of
// cluster-2.
func (f *RealFleet) StartCurl(ctx context.Context) error {
	pod, err := deployOne(ctx, f.Cluster("cluster-2"), "curl", true, fmt.Sprintf(curlYAML, testenv.EchoImage), "curl")
	f.CurlPod = pod
	return err
}

// Curl is the article's `kubectl exec curl -c curl -- curl -s URL`, n
// times with interval between calls: one line per call, "<status> <first
// line of the body>" or "error <why>".
func (f *RealFleet) Curl(ctx context.Context, url string, n int, interval time.Duration) ([]string, error) {
	return Calls(f.Cluster("cluster-2"), "curl", f.CurlPod, "curl", url, n, interval)
}

// Calls makes n calls to url from a container of the echo image (its
// `get`), with interval between them: one line per call, "<status>
// <first line of the body>" or "error <why>".
func Calls(c *testenv.Cluster, ns, pod, container, url string, n int, interval time.Duration) ([]string, error) {
	out, err := echoIn(c, ns, pod, container, "get", "-n", fmt.Sprint(n), "-interval", interval.String(), url)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != n {
		return lines, fmt.Errorf("kubectl exec %s/%s in %s: %d answers for %d calls:\n%s", ns, pod, c.Name, len(lines), n, out)
	}
	return lines, nil
}

// echoIn runs the echo image's command with args in a container.
func echoIn(c *testenv.Cluster, ns, pod, container string, args ...string) (string, error) {
	out, err := c.Kubectl(nil, append([]string{"-n", ns, "exec", pod, "-c", container, "--", "/echo"}, args...)...)
	if err != nil {
		return out, fmt.Errorf("kubectl exec %s/%s in %s: %w: %s", ns, pod, c.Name, err, out)
	}
	return out, nil
}

// CurlService calls http://<service>.httpbin:8080/ n times from the curl
// pod: the count of answers by cluster, and "failed" for the rest.
func (f *RealFleet) CurlService(ctx context.Context, service string, n int) map[string]int {
	lines, err := f.Curl(ctx, "http://"+service+".httpbin:8080/", n, 0)
	counts := map[string]int{}
	if err != nil {
		counts["failed"] = n
		return counts
	}
	return CountAnswers(lines)
}

// CountAnswers counts the lines of Curl by the cluster that answered, and
// "failed" for errors and non-2xx answers.
func CountAnswers(lines []string) map[string]int {
	counts := map[string]int{}
	for _, l := range lines {
		if m := fromCluster.FindStringSubmatch(l); m != nil && strings.HasPrefix(l, "200 ") {
			counts[m[1]]++
		} else {
			counts["failed"]++
		}
	}
	return counts
}

// CurlHTTPBin is the article's curl http://httpbin.httpbin:8080/, n times.
func (f *RealFleet) CurlHTTPBin(ctx context.Context, n int) map[string]int {
	return f.CurlService(ctx, "httpbin", n)
}

// WaitRouted waits until the curl pod's sidecar routes httpbin and answers
// 503 (no healthy upstream) for want of a local endpoint.
func (f *RealFleet) WaitRouted(ctx context.Context) error {
	return testenv.Eventually(ctx, time.Minute, func(ctx context.Context) (bool, error) {
		lines, err := f.Curl(ctx, "http://httpbin.httpbin:8080/", 2, 0)
		return err == nil && strings.HasPrefix(lines[1], "503 "), err
	})
}

// Within repeats 30 calls to httpbin until ok holds for them or the
// timeout passes, and returns the last counts.
func (f *RealFleet) Within(ctx context.Context, timeout time.Duration, ok func(map[string]int) bool) (map[string]int, error) {
	return within(ctx, timeout, f.CurlHTTPBin, ok)
}

// grpcbinYAML is grpcbin: the echo image's gRPC TestService on port 9090,
// answering its cluster's name.
const grpcbinYAML = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: grpcbin
spec:
  replicas: 1
  selector:
    matchLabels:
      app: grpcbin
  template:
    metadata:
      labels:
        app: grpcbin
    spec:
      containers:
      - name: grpcbin
        image: %[1]s
        ports:
        - name: grpc
          containerPort: 9090
        env:
        - name: MESSAGE
          value: %[2]s
        - name: GRPC_PORT
          value: "9090"
---
apiVersion: v1
kind: Service
metadata:
  name: grpcbin
spec:
  ports:
  - name: grpc
    port: 9090
    targetPort: 9090
  selector:
    app: grpcbin
`

// DeployGRPCBin runs grpcbin in the meshed namespace httpbin of a member,
// exported when export is set; in cluster-2 its Service takes over the one
// fleetmesh derived. Stop deletes the Deployment.
func (f *RealFleet) DeployGRPCBin(ctx context.Context, cluster string, export bool) (Stopper, error) {
	c := f.Cluster(cluster)
	if err := meshedNamespace(ctx, c, "httpbin"); err != nil {
		return nil, err
	}
	if err := apply(ctx, c, "httpbin", fmt.Sprintf(grpcbinYAML, testenv.EchoImage, cluster), "grpcbin"); err != nil {
		return nil, err
	}
	if export {
		if err := c.Client.Create(ctx, &fmv1alpha1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: "httpbin", Name: "grpcbin"}}); err != nil {
			return nil, err
		}
	}
	return deleteDeployment(c, "httpbin", "grpcbin"), nil
}

// grpcClientYAML is a proxyless grpc-go client in cluster-2, outside the
// mesh: its xDS bootstrap names the controller's Service and the role
// grpc, and authenticates with the pod's workload certificate.
const grpcClientYAML = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: grpc-client
spec:
  replicas: 1
  selector:
    matchLabels:
      app: grpc-client
  template:
    metadata:
      labels:
        app: grpc-client
    spec:
      containers:
      - name: client
        image: %s
        env:
        - name: POD_NAME
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        # The bootstrap of docs/workload-identity.md: TLS to the
        # controller with the pod's workload certificate.
        - name: GRPC_XDS_BOOTSTRAP_CONFIG
          value: >-
            {"xds_servers": [{"server_uri": "fleetmesh-controller.fleetmesh-system.svc:15010", "server_features": ["xds_v3"],
            "channel_creds": [{"type": "tls", "config": {"ca_certificate_file": "/var/run/fleetmesh/identity/roots.pem",
            "certificate_file": "/var/run/fleetmesh/identity/cert.pem", "private_key_file": "/var/run/fleetmesh/identity/key.pem"}}]}],
            "node": {"id": "$(POD_NAME).grpc-client", "metadata": {"role": "grpc", "namespace": "grpc-client", "pod": "$(POD_NAME)", "serviceAccount": "default"}}}
        volumeMounts:
        - name: identity
          mountPath: /var/run/fleetmesh/identity
          readOnly: true
      volumes:
      - name: identity
        projected:
          sources:
          - podCertificate:
              signerName: fleetmesh.io/workload
              keyType: ECDSAP256
              keyPath: key.pem
              certificateChainPath: cert.pem
          - clusterTrustBundle:
              signerName: fleetmesh.io/workload
              labelSelector: {}
              path: roots.pem
`

// StartGRPCClient runs the proxyless client in cluster-2.
func (f *RealFleet) StartGRPCClient() error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pod, err := deployOne(ctx, f.Cluster("cluster-2"), "grpc-client", false, fmt.Sprintf(grpcClientYAML, testenv.EchoImage), "grpc-client")
	f.grpcClientPod = pod
	return err
}

// GRPCCalls makes n calls from the proxyless client in one channel: the
// count of answers by cluster, or the status code of a failed call.
func (f *RealFleet) GRPCCalls(ctx context.Context, n int) map[string]int {
	return f.grpcCalls(ctx, "grpc-client", f.grpcClientPod, "client", "xds:///"+grpcTarget, n)
}

// SidecarGRPCCalls makes n gRPC calls from the curl pod to
// grpcbin.httpbin:9090, through its sidecar.
func (f *RealFleet) SidecarGRPCCalls(ctx context.Context, n int) map[string]int {
	return f.grpcCalls(ctx, "curl", f.CurlPod, "curl", "grpcbin.httpbin:9090", n)
}

func (f *RealFleet) grpcCalls(ctx context.Context, ns, pod, container, target string, n int) map[string]int {
	counts := map[string]int{}
	out, err := echoIn(f.Cluster("cluster-2"), ns, pod, container, "grpc-call", "-n", fmt.Sprint(n), target)
	if err != nil {
		counts["exec failed"] = n
		return counts
	}
	for line := range strings.Lines(out) {
		if what, ok := strings.CutPrefix(strings.TrimSpace(line), "OK "); ok {
			counts[what]++
		} else if code, ok := strings.CutPrefix(strings.TrimSpace(line), "error "); ok {
			counts[code]++
		}
	}
	return counts
}

// WithinGRPC repeats 20 proxyless calls until ok holds for them, then
// counts n calls.
func (f *RealFleet) WithinGRPC(ctx context.Context, timeout time.Duration, n int, ok func(map[string]int) bool) (map[string]int, error) {
	return withinGRPC(ctx, timeout, n, f.GRPCCalls, ok)
}

// deployOne applies a one-replica Deployment named and labelled app (its
// namespace meshed or not) and returns its Ready pod.
func deployOne(ctx context.Context, c *testenv.Cluster, ns string, meshed bool, yaml, app string) (string, error) {
	if meshed {
		if err := meshedNamespace(ctx, c, ns); err != nil {
			return "", err
		}
	} else if err := c.EnsureNamespace(ctx, ns); err != nil {
		return "", err
	}
	if err := apply(ctx, c, ns, yaml, app); err != nil {
		return "", err
	}
	return readyPod(ctx, c, ns, app)
}

// readyPod is the name of a Ready pod of the Deployment's app label.
func readyPod(ctx context.Context, c *testenv.Cluster, ns, app string) (string, error) {
	var pods corev1.PodList
	if err := c.Client.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{"app": app}); err != nil {
		return "", err
	}
	for _, p := range pods.Items {
		if testenv.PodReady(&p) {
			return p.Name, nil
		}
	}
	return "", fmt.Errorf("no Ready %s pod in %s/%s", app, c.Name, ns)
}
