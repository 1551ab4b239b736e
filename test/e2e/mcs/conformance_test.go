package mcs

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/fleetmesh/fleetmesh/test/testenv"
)

// conformanceFilter leaves out the specs that run commands in a pod
// (nslookup, nc): the lab's members run no containers. test/e2e/realmcs
// runs them on real nodes.
const conformanceFilter = "!DNS && !Connectivity"

// TestTheMCSConformanceSuite runs the Kubernetes MCS API's conformance
// suite against the fleet's two members, as its own binary, with a
// stand-in kubelet for the pods it makes: every spec it runs there must
// pass. The report's table is logged, spec by spec.
func TestTheMCSConformanceSuite(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	for _, name := range members {
		fleet.Cluster(name).RunPodsOf(ctx, func(ns string) bool { return strings.HasPrefix(ns, "mcs-conformance-") })
	}
	run, err := testenv.RunMCSConformance(ctx, fleet.KubeconfigPath, members, conformanceFilter)
	if err != nil {
		t.Fatal(err)
	}
	run.Check(t)
}
