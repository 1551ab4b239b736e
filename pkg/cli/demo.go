package cli

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/fleetmesh/fleetmesh/test/article"
	"github.com/fleetmesh/fleetmesh/test/testenv"
)

func newDemoCommand() *cobra.Command {
	var flat, keep bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Replay the Flomesh multi-cluster article on a local fleet",
		Long: `Replay the Flomesh multi-cluster article on this machine: four real API
servers (control-plane, cluster-1..3), the federation, a control plane and an
Envoy gateway per member, httpbin behind sidecars, and the article's steps
(Locality, FailOver, ActiveActive), each with what a client in cluster-2 gets
over 30 calls. It runs in a private network namespace and needs the
API-server binaries and Envoy of a source checkout (make envtest-assets
envoy), found through KUBEBUILDER_ASSETS and ENVOY_BIN or under bin/.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, need := range []string{testenv.AssetsDir() + "/kube-apiserver", testenv.EnvoyBinary()} {
				if _, err := os.Stat(need); err != nil {
					return fmt.Errorf("%s is missing: run `make envtest-assets envoy` in a fleetmesh checkout, or set KUBEBUILDER_ASSETS and ENVOY_BIN", need)
				}
			}
			code := testenv.RunInTestNetwork(func() int {
				return article.RunDemo(cmd.Context(), cmd.OutOrStdout(), article.DemoOptions{Flat: flat, Keep: keep, CLI: Execute})
			})
			if code != 0 {
				return errors.New("the demo did not behave as the article says (see above)")
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&flat, "flat", false, "put the members on one network: remote calls go pod to pod, not through the remote gateway")
	cmd.Flags().BoolVar(&keep, "keep", false, "leave the fleet running after the steps, until Ctrl-C")
	return cmd
}
