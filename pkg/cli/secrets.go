package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/fleetmesh/fleetmesh/pkg/xds/syncz"
)

// secretsCommand is `proxy-config secrets`: the credential a proxy
// authenticated its xDS stream with, as the control plane saw it, or,
// with --from-envoy, the certificates the sidecar's Envoy holds.
func (o *proxyConfigOptions) secretsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "secrets POD[.NAMESPACE]",
		Short: "The proxy's credential: identity, serial and expiry of its workload certificate (or token)",
		Long: `Show the credential a proxy authenticated its xDS stream with, as fleetmesh's
control plane saw it when the stream opened: a workload certificate (its
SPIFFE ID, serial and expiry) or a ServiceAccount token (its user and
expiry). EXPIRES flags a credential with less than a tenth of its life
left.

With --from-envoy, the certificates the sidecar's Envoy holds (admin
/certs): what it presents and the roots it trusts, with their serials, names
and validity, so a renewal the kubelet wrote can be seen to have been loaded.`,
		Example: `  fleetmesh proxy-config secrets curl-1.curl
  fleetmesh proxy-config secrets curl-1.curl --from-envoy`,
		Args:              exactArgs("POD[.NAMESPACE]"),
		ValidArgsFunction: o.completeProxies,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.fromEnvoy || o.adminURL != "" {
				raw, err := o.envoyCerts(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				return o.showEnvoyCerts(cmd, raw)
			}
			planes, err := o.planeFlags.controlPlanes(cmd.Context(), o.kube)
			if err != nil {
				return err
			}
			all, err := proxies(cmd.Context(), planes, proxyNamespace(args[0], o.kube.ns()))
			if err != nil {
				return err
			}
			px, err := findProxy(all, args[0], o.kube.ns())
			if err != nil {
				return err
			}
			c := px.Credential
			if o.output.format != "table" {
				return o.output.print(cmd.OutOrStdout(), c, nil)
			}
			if c == nil {
				return fmt.Errorf("proxy %s presented no credential: its control plane %s does not authenticate proxies (--xds-tls)", px.displayName(), px.ControlPlane)
			}
			return o.output.print(cmd.OutOrStdout(), c, func(w io.Writer) {
				now := time.Now()
				row(w, "KIND", "IDENTITY", "SERIAL", "NOT AFTER", "EXPIRES")
				row(w, c.Kind, c.Identity, orNone(c.Serial), notAfter(c.NotAfter), expires(c, now))
			})
		},
	}
	o.output.bind(cmd)
	f := cmd.Flags()
	f.BoolVar(&o.fromEnvoy, "from-envoy", false, "read the certificates the sidecar's own Envoy holds (admin /certs, port-forwarded)")
	f.IntVar(&o.adminPort, "envoy-admin-port", 15000, "the sidecar's Envoy admin port, for --from-envoy")
	f.StringVar(&o.adminURL, "envoy-admin-url", "", "read Envoy's admin API at this URL instead of port-forwarding (implies --from-envoy)")
	return cmd
}

func notAfter(t time.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return t.UTC().Format(time.RFC3339)
}

// expires is how long a credential has left, as a table cell.
func expires(c *syncz.Credential, now time.Time) string {
	switch left := timeLeft(c, now); left {
	case "":
		return "<unknown>"
	case "EXPIRED":
		return left
	default:
		return "in " + left
	}
}

func (o *proxyConfigOptions) envoyCerts(ctx context.Context, arg string) ([]byte, error) {
	if o.adminURL != "" {
		return httpGet(ctx, http.DefaultClient, strings.TrimSuffix(o.adminURL, "/")+"/certs")
	}
	pod, ns, found := strings.Cut(arg, ".")
	if !found {
		ns = o.kube.ns()
	}
	return envoyAdminGet(ctx, o.kube, ns, pod, o.adminPort, "/certs")
}

// showEnvoyCerts prints Envoy's /certs: a row per certificate, what the
// proxy presents (CHAIN) and what it trusts (CA).
func (o *proxyConfigOptions) showEnvoyCerts(cmd *cobra.Command, raw []byte) error {
	if o.output.format != "table" {
		return printRaw(cmd.OutOrStdout(), o.output.format, raw)
	}
	var certs adminv3.Certificates
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(raw, &certs); err != nil {
		return fmt.Errorf("read the certificates from the Envoy admin /certs: %w", err)
	}
	w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 3, ' ', 0)
	row(w, "USE", "SERIAL", "NAMES", "VALID FROM", "NOT AFTER", "FILE")
	// Envoy lists a certificate once per TLS context that holds it: with
	// mesh mTLS, every cluster and listener of the mesh. One row each.
	shown := map[string]bool{}
	for _, c := range certs.GetCertificates() {
		for _, set := range []struct {
			use     string
			details []*adminv3.CertificateDetails
		}{{"CHAIN", c.GetCertChain()}, {"CA", c.GetCaCert()}} {
			for _, d := range set.details {
				key := set.use + "/" + d.GetSerialNumber() + "/" + d.GetPath()
				if shown[key] {
					continue
				}
				shown[key] = true
				var names []string
				for _, san := range d.GetSubjectAltNames() {
					names = append(names, san.GetUri()+san.GetDns()+san.GetIpAddress())
				}
				row(w, set.use, d.GetSerialNumber(), orNone(strings.Join(names, ",")),
					notAfter(d.GetValidFrom().AsTime()), notAfter(d.GetExpirationTime().AsTime()), orNone(d.GetPath()))
			}
		}
	}
	return w.Flush()
}
