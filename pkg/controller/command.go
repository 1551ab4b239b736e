package controller

import (
	"flag"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/fleetmesh/fleetmesh/pkg/version"
)

// NewCommand is fleetmesh-controller's command line. Its flags live on a
// flag set of their own: libraries register flags of theirs on Go's global
// flag set when they are linked in (controller-runtime registers
// --kubeconfig), so binding ours there panics at start.
func NewCommand() *cobra.Command {
	var o Options
	cmd := &cobra.Command{
		Use:   "fleetmesh-controller",
		Short: "fleetmesh's control plane for one cluster",
		Long: `fleetmesh-controller watches this cluster's API server, builds the mesh and
serves it over ADS to Envoy sidecars, Envoy gateways and proxyless gRPC
clients. With --federation it also keeps the member clusters of the Cluster
objects in this API server true to each other; with --inject it serves the
sidecar injection webhook.`,
		Version:       version.String(),
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := Run(cmd.Context(), o)
			if err != nil {
				return err
			}
			return r.Wait()
		},
	}
	fs := flag.NewFlagSet("fleetmesh-controller", flag.ContinueOnError)
	o.BindFlags(fs)
	cmd.Flags().AddGoFlagSet(fs)
	cmd.SetVersionTemplate(fmt.Sprintln("{{.Version}}"))
	return cmd
}
