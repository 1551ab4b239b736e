package article

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
	"github.com/fleetmesh/fleetmesh/test/testenv"
)

type result struct {
	step, want, got string
	ok              bool
}

// DemoOptions shape the demo.
type DemoOptions struct {
	// Flat puts the members on one network.
	Flat bool
	// Real runs the article in real pods (RealFleet, root only) instead
	// of stand-in pods with Envoys beside them.
	Real bool
	// Keep leaves the fleet running after the steps until ctx ends.
	Keep bool
	// CLI runs the fleetmesh command line (cli.Execute); the demo then
	// shows what 'fleetmesh proxy-config' and 'explain' say at some steps.
	CLI func(ctx context.Context, out io.Writer, args []string) error
}

// RunDemo replays the article on a new fleet, printing each step and a
// summary to out. It returns the exit code: 0 when every step behaved as
// the article says. It must run inside the test network
// (testenv.RunInTestNetwork).
func RunDemo(ctx context.Context, out io.Writer, o DemoOptions) int {
	flat, keep := o.Flat, o.Keep
	say := func(format string, args ...any) { fmt.Fprintf(out, format+"\n", args...) }
	start := time.Now()
	say("fleetmesh demo: the Flomesh multi-cluster article, on one machine")
	var (
		fleet      stage
		kubeconfig string
		// wait bounds each step's wait for the traffic to change.
		wait = 20 * time.Second
	)
	if o.Real {
		say("in real pods: a kubelet, containerd and kube-proxy per cluster, fleetmesh installed from the images built here")
		real, err := StartReal(ctx, RealOptions{Flat: flat, Progress: func(format string, args ...any) {
			for line := range strings.Lines(fmt.Sprintf(format, args...)) {
				say("  %s", strings.TrimRight(line, "\n"))
			}
		}})
		if err != nil {
			say("demo: %v", err)
			return 1
		}
		defer func() { _ = real.Stop() }()
		fleet, kubeconfig, wait = real, real.KubeconfigPath, time.Minute
	} else {
		say("starting 4 real API servers (control-plane, cluster-1..3), the federation, 3 control planes and 3 Envoy gateways ...")
		standIn, err := Start(ctx, Options{Flat: flat})
		if err != nil {
			say("demo: %v", err)
			return 1
		}
		defer standIn.Stop()
		fleet, kubeconfig = standIn, standIn.KubeconfigPath
	}
	grpcFleet, _ := fleet.(grpcStage)
	var results []result
	say("  ready in %s", time.Since(start).Round(100*time.Millisecond))
	// fleetmesh shows a CLI command (its context first) and its output.
	fleetmesh := func(args ...string) {
		if o.CLI == nil {
			return
		}
		if !o.Real {
			// The lab's controller pods have no kubelet to port-forward
			// to; their debug API is open (--debug-auth=none).
			args = append(args, "--control-plane-access="+LabControlPlaneAccess)
		}
		say("  $ fleetmesh --context %s", strings.Join(args, " "))
		var buf strings.Builder
		if err := o.CLI(ctx, &buf, append([]string{"--kubeconfig", kubeconfig, "--context"}, args...)); err != nil {
			say("  fleetmesh: %v", err)
			results = append(results, result{"fleetmesh " + strings.Join(args, " "), "runs", err.Error(), false})
		}
		for line := range strings.Lines(buf.String()) {
			say("    %s", strings.TrimRight(line, "\n"))
		}
	}
	check := func(step, want string, got map[string]int, ok bool) {
		mark := "ok"
		if !ok {
			mark = "UNEXPECTED"
		}
		say("  30 calls from cluster-2: %s   [%s]", counts(got), mark)
		results = append(results, result{step, want, counts(got), ok})
	}
	fail := func(err error) int {
		say("demo: %v", err)
		return 1
	}

	say("\nstep 1: httpbin runs in cluster-1 and cluster-3 (behind inbound sidecars) and is exported from both")
	if err := DeployTheArticle(ctx, fleet); err != nil {
		return fail(err)
	}
	wantImports := 3
	// Beside curl, a proxyless grpc-go client in cluster-2 calls grpcbin,
	// which follows httpbin through every step (stand-in pods only).
	if grpcFleet != nil {
		for _, c := range []string{"cluster-1", "cluster-3"} {
			if _, err := grpcFleet.DeployGRPCBin(ctx, c, true); err != nil {
				return fail(err)
			}
		}
		if err := grpcFleet.StartGRPCClient(); err != nil {
			return fail(err)
		}
		wantImports = 4
	}
	grpcStep := func(step, want string, ok func(map[string]int) bool, shares map[string]float64) {
		if grpcFleet == nil {
			return
		}
		got, err := grpcFleet.WithinGRPC(ctx, wait, 600, ok)
		pass := err == nil
		for c, min := range shares {
			pass = pass && float64(got[c])/600 >= min
		}
		mark := "ok"
		if !pass {
			mark = "UNEXPECTED"
		}
		say("  600 gRPC calls (proxyless grpc-go): %s   [%s]", counts(got), mark)
		results = append(results, result{step + " (gRPC)", want, counts(got), pass})
	}
	var imports []string
	var err error
	_ = testenv.Eventually(ctx, wait+10*time.Second, func(ctx context.Context) (bool, error) {
		imports, err = fleet.Imports(ctx)
		return len(imports) == wantImports, err
	})
	sort.Strings(imports)
	say("  $ kubectl --context cluster-2 get serviceimports -A")
	say("  NAMESPACE   NAME")
	for _, i := range imports {
		ns, name, _ := strings.Cut(i, "/")
		say("  %-11s %s", ns, name)
	}
	want := "httpbin, httpbin-cluster-1, httpbin-cluster-3"
	if grpcFleet != nil {
		want = "grpcbin, " + want
	}
	results = append(results, result{"1 imports in cluster-2", want, strings.Join(imports, " "), len(imports) == wantImports})
	for _, c := range []string{"cluster-1", "cluster-3"} {
		addr := fleet.GatewayAddress(c)
		var body string
		_ = testenv.Eventually(ctx, wait, func(ctx context.Context) (bool, error) {
			body, err = Get(ctx, addr, addr, "/"+c+"/httpbin-mesh")
			return err == nil, nil
		})
		say("  $ curl http://%s/%s/httpbin-mesh  →  %s", addr, c, strings.TrimSpace(body))
		results = append(results, result{"1 north-south via " + c + "'s gateway", "Hi, I am from " + c + " and controlled by mesh!", strings.TrimSpace(body), strings.Contains(body, c)})
	}

	say("\nstep 2: no GlobalTrafficPolicy (Locality): cluster-2 has no httpbin, so calls fail (the article: exit code 7)")
	routed := fleet.WaitRouted(ctx) // failing for the policy, not for want of configuration
	got, err := fleet.Within(ctx, wait, func(c map[string]int) bool { return c["failed"] == 30 })
	check("2 Locality", "failed=30 (503: no local endpoint)", got, err == nil && routed == nil)
	grpcStep("2 Locality", "UNAVAILABLE=600", func(c map[string]int) bool { return c["UNAVAILABLE"] == 20 }, nil)

	say("\nstep 3: FailOver to cluster-1 and cluster-3: calls alternate between them")
	if err := fleet.Policy(ctx, fmv1alpha1.FailOverLbType); err != nil {
		return fail(err)
	}
	got, err = fleet.Within(ctx, wait, func(c map[string]int) bool { return c["cluster-1"] >= 8 && c["cluster-3"] >= 8 && c["failed"] == 0 })
	check("3 FailOver", "cluster-1 and cluster-3 alternate", got, err == nil)
	grpcStep("3 FailOver", "cluster-1, cluster-3 >= 25 %", func(c map[string]int) bool { return c["cluster-1"]+c["cluster-3"] == 20 },
		map[string]float64{"cluster-1": 0.25, "cluster-3": 0.25})

	say("  the per-cluster imports reach only their own cluster (a policy may name both; the one not exporting is ignored):")
	for _, c := range []string{"cluster-1", "cluster-3"} {
		if err := fleet.PolicyFor(ctx, "httpbin-"+c, fmv1alpha1.ActiveActiveLbType); err != nil {
			return fail(err)
		}
		var got map[string]int
		_ = testenv.Eventually(ctx, wait, func(ctx context.Context) (bool, error) {
			got = fleet.CurlService(ctx, "httpbin-"+c, 30)
			return got[c] == 30, nil
		})
		say("  curl http://httpbin-%s.httpbin:8080/ x30: %s", c, counts(got))
		results = append(results, result{"3 httpbin-" + c + " only", c + "=30", counts(got), got[c] == 30})
	}

	say("\nstep 4: httpbin deployed in cluster-2: every call stays local")
	local, err := fleet.DeployLocalHTTPBin(ctx)
	if err != nil {
		return fail(err)
	}
	var localGRPC Stopper
	if grpcFleet != nil {
		if localGRPC, err = grpcFleet.DeployGRPCBin(ctx, "cluster-2", false); err != nil {
			return fail(err)
		}
	}
	got, err = fleet.Within(ctx, wait, func(c map[string]int) bool { return c["cluster-2"] == 30 })
	check("4 local httpbin", "cluster-2=30", got, err == nil)
	grpcStep("4 local httpbin", "cluster-2=600", func(c map[string]int) bool { return c["cluster-2"] == 20 }, map[string]float64{"cluster-2": 1})
	say("  the policy is still FailOver: cluster-2 at priority 0, the exporters wait at priority 1")
	fleetmesh("cluster-2", "explain", "httpbin.httpbin", "--from-cluster", "cluster-2")

	say("\nstep 5: ActiveActive: calls spread over all three clusters")
	if err := fleet.Policy(ctx, fmv1alpha1.ActiveActiveLbType); err != nil {
		return fail(err)
	}
	got, err = fleet.Within(ctx, wait, func(c map[string]int) bool {
		return c["cluster-1"] >= 8 && c["cluster-2"] >= 8 && c["cluster-3"] >= 8
	})
	check("5 ActiveActive", "each cluster >= 8 (25 %)", got, err == nil)
	grpcStep("5 ActiveActive", "each cluster >= 25 %", func(c map[string]int) bool { return c["cluster-1"] > 0 && c["cluster-2"] > 0 && c["cluster-3"] > 0 },
		map[string]float64{"cluster-1": 0.25, "cluster-2": 0.25, "cluster-3": 0.25})
	say("  what cluster-2's curl sidecar was sent for httpbin: one locality per cluster, equal weights")
	fleetmesh("cluster-2", "proxy-config", "endpoints", fleet.CurlProxy(), "--fqdn", "httpbin.httpbin")

	say("\nstep 6 (beyond the article): FailOver again, then cluster-2's httpbin dies")
	if err := fleet.Policy(ctx, fmv1alpha1.FailOverLbType); err != nil {
		return fail(err)
	}
	if _, err := fleet.Within(ctx, wait, func(c map[string]int) bool { return c["cluster-2"] == 30 }); err != nil {
		return fail(err)
	}
	if err := local.Stop(ctx); err != nil {
		return fail(err)
	}
	if localGRPC != nil {
		if err := localGRPC.Stop(ctx); err != nil {
			return fail(err)
		}
	}
	killed := time.Now()
	var moved time.Duration
	for moved == 0 && time.Since(killed) < wait {
		if c := fleet.CurlHTTPBin(ctx, 1); c["cluster-1"]+c["cluster-3"] == 1 {
			moved = time.Since(killed)
		}
	}
	got = fleet.CurlHTTPBin(ctx, 30)
	say("  calls moved to the other clusters %s after the kill", moved.Round(time.Millisecond))
	check("6 local httpbin killed", "cluster-1 + cluster-3 = 30, failed=0", got, moved > 0 && got["failed"] == 0 && got["cluster-1"]+got["cluster-3"] == 30)
	grpcStep("6 local httpbin killed", "cluster-1 + cluster-3 = 600", func(c map[string]int) bool { return c["cluster-1"]+c["cluster-3"] == 20 },
		map[string]float64{"cluster-1": 0.25, "cluster-3": 0.25})

	say("\nsummary")
	say("  %-38s %-54s %s", "STEP", "EXPECTED", "GOT")
	ok := true
	for _, r := range results {
		mark := " "
		if !r.ok {
			mark, ok = "✗", false
		}
		say("%s %-38s %-54s %s", mark, r.step, r.want, r.got)
	}
	mem := testenv.MemoryInUse()
	say("\nwall time %s; memory of the fleet (RSS of every process): %d MiB", time.Since(start).Round(100*time.Millisecond), (mem.ControlPlanes+mem.Nodes)/1024)
	if mem.Nodes > 0 {
		say("  API servers, etcd, controller managers, schedulers and this process %d MiB; nodes (containerd, kubelet, kube-proxy) and their pods %d MiB", mem.ControlPlanes/1024, mem.Nodes/1024)
	}
	if keep {
		say("\nthe fleet keeps running (Ctrl-C stops it). One kubeconfig has a context per cluster:")
		say("  export KUBECONFIG=%s", kubeconfig)
		if standIn, ok := fleet.(*Fleet); ok {
			for _, name := range Members {
				say("  %s control plane: xDS %s, debug http://%s/debug/syncz (pod fleetmesh-system/fleetmesh-controller-0)", name, standIn.Planes[name].XDSAddress, standIn.Planes[name].DebugAddress)
			}
		}
		ns := "-n"
		if os.Geteuid() != 0 {
			ns = "-U -n --preserve-credentials"
		}
		enter := fmt.Sprintf("nsenter -t %d %s env KUBECONFIG=%s", os.Getpid(), ns, kubeconfig)
		say("enter the namespace from another terminal, e.g.:")
		access := ""
		if !o.Real {
			access = " --control-plane-access=" + LabControlPlaneAccess
		}
		say("  %s bin/fleetmesh --context cluster-2 proxy-status%s", enter, access)
		say("  %s bin/fleetmesh --context cluster-2 proxy-config endpoints %s%s", enter, fleet.CurlProxy(), access)
		say("  %s bin/fleetmesh --context control-plane cluster list", enter)
		say("  %s bin/fleetmesh --context cluster-2 explain httpbin.httpbin --from-cluster cluster-2", enter)
		say("  %s bin/k8s/kubectl --context cluster-2 get serviceimports -A", enter)
		<-ctx.Done()
	}
	if !ok {
		say("\nsome steps did not behave as the article says")
		return 1
	}
	return 0
}

func counts(m map[string]int) string { return testenv.Describe(m) }

// DeployTheArticle is the article's first step, in either fleet: meshed
// httpbin in cluster-1 and cluster-3, each exported, and the curl pod in
// cluster-2.
func DeployTheArticle(ctx context.Context, f stage) error {
	for _, c := range []string{"cluster-1", "cluster-3"} {
		if err := f.DeployMeshedHTTPBin(ctx, c, "Hi, I am from "+c+" and controlled by mesh!\n"); err != nil {
			return err
		}
		if err := f.Export(ctx, c); err != nil {
			return err
		}
	}
	return f.StartCurl(ctx)
}

// stage is the article's fleet as the steps use it: stand-in pods (Fleet)
// or real pods (RealFleet).
type stage interface {
	DeployMeshedHTTPBin(ctx context.Context, cluster, body string) error
	Export(ctx context.Context, cluster string) error
	StartCurl(ctx context.Context) error
	Imports(ctx context.Context) ([]string, error)
	Policy(ctx context.Context, lb fmv1alpha1.LbType) error
	PolicyFor(ctx context.Context, service string, lb fmv1alpha1.LbType) error
	WaitRouted(ctx context.Context) error
	Within(ctx context.Context, timeout time.Duration, ok func(map[string]int) bool) (map[string]int, error)
	CurlService(ctx context.Context, service string, n int) map[string]int
	CurlHTTPBin(ctx context.Context, n int) map[string]int
	DeployLocalHTTPBin(ctx context.Context) (Stopper, error)
	GatewayAddress(cluster string) string
	CurlProxy() string
}

// grpcStage is the proxyless gRPC client and its backends, which only the
// stand-in fleet runs.
type grpcStage interface {
	DeployGRPCBin(ctx context.Context, cluster string, export bool) (Stopper, error)
	StartGRPCClient() error
	WithinGRPC(ctx context.Context, timeout time.Duration, n int, ok func(map[string]int) bool) (map[string]int, error)
}
