package redirect

import (
	"fmt"
	"os/exec"

	"github.com/spf13/cobra"
)

// NewCommand is fleetmesh-init: the injected init container that loads the
// rules into the pod's network namespace. It needs NET_ADMIN and NET_RAW,
// nothing else.
func NewCommand() *cobra.Command {
	c := DefaultConfig()
	var (
		inbound, outbound, cidrs, restore string
		dryRun                            bool
	)
	cmd := &cobra.Command{
		Use:   "fleetmesh-init",
		Short: "Route the pod's TCP traffic through its fleetmesh sidecar (iptables)",
		Long: `fleetmesh-init writes the pod's nat table: outbound TCP connections go to
the sidecar's outbound port, inbound ones to its inbound port, except the
proxy's own connections (its uid), localhost, and the ports and ranges
excluded. It replaces the whole nat table, so running it again changes
nothing.`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if c.ExcludeInboundPorts, err = ParsePorts(inbound); err != nil {
				return fmt.Errorf("--exclude-inbound-ports: %w", err)
			}
			if c.ExcludeOutboundPorts, err = ParsePorts(outbound); err != nil {
				return fmt.Errorf("--exclude-outbound-ports: %w", err)
			}
			if c.ExcludeOutboundCIDRs, err = ParseCIDRs(cidrs); err != nil {
				return fmt.Errorf("--exclude-outbound-ip-ranges: %w", err)
			}
			rules, err := Rules(c)
			if err != nil {
				return err
			}
			if dryRun {
				_, err := fmt.Fprint(cmd.OutOrStdout(), rules)
				return err
			}
			if restore == "" {
				restore = findRestore()
			}
			if err := Apply(cmd.Context(), restore, c); err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "fleetmesh-init: traffic redirected (outbound → %d, inbound → %d, proxy uid %d) with %s\n", c.OutboundPort, c.InboundPort, c.ProxyUID, restore)
			return err
		},
	}
	f := cmd.Flags()
	f.Uint16Var(&c.OutboundPort, "outbound-port", c.OutboundPort, "the sidecar's outbound capture port")
	f.Uint16Var(&c.InboundPort, "inbound-port", c.InboundPort, "the sidecar's inbound capture port")
	f.Uint32Var(&c.ProxyUID, "proxy-uid", c.ProxyUID, "the sidecar's uid: its connections are not redirected")
	f.Uint32Var(&c.ProxyGID, "proxy-gid", 0, "the sidecar's gid, also not redirected (0: not used)")
	f.BoolVar(&c.CaptureInbound, "capture-inbound", true, "redirect inbound connections too")
	f.StringVar(&inbound, "exclude-inbound-ports", FormatPorts(c.ExcludeInboundPorts), "inbound ports that reach the app directly, comma-separated")
	f.StringVar(&outbound, "exclude-outbound-ports", FormatPorts(c.ExcludeOutboundPorts), "outbound ports that leave directly, comma-separated")
	f.StringVar(&cidrs, "exclude-outbound-ip-ranges", "", "destinations (IPv4 CIDRs) reached directly, comma-separated")
	f.StringVar(&restore, "iptables-restore", "", "the iptables-restore binary (default: iptables-restore, else iptables-nft-restore or iptables-legacy-restore)")
	f.BoolVar(&dryRun, "dry-run", false, "print the rules instead of loading them")
	return cmd
}

func findRestore() string {
	for _, b := range []string{"iptables-restore", "iptables-nft-restore", "iptables-legacy-restore"} {
		if _, err := exec.LookPath(b); err == nil {
			return b
		}
	}
	return "iptables-restore"
}
