package controller

import (
	"testing"

	"github.com/fleetmesh/fleetmesh/test/testenv"
)

// fleet is one API server for the tests that need a real one.
var fleet *testenv.Fleet

func TestMain(m *testing.M) {
	testenv.MainWithFleet(m, testenv.FleetOptions{Clusters: []string{"member"}, NoControllerManager: true}, &fleet)
}
