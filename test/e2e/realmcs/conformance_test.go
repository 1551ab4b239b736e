// Package realmcs runs the Kubernetes MCS API's conformance suite, every
// spec, against members whose node runs real pods. fleetmesh is installed
// as users install it (kubectl apply -k, fleetmesh cluster join, the
// members on one network), and each member's CoreDNS answers
// clusterset.local as docs/mcs.md says to set it up: kubectl apply -k
// manifests/coredns, then fleetmesh dns enable. The suite's servers
// (socat) and its request pod (nslookup, nc) run in containerd: nslookup
// asks the member's CoreDNS, and nc's connection to the clusterset IP is
// routed by the member's kube-proxy over the MCS EndpointSlices.
package realmcs

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/fleetmesh/fleetmesh/test/article"
	"github.com/fleetmesh/fleetmesh/test/testenv"
)

var fleet *article.RealFleet

// skipReason says why the suite cannot run here (testenv.NoRealNodes).
var skipReason = testenv.NoRealNodes()

func TestMain(m *testing.M) {
	testenv.MainWithRealNodes(m, func() int {
		ctx := context.Background()
		start := time.Now()
		f, err := article.StartReal(ctx, article.RealOptions{
			Flat:     true,
			Progress: func(format string, args ...any) { fmt.Printf(format+"\n", args...) },
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer func() { _ = f.Stop() }()
		if err := enableClustersetDNS(ctx, f); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Printf("fleet ready for the MCS conformance suite in %s\n", time.Since(start).Round(100*time.Millisecond))
		fleet = f
		return m.Run()
	})
}

// enableClustersetDNS sets up each member's CoreDNS for clusterset.local
// as docs/mcs.md tells users to, with the built CLI.
func enableClustersetDNS(ctx context.Context, f *article.RealFleet) error {
	for _, m := range article.Members {
		c := f.Cluster(m)
		if out, err := c.Kubectl(nil, "apply", "-k", "manifests/coredns"); err != nil {
			return fmt.Errorf("kubectl --context %s apply -k manifests/coredns: %w\n%s", m, err, out)
		}
		out, err := f.Fleetmesh(ctx, "--context", m, "dns", "enable")
		if err != nil {
			return err
		}
		fmt.Printf("$ fleetmesh --context %s dns enable\n%s", m, out)
		if err := c.WaitAvailable(ctx, "kube-system", "coredns", 1); err != nil {
			return err
		}
	}
	return nil
}

// TestTheMCSConformanceSuiteOnRealNodes runs every spec of the MCS
// conformance suite against the three members: each must pass, DNS and
// Connectivity included. The report's table is logged, spec by spec.
func TestTheMCSConformanceSuiteOnRealNodes(t *testing.T) {
	if skipReason != "" {
		t.Skip(skipReason)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	run, err := testenv.RunMCSConformance(ctx, fleet.KubeconfigPath, article.Members, "")
	if err != nil {
		t.Fatal(err)
	}
	run.Check(t)
}
