package cli

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/go-logr/logr"

	"github.com/fleetmesh/fleetmesh/pkg/controller"
	"github.com/fleetmesh/fleetmesh/test/testenv"
)

// fleet is a control-plane cluster running the federation and two
// clusters to join to it.
var fleet *testenv.Fleet

func TestMain(m *testing.M) {
	testenv.Main(m, func() int {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var err error
		fleet, err = testenv.StartFleet(ctx, testenv.FleetOptions{Clusters: []string{"control-plane", "member-a", "member-b"}, NoControllerManager: true})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer func() { _ = fleet.Stop() }()
		run, err := controller.RunWithConfig(ctx, controller.Options{
			ClusterName: "control-plane", Federation: true, XDSAddress: controller.XDSOff, DebugAddress: "127.0.0.1:0",
		}, fleet.Cluster("control-plane").Config, logr.Discard())
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer func() { cancel(); _ = run.Wait() }()
		return m.Run()
	})
}
