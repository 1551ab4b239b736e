package controller

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/fleetmesh/fleetmesh/test/testenv"
)

// fleet is one API server for the tests that need a real one.
var fleet *testenv.Fleet

func TestMain(m *testing.M) {
	testenv.Main(m, func() int {
		var err error
		fleet, err = testenv.StartFleet(context.Background(), testenv.FleetOptions{Clusters: []string{"member"}, NoControllerManager: true})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer func() { _ = fleet.Stop() }()
		return m.Run()
	})
}
