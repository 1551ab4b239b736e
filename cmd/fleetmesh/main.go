// Command fleetmesh is the operator's command line for a fleetmesh fleet.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"

	"github.com/fleetmesh/fleetmesh/pkg/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := cli.Execute(ctx, os.Stdout, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
