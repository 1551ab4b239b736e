// Package cli is the fleetmesh command line: the commands operators run
// against the fleet. cmd/fleetmesh only calls Execute.
package cli

import (
	"context"
	"fmt"
	"io"
	"strings"

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
	k, planes := newKubeFlags(), &planeFlags{}
	k.bind(root)
	planes.bind(root)
	root.AddGroup(&cobra.Group{ID: "fleet", Title: "The fleet:"}, &cobra.Group{ID: "proxies", Title: "Proxies and traffic:"})
	for _, c := range []*cobra.Command{newClusterCommand(k), newExplainCommand(k, planes), newDNSCommand(k), newTrustCommand(k)} {
		c.GroupID = "fleet"
		root.AddCommand(c)
	}
	for _, c := range []*cobra.Command{newProxyStatusCommand(k, planes), newProxyConfigCommand(k, planes)} {
		c.GroupID = "proxies"
		root.AddCommand(c)
	}
	root.AddCommand(newVersionCommand(k, planes))
	return root
}

// Execute runs the command line with args and returns its error, if any.
func Execute(ctx context.Context, out io.Writer, args []string) error {
	root := NewRootCommand(out)
	root.SetArgs(args)
	return root.ExecuteContext(ctx)
}

func newVersionCommand(k *kubeFlags, p *planeFlags) *cobra.Command {
	var remote bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the fleetmesh version (with --remote, the cluster's control planes' too)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			if !remote {
				_, err := fmt.Fprintln(out, version.String())
				return err
			}
			if _, err := fmt.Fprintln(out, "client:", version.String()); err != nil {
				return err
			}
			planes, err := p.controlPlanes(cmd.Context(), k)
			if err != nil {
				return err
			}
			for _, pl := range planes {
				v, err := pl.get(cmd.Context(), "/version", nil)
				if err != nil {
					return err
				}
				if _, err := fmt.Fprintf(out, "control plane %s: %s\n", pl.Name, strings.TrimSpace(string(v))); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&remote, "remote", false, "also ask the cluster's fleetmesh-controller pods for their version")
	return cmd
}
