package translate

import (
	"testing"

	"github.com/fleetmesh/fleetmesh/test/testenv"
)

// TestMain runs the package inside the test network: the grpc-go client
// check dials the golden endpoints' addresses, which must not leave the
// machine.
func TestMain(m *testing.M) {
	testenv.Main(m, nil)
}
