// Command demo replays the reference article on this machine (make demo):
// four real API servers (control-plane, cluster-1..3), the fleetmesh
// federation and control planes, real Envoy gateways and sidecars, and the
// article's steps, each with what the curl pod in cluster-2 gets over 30
// calls. It runs inside a private network namespace, with no root needed.
// With --real (make demo REAL=1, as root) the article runs in real pods:
// a kubelet, containerd and kube-proxy per cluster, fleetmesh installed
// with kubectl apply -k from images built here.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/fleetmesh/fleetmesh/pkg/cli"
	"github.com/fleetmesh/fleetmesh/test/article"
	"github.com/fleetmesh/fleetmesh/test/testenv"
)

func main() {
	flat := flag.Bool("flat", false, "put the members on one network: remote calls go pod to pod, not through the remote gateway")
	keep := flag.Bool("keep", false, "leave the fleet running after the steps, until Ctrl-C")
	real := flag.Bool("real", false, "run the article in real pods (root; make demo REAL=1 installs what it needs)")
	flag.Parse()
	needs := []string{filepath.Join(testenv.AssetsDir(), "kube-apiserver"), testenv.EnvoyBinary()}
	if *real {
		if os.Geteuid() != 0 {
			fmt.Fprintln(os.Stderr, "--real runs containerd, kubelets and mounts: run it as root (sudo make demo REAL=1)")
			os.Exit(1)
		}
		needs = append(needs, filepath.Join(testenv.AssetsDir(), "kubelet"))
	}
	for _, need := range needs {
		if _, err := os.Stat(need); err != nil {
			fmt.Fprintf(os.Stderr, "%s is missing: run `make demo` (it builds the API-server binaries and installs Envoy first)\n", need)
			os.Exit(1)
		}
	}
	os.Exit(testenv.RunInTestNetwork(func() int {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return article.RunDemo(ctx, os.Stdout, article.DemoOptions{Flat: *flat, Keep: *keep, Real: *real, CLI: cli.Execute})
	}))
}
