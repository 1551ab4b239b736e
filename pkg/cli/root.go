// Package cli is the fleetmesh command line: the commands operators run
// against the fleet. cmd/fleetmesh only calls Execute.
package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/fleetmesh/fleetmesh/pkg/version"
)

// NewRootCommand builds the fleetmesh command tree.
func NewRootCommand(out io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "fleetmesh",
		Short: "Schedule service traffic across a fleet of Kubernetes clusters",
		Long: `fleetmesh schedules service traffic across a fleet of Kubernetes clusters:
register clusters, export Services, and choose per consumer cluster whether
traffic stays local (Locality), fails over (FailOver) or spreads (ActiveActive).

Commands read the kubeconfig as kubectl does (--kubeconfig, $KUBECONFIG,
--context, -n). 'cluster' commands talk to the control-plane cluster; the
proxy commands to the cluster whose proxies you look at, reaching its
fleetmesh-controller through the API server.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(out)
	k, planes := &kubeFlags{}, &planeFlags{}
	k.bind(root)
	planes.bind(root)
	root.AddGroup(&cobra.Group{ID: "fleet", Title: "The fleet:"}, &cobra.Group{ID: "proxies", Title: "Proxies and traffic:"})
	for _, c := range []*cobra.Command{newClusterCommand(k), newExplainCommand(k)} {
		c.GroupID = "fleet"
		root.AddCommand(c)
	}
	for _, c := range []*cobra.Command{newProxyStatusCommand(k, planes), newProxyConfigCommand(k, planes)} {
		c.GroupID = "proxies"
		root.AddCommand(c)
	}
	root.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print the fleetmesh version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), version.String())
			return err
		},
	})
	root.AddCommand(newDemoCommand())
	return root
}

// Execute runs the command line with args and returns its error, if any.
func Execute(ctx context.Context, out io.Writer, args []string) error {
	root := NewRootCommand(out)
	root.SetArgs(args)
	return root.ExecuteContext(ctx)
}
