package mtls

import (
	"testing"

	"github.com/fleetmesh/fleetmesh/test/article"
)

// BenchmarkThroughTheGateway: client sidecar → remote gateway (passed
// through) → server sidecar, all mesh mTLS. test/e2e/article runs the
// same path in plaintext.
func BenchmarkThroughTheGateway(b *testing.B) { article.BenchmarkThroughTheGateway(b, fleet) }
