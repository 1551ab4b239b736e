package cli

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/fleetmesh/fleetmesh/pkg/xds/syncz"
)

// credentialCell is a proxy's credential in a table: its kind and how
// long it has left, flagged when that is little or nothing.
func credentialCell(c *syncz.Credential, now time.Time) string {
	if c == nil {
		return "<none>"
	}
	if left := timeLeft(c, now); left != "" {
		return c.Kind + " " + left
	}
	return c.Kind
}

// timeLeft is how long a credential has left ("" when that is unknown),
// flagged EXPIRING when it is little, or EXPIRED.
func timeLeft(c *syncz.Credential, now time.Time) string {
	switch e := c.Expiry(now); e {
	case "":
		return ""
	case "EXPIRED":
		return e
	case "EXPIRING":
		return age(now, c.NotAfter) + " " + e
	}
	return age(now, c.NotAfter)
}

func newProxyStatusCommand(k *kubeFlags, p *planeFlags) *cobra.Command {
	var o outputFlag
	cmd := &cobra.Command{
		Use:     "proxy-status [POD[.NAMESPACE]]",
		Aliases: []string{"ps"},
		Short:   "List the proxies connected to fleetmesh and whether each holds its configuration",
		Long: `List every proxy connected to the cluster's fleetmesh control plane — Envoy
sidecars, Envoy gateways and proxyless gRPC clients — with its role and, per
xDS type, whether it holds what it was last sent:

  SYNCED    the proxy acknowledged the last configuration sent
  STALE     sent, not acknowledged yet (a slow or stuck proxy)
  NACKED    the proxy refused it (-o json shows the proxy's error)
  NOT SENT  nothing of that type was sent to this proxy yet

CREDENTIAL is what the proxy authenticated its xDS stream with (a workload
certificate or a ServiceAccount token) and when it expires. A credential
with less than a tenth of its life left is flagged EXPIRING (EXPIRED past
it): the kubelet renews both long before, and a proxy reconnects at least
every --xds-max-connection-age, so such a proxy is not picking up renewals.
"fleetmesh proxy-config secrets" shows the certificate itself.`,
		Example: `  fleetmesh --context cluster-2 proxy-status
  fleetmesh proxy-status curl-1.curl -o json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			planes, err := p.controlPlanes(cmd.Context(), k)
			if err != nil {
				return err
			}
			// One proxy, or -n: that namespace's only.
			namespace := k.namespaceFlag()
			if len(args) == 1 {
				namespace = proxyNamespace(args[0], k.ns())
			}
			all, err := proxies(cmd.Context(), planes, namespace)
			if err != nil {
				return err
			}
			if len(args) == 1 {
				one, err := findProxy(all, args[0], k.ns())
				if err != nil {
					return err
				}
				all = []connectedProxy{*one}
			}
			return o.print(cmd.OutOrStdout(), all, func(w io.Writer) {
				now := time.Now()
				header := []any{"NAME", "CLUSTER", "ROLE"}
				for _, t := range xdsTypes {
					header = append(header, t.column)
				}
				row(w, append(header, "CREDENTIAL", "CONTROL PLANE", "CONNECTED")...)
				for _, px := range all {
					cells := []any{px.displayName(), orNone(px.Cluster), px.Role}
					for _, t := range xdsTypes {
						cells = append(cells, syncState(px.Types[t.short]))
					}
					row(w, append(cells, credentialCell(px.Credential, now), px.ControlPlane, age(px.ConnectedAt, now)+" ago")...)
				}
				for _, px := range all {
					if e := px.Credential.Expiry(now); e == "EXPIRING" || e == "EXPIRED" {
						_, _ = fmt.Fprintf(w, "\n%s: its %s (%s, serial %s) expires %s: it was not renewed, or the proxy has not reconnected since",
							px.displayName(), px.Credential.Kind, px.Credential.Identity, orNone(px.Credential.Serial), px.Credential.NotAfter.Format(time.RFC3339))
					}
				}
				for _, px := range all {
					for _, t := range xdsTypes {
						if ts := px.Types[t.short]; ts != nil && syncState(ts) == "NACKED" {
							_, _ = fmt.Fprintf(w, "\n%s refused %s version %s: %s", px.displayName(), t.column, ts.Nacked, ts.NackError)
						}
					}
				}
			})
		},
	}
	o.bind(cmd)
	return cmd
}
