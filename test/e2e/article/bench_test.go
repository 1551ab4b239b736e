package article

import (
	"testing"

	"github.com/fleetmesh/fleetmesh/test/article"
)

// BenchmarkThroughTheGateway: client sidecar → remote gateway → server
// sidecar, all plaintext. test/e2e/mtls runs the same path with mTLS.
func BenchmarkThroughTheGateway(b *testing.B) { article.BenchmarkThroughTheGateway(b, fleet) }
