// Command fleetmesh-controller is fleetmesh's control plane for one cluster.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/fleetmesh/fleetmesh/pkg/controller"
)

func main() {
	var o controller.Options
	o.BindFlags(flag.CommandLine)
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r, err := controller.Run(ctx, o)
	if err == nil {
		err = r.Wait()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "fleetmesh-controller:", err)
		os.Exit(1)
	}
}
