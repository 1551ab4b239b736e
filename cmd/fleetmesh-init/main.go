// Command fleetmesh-init is the injected init container: it redirects the
// pod's TCP traffic through the fleetmesh sidecar (see pkg/redirect).
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/fleetmesh/fleetmesh/pkg/redirect"
)

func main() {
	if err := redirect.NewCommand().ExecuteContext(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "fleetmesh-init:", err)
		os.Exit(1)
	}
}
