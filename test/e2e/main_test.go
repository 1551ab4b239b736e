package e2e

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/fleetmesh/fleetmesh/test/testenv"
)

// fleet is cluster-1, cluster-2 and cluster-3, shared by every test of the
// package.
var fleet *testenv.Fleet

func TestMain(m *testing.M) {
	testenv.Main(m, func() int {
		var err error
		fleet, err = testenv.StartFleet(context.Background(), testenv.FleetOptions{Clusters: []string{"cluster-1", "cluster-2", "cluster-3"}})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer func() { _ = fleet.Stop() }()
		return m.Run()
	})
}
