// Package testenv runs the real parts fleetmesh's tests need: a private test
// network (a network namespace whose loopback carries every pod and gateway
// address), a fleet of real kube-apiserver + etcd pairs with the fleetmesh
// CRDs installed and a real kube-controller-manager beside each, and "pods":
// backend processes with a Pod object whose status the package keeps true, as
// a kubelet would, so that the real EndpointSlice controller writes their
// slices.
//
// A test package enters the test network from its TestMain:
//
//	func TestMain(m *testing.M) {
//		testenv.Main(m, func() int {
//			fleet = testenv.MustStartFleet(testenv.FleetOptions{Clusters: []string{"cluster-1"}})
//			defer fleet.Stop()
//			return m.Run()
//		})
//	}
//
// Main re-executes the already-built test binary under `unshare -n` (or
// `unshare -rn` without root), so plain `go test ./...` works and no test
// traffic can leave the machine.
package testenv
