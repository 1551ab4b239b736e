// Command demo replays the reference article on this machine (make demo):
// four real API servers (control-plane, cluster-1..3), the fleetmesh
// federation and control planes, real Envoy gateways and sidecars, and the
// article's steps, each with what the curl pod in cluster-2 gets over 30
// calls. It runs inside a private network namespace, with no root needed.
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
	flag.Parse()
	for _, need := range []string{filepath.Join(testenv.AssetsDir(), "kube-apiserver"), testenv.EnvoyBinary()} {
		if _, err := os.Stat(need); err != nil {
			fmt.Fprintf(os.Stderr, "%s is missing: run `make demo` (it builds the API-server binaries and installs Envoy first)\n", need)
			os.Exit(1)
		}
	}
	os.Exit(testenv.RunInTestNetwork(func() int {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return article.RunDemo(ctx, os.Stdout, article.DemoOptions{Flat: *flat, Keep: *keep, CLI: cli.Execute})
	}))
}
