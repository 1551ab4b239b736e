// Package intercept runs an injected pod for real: the pod gets its own
// network namespace, the injector's init container arguments load the
// iptables rules there (fleetmesh-init), and the injector's Envoy
// arguments start the real Envoy as uid 1337, configured by a fleetmesh
// control plane over ADS. The app then calls a Service by its ClusterIP,
// which nothing routes but the sidecar; a connection to an address outside
// the mesh passes through; a call into the pod reaches the app through
// the sidecar's inbound side. It needs root (network namespaces,
// iptables) and skips, saying so, without it.
package intercept

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fleetmesh/fleetmesh/pkg/inject"
	"github.com/fleetmesh/fleetmesh/pkg/redirect"
	"github.com/fleetmesh/fleetmesh/test/testenv"
)

const helperEnv = "FLEETMESH_INTERCEPT_HELPER"

var fleet *testenv.Fleet

func TestMain(m *testing.M) {
	if h := os.Getenv(helperEnv); h != "" {
		if err := helper(strings.Split(h, "\x1f")); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if os.Geteuid() != 0 {
		os.Exit(m.Run()) // the test says why it skips
	}
	testenv.MainWithFleet(m, testenv.FleetOptions{Clusters: []string{"cluster-1"}}, &fleet)
}

// helper runs inside the pod's network namespace: the init container, the
// app's server and its client.
func helper(args []string) error {
	switch args[0] {
	case "init": // the init container: fleetmesh-init with the injected args
		cmd := redirect.NewCommand()
		cmd.SetArgs(args[1:])
		return cmd.Execute()
	case "serve": // serve ADDR NAME: answer "NAME, called from <remote ip>"
		l, err := net.Listen("tcp", args[1])
		if err != nil {
			return err
		}
		fmt.Println("ready")
		return http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			host, _, _ := net.SplitHostPort(r.RemoteAddr)
			_, _ = fmt.Fprintf(w, "%s, called from %s", args[2], host)
		}))
	case "get": // get URL HOST: GET with that Host header, print the body
		req, err := http.NewRequest(http.MethodGet, args[1], nil)
		if err != nil {
			return err
		}
		req.Host = args[2]
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
		if err != nil {
			return err
		}
		defer func() { _ = resp.Body.Close() }()
		body, err := io.ReadAll(resp.Body)
		fmt.Printf("%d %s", resp.StatusCode, body)
		return err
	}
	return fmt.Errorf("unknown helper %q", args[0])
}

type podNetns struct {
	t    *testing.T
	name string
}

func (p *podNetns) run(args ...string) {
	p.t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		p.t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// helperCmd runs the test binary as a helper in the pod's namespace.
func (p *podNetns) helperCmd(args ...string) *exec.Cmd {
	exe, err := os.Executable()
	if err != nil {
		p.t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", p.name, exe)
	cmd.Env = append(os.Environ(), helperEnv+"="+strings.Join(args, "\x1f"))
	return cmd
}

func TestAnInjectedPodsTrafficGoesThroughItsSidecar(t *testing.T) {
	if fleet == nil {
		t.Skip("skipped: an injected pod needs root here (network namespaces, iptables)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := fleet.Cluster("cluster-1")
	for _, bin := range []string{"iptables-restore", "setpriv"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("skipped: %s is not installed (apt-get install iptables util-linux)", bin)
		}
	}

	// The pod's own network namespace, joined to the test network by a
	// veth pair: the pod is 10.251.0.2, the test network's side 10.251.0.1.
	pod := &podNetns{t: t, name: fmt.Sprintf("fm-client-%d", os.Getpid())}
	pod.run("ip", "netns", "add", pod.name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", pod.name).Run() })
	pod.run("ip", "link", "add", "fmh0", "type", "veth", "peer", "name", "fmp0", "netns", pod.name)
	// The kernel frees a deleted namespace's links later: free ours now.
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", "fmh0").Run() })
	pod.run("ip", "addr", "add", "10.251.0.1/24", "dev", "fmh0")
	pod.run("ip", "link", "set", "fmh0", "up")
	pod.run("ip", "-n", pod.name, "link", "set", "lo", "up")
	pod.run("ip", "-n", pod.name, "addr", "add", "10.251.0.2/24", "dev", "fmp0")
	pod.run("ip", "-n", pod.name, "link", "set", "fmp0", "up")
	pod.run("ip", "-n", pod.name, "route", "add", "default", "via", "10.251.0.1")

	// fleetmesh's control plane, reachable from the pod.
	run, err := c.StartControlPlane(ctx, testenv.ControlPlaneOptions{
		Args: []string{"--cluster-name=cluster-1", "--xds-address=10.251.0.1:15010", "--debounce-after=50ms", "--debounce-max=500ms"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = run.Stop() }()

	// httpbin: a Service whose ClusterIP nothing routes, and its pod.
	if _, err := c.RunPod(ctx, testenv.PodOptions{
		Namespace: "app", Name: "httpbin-1", Labels: map[string]string{"app": "httpbin"},
		Ports: []corev1.ContainerPort{{ContainerPort: 8080}}, Backend: &testenv.HTTPBackend{Port: 8080, Body: "Hi, I am httpbin"},
	}); err != nil {
		t.Fatal(err)
	}
	for name, port := range map[string]int32{"httpbin": 8080, "client": 9090} {
		if err := c.Client.Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: name},
			Spec: corev1.ServiceSpec{
				Selector: map[string]string{"app": name},
				Ports:    []corev1.ServicePort{{Name: "http", Port: port, TargetPort: intstr.FromInt32(port)}},
			},
		}); err != nil {
			t.Fatal(err)
		}
	}
	svc := &corev1.Service{}
	if err := c.Client.Get(ctx, ctrlclient.ObjectKey{Namespace: "app", Name: "httpbin"}, svc); err != nil {
		t.Fatal(err)
	}

	// The client pod as the injector makes it.
	client := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "client-1", Labels: map[string]string{"app": "client"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "client", Ports: []corev1.ContainerPort{{ContainerPort: 9090}}}}},
	}
	cfg := &inject.Config{
		ProxyImage: "envoy", InitImage: "fleetmesh-init", XDSAddress: "10.251.0.1:15010", ClusterName: "cluster-1",
		LogLevel: "warning", Concurrency: 1, Resources: inject.DefaultResources(),
	}
	if skip := inject.Inject(client, cfg); skip != nil {
		t.Fatalf("not injected: %+v", skip)
	}
	if _, err := c.RunPod(ctx, testenv.PodOptions{
		Namespace: "app", Name: "client-1", Labels: client.Labels, IP: "10.251.0.2", Elsewhere: true,
		Ports: []corev1.ContainerPort{{ContainerPort: 9090}},
	}); err != nil {
		t.Fatal(err)
	}

	// The init container, then the app's server and the sidecar.
	initArgs := client.Spec.InitContainers[0].Args
	if out, err := pod.helperCmd(append([]string{"init"}, initArgs...)...).CombinedOutput(); err != nil {
		t.Fatalf("fleetmesh-init %v: %v\n%s", initArgs, err, out)
	}
	app := pod.helperCmd("serve", "0.0.0.0:9090", "the client's app")
	stdout, err := app.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = app.Process.Kill(); _ = app.Wait() })
	if line, _ := readLine(stdout); line != "ready" {
		t.Fatalf("the app did not start: %q", line)
	}
	envoy := startSidecar(t, pod, client)

	// The sidecar has its configuration once the app's call succeeds;
	// until then the capture port refuses.
	get := func(url, host string) string {
		out, err := pod.helperCmd("get", url, host).CombinedOutput()
		if err != nil {
			return fmt.Sprintf("error: %v: %s", err, strings.TrimSpace(string(out)))
		}
		return string(out)
	}
	httpbin := fmt.Sprintf("http://%s:8080/", svc.Spec.ClusterIP)
	var got string
	err = testenv.Eventually(ctx, 30*time.Second, func(context.Context) (bool, error) {
		got = get(httpbin, "httpbin.app.svc.cluster.local:8080")
		return got == "200 Hi, I am httpbin", nil
	})
	if err != nil {
		t.Fatalf("the app's call to httpbin's ClusterIP %s: %q\nEnvoy:\n%s", svc.Spec.ClusterIP, got, envoy.log())
	}

	t.Run("a call by the short name from the pod's namespace is routed too", func(t *testing.T) {
		if got := get(httpbin, "httpbin:8080"); got != "200 Hi, I am httpbin" {
			t.Errorf("got %q", got)
		}
	})
	t.Run("a connection to an address outside the mesh passes through the sidecar", func(t *testing.T) {
		l, err := net.Listen("tcp", "10.251.0.1:7000")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "outside the mesh")
		}), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(l) }()
		defer func() { _ = srv.Close() }()
		if got := get("http://10.251.0.1:7000/", "outside"); got != "200 outside the mesh" {
			t.Errorf("got %q", got)
		}
		if n := envoy.stat(t, "cluster.PassthroughCluster.upstream_cx_total"); n == 0 {
			t.Error("the connection did not go through the sidecar's passthrough cluster")
		}
	})
	t.Run("the kubelet's probe of the sidecar's health port answers ready", func(t *testing.T) {
		resp, err := http.Get("http://10.251.0.2:15021/healthz/ready")
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != "LIVE" {
			t.Errorf("GET :15021/healthz/ready: %d %q", resp.StatusCode, body)
		}
	})
	t.Run("a call into the pod reaches the app through the sidecar's inbound side", func(t *testing.T) {
		var body string
		err := testenv.Eventually(ctx, 20*time.Second, func(ctx context.Context) (bool, error) {
			resp, err := http.Get("http://10.251.0.2:9090/")
			if err != nil {
				return false, nil
			}
			defer func() { _ = resp.Body.Close() }()
			b, _ := io.ReadAll(resp.Body)
			body = string(b)
			// Through the sidecar the app sees the call come from localhost.
			return body == "the client's app, called from 127.0.0.1", nil
		})
		if err != nil {
			t.Errorf("got %q: %v", body, err)
		}
	})
}

func readLine(r io.Reader) (string, error) {
	var b strings.Builder
	buf := make([]byte, 1)
	for {
		if _, err := r.Read(buf); err != nil {
			return b.String(), err
		}
		if buf[0] == '\n' {
			return b.String(), nil
		}
		b.WriteByte(buf[0])
	}
}

type sidecar struct {
	cmd *exec.Cmd
	pod *podNetns
	out *strings.Builder
}

// startSidecar runs the injected proxy container's command in the pod's
// namespace as the container would: its uid, its arguments with the
// downward API values the kubelet fills in.
func startSidecar(t *testing.T, pod *podNetns, p *corev1.Pod) *sidecar {
	t.Helper()
	proxy := inject.ProxyOf(p)
	env := map[string]string{"POD_NAME": p.Name, "POD_NAMESPACE": p.Namespace, "SERVICE_ACCOUNT": "default", "POD_IP": "10.251.0.2"}
	args := make([]string, 0, len(proxy.Args))
	for _, a := range proxy.Args {
		for k, v := range env {
			a = strings.ReplaceAll(a, "$("+k+")", v)
		}
		args = append(args, a)
	}
	uid := fmt.Sprint(*proxy.SecurityContext.RunAsUser)
	cmd := exec.Command("ip", append([]string{
		"netns", "exec", pod.name, "setpriv", "--reuid", uid, "--regid", uid, "--clear-groups", "--",
		testenv.EnvoyBinary(),
	}, args...)...)
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return &sidecar{cmd: cmd, pod: pod, out: out}
}

func (s *sidecar) log() string { return s.out.String() }

// stat reads a counter from the sidecar's admin API (localhost in the
// pod's namespace).
func (s *sidecar) stat(t *testing.T, name string) int {
	t.Helper()
	out, err := s.pod.helperCmd("get", "http://127.0.0.1:15000/stats?filter=^"+name+"$", "127.0.0.1").CombinedOutput()
	if err != nil {
		t.Fatalf("Envoy admin: %v: %s", err, out)
	}
	_, value, ok := strings.Cut(strings.TrimSpace(string(out)), name+": ")
	if !ok {
		t.Fatalf("no stat %s in %q", name, out)
	}
	var n int
	_, _ = fmt.Sscan(value, &n)
	return n
}
