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
traffic stays local (Locality), fails over (FailOver) or spreads (ActiveActive).`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(out)
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
