package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"
)

type proxyConfigOptions struct {
	output     outputFlag
	fromEnvoy  bool
	adminPort  int
	adminURL   string
	envoyCl    string
	fqdn       string
	kube       *kubeFlags
	planeFlags *planeFlags
}

func newProxyConfigCommand(k *kubeFlags, p *planeFlags) *cobra.Command {
	o := &proxyConfigOptions{kube: k, planeFlags: p}
	cmd := &cobra.Command{
		Use:     "proxy-config clusters|endpoints|listeners|routes|secrets|all POD[.NAMESPACE]",
		Aliases: []string{"pc"},
		Short:   "Show what fleetmesh sent one proxy: its clusters, endpoints, listeners and routes",
		Long: `Show the configuration of one proxy — an Envoy sidecar (POD.NAMESPACE), a
gateway or a proxyless gRPC client (its node ID, see 'fleetmesh proxy-status')
— as fleetmesh's control plane sent it (/debug/config_dump, reached through
the API server). With --from-envoy the sidecar's own Envoy admin /config_dump
is read instead, to compare what Envoy holds with what was sent.

'endpoints' answers "where does my traffic go": each endpoint with the fleet
cluster it lives in, its locality, priority (0 first: FailOver tiers) and
locality weight (ActiveActive shares). HEALTH is what the endpoint was sent
with: UNKNOWN counts as healthy; endpoints that are not ready are left out
rather than sent unhealthy.`,
		Example: `  # where cluster-2's curl sends httpbin traffic, tier by tier
  fleetmesh --context cluster-2 proxy-config endpoints curl-1.curl --fqdn httpbin.httpbin.svc.cluster.local
  # the whole dump, as Envoy's ConfigDump JSON
  fleetmesh proxy-config all curl-1 -n curl -o json`,
	}
	for _, kind := range []string{"clusters", "endpoints", "listeners", "routes", "all"} {
		cmd.AddCommand(o.command(kind))
	}
	cmd.AddCommand(o.secretsCommand())
	return cmd
}

func (o *proxyConfigOptions) command(kind string) *cobra.Command {
	short := map[string]string{
		"clusters":  "The proxy's clusters: one per service port, with its load balancing and protocol",
		"endpoints": "The proxy's endpoints: address, the fleet cluster it lives in, locality, priority, weight, health",
		"listeners": "The proxy's listeners and where each sends traffic",
		"routes":    "The proxy's routes: virtual hosts, domains, matches and clusters",
		"all":       "All of the above (-o json: the whole dump in Envoy's ConfigDump shape)",
	}[kind]
	cmd := &cobra.Command{
		Use:               kind + " POD[.NAMESPACE]",
		Short:             short,
		Args:              exactArgs("POD[.NAMESPACE]"),
		ValidArgsFunction: o.completeProxies,
		RunE: func(cmd *cobra.Command, args []string) error {
			raw, err := o.fetch(cmd.Context(), cmd.ErrOrStderr(), args[0])
			if err != nil {
				return err
			}
			return o.show(cmd.OutOrStdout(), kind, raw)
		},
	}
	o.output.bind(cmd)
	f := cmd.Flags()
	f.BoolVar(&o.fromEnvoy, "from-envoy", false, "read the sidecar's own Envoy admin /config_dump (port-forwarded) instead of what fleetmesh sent")
	f.IntVar(&o.adminPort, "envoy-admin-port", 15000, "the sidecar's Envoy admin port, for --from-envoy")
	f.StringVar(&o.adminURL, "envoy-admin-url", "", "read Envoy's admin API at this URL instead of port-forwarding (implies --from-envoy)")
	if kind == "endpoints" || kind == "clusters" || kind == "all" {
		f.StringVar(&o.fqdn, "fqdn", "", "only the service with this name or FQDN (e.g. httpbin.httpbin.svc.cluster.local)")
	}
	if kind == "endpoints" {
		f.StringVar(&o.envoyCl, "cluster", "", "only the endpoints of this Envoy cluster (e.g. outbound|8080||httpbin.httpbin.svc.cluster.local)")
	}
	return cmd
}

// fetch returns the proxy's config dump in JSON.
func (o *proxyConfigOptions) fetch(ctx context.Context, errOut io.Writer, arg string) ([]byte, error) {
	if o.adminURL != "" {
		return httpGet(ctx, http.DefaultClient, strings.TrimSuffix(o.adminURL, "/")+"/config_dump?include_eds")
	}
	if o.fromEnvoy {
		pod, ns, found := strings.Cut(arg, ".")
		if !found {
			ns = o.kube.ns()
		}
		return envoyConfigDump(ctx, o.kube, ns, pod, o.adminPort)
	}
	planes, err := o.planeFlags.controlPlanes(ctx, o.kube)
	if err != nil {
		return nil, err
	}
	all, err := proxies(ctx, planes, proxyNamespace(arg, o.kube.ns()))
	if err != nil {
		return nil, err
	}
	px, err := findProxy(all, arg, o.kube.ns())
	if err != nil {
		return nil, err
	}
	return px.plane.get(ctx, "/debug/config_dump", url.Values{"proxy": {px.ID}})
}

func (o *proxyConfigOptions) show(out io.Writer, kind string, raw []byte) error {
	d, err := ParseConfigDump(raw)
	if err != nil {
		return err
	}
	d.filter(o.fqdn, o.envoyCl)
	if kind == "all" && o.output.format != "table" {
		if o.fqdn != "" {
			return fmt.Errorf("-o %s prints the whole dump: --fqdn applies to tables only", o.output.format)
		}
		return printRaw(out, o.output.format, raw)
	}
	sections := []string{kind}
	if kind == "all" {
		sections = []string{"clusters", "endpoints", "listeners", "routes"}
	}
	for i, s := range sections {
		if i > 0 {
			_, _ = fmt.Fprintln(out)
		}
		if err := o.showSection(out, s, d); err != nil {
			return err
		}
	}
	return nil
}

func (o *proxyConfigOptions) showSection(out io.Writer, kind string, d *ConfigDump) error {
	switch kind {
	case "clusters":
		if o.output.format != "table" {
			return printResources(out, o.output.format, d.Clusters)
		}
		rows := d.EnvoyClusterRows()
		return o.output.print(out, rows, func(w io.Writer) {
			row(w, "SERVICE FQDN", "PORT", "DIRECTION", "TYPE", "LB", "LOCALITY WEIGHTED", "PROTOCOL", "OUTLIER DETECTION", "NAME")
			for _, r := range rows {
				row(w, orNone(r.Service), orNone(r.Port), orNone(r.Direction), r.Type, r.LbPolicy, yesNo(r.LocalityWeighted), r.Protocol, yesNo(r.OutlierDetection), r.Name)
			}
		})
	case "endpoints":
		if o.output.format != "table" {
			return o.output.print(out, d.EndpointRows(), nil)
		}
		rows := d.EndpointRows()
		return o.output.print(out, rows, func(w io.Writer) {
			row(w, "ENDPOINT", "CLUSTER", "LOCALITY", "PRIORITY", "WEIGHT", "HEALTH", "HOSTNAME", "ENVOY CLUSTER")
			for _, r := range rows {
				row(w, r.Endpoint, orNone(r.Cluster), orNone(strings.Trim(r.Region+"/"+r.Zone, "/")), r.Priority, r.Weight, r.Health, orNone(r.Hostname), r.EnvoyCluster)
			}
		})
	case "listeners":
		if o.output.format != "table" {
			return printResources(out, o.output.format, d.Listeners)
		}
		rows := d.ListenerRows()
		return o.output.print(out, rows, func(w io.Writer) {
			row(w, "NAME", "ADDRESS", "TYPE", "DESTINATION")
			for _, r := range rows {
				row(w, r.Name, r.Address, r.Type, r.Destination)
			}
		})
	case "routes":
		if o.output.format != "table" {
			return printResources(out, o.output.format, d.Routes)
		}
		rows := d.RouteRows()
		return o.output.print(out, rows, func(w io.Writer) {
			row(w, "ROUTE", "VIRTUAL HOST", "DOMAINS", "MATCH", "CLUSTER")
			for _, r := range rows {
				row(w, r.RouteConfig, r.VirtualHost, domains(r.Domains), r.Match, r.Action)
			}
		})
	}
	return fmt.Errorf("unknown section %q", kind)
}

// filter keeps the resources of one service (fqdn: a name, name.namespace
// or the FQDN) and the endpoints of one Envoy cluster.
func (d *ConfigDump) filter(fqdn, envoyCluster string) {
	if fqdn != "" {
		other := func(name string) bool {
			_, _, svc := splitClusterName(name)
			return svc == "" || (svc != fqdn && !strings.HasPrefix(svc, fqdn+"."))
		}
		d.Clusters = slices.DeleteFunc(d.Clusters, func(c *clusterv3.Cluster) bool { return other(c.GetName()) })
		d.Endpoints = slices.DeleteFunc(d.Endpoints, func(e *endpointv3.ClusterLoadAssignment) bool { return other(e.GetClusterName()) })
	}
	if envoyCluster != "" {
		d.Endpoints = slices.DeleteFunc(d.Endpoints, func(e *endpointv3.ClusterLoadAssignment) bool { return e.GetClusterName() != envoyCluster })
	}
}

func printResources[T proto.Message](out io.Writer, format string, items []T) error {
	raw, err := resourcesJSON(items)
	if err != nil {
		return err
	}
	data, err := json.Marshal(raw)
	if err != nil {
		return err
	}
	return printRaw(out, format, data)
}

// printRaw prints JSON as indented JSON or as YAML.
func printRaw(out io.Writer, format string, data []byte) error {
	switch format {
	case "json":
		var v any
		if err := json.Unmarshal(data, &v); err != nil {
			return err
		}
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case "yaml":
		y, err := yaml.JSONToYAML(data)
		if err != nil {
			return err
		}
		_, err = out.Write(y)
		return err
	}
	return fmt.Errorf("unknown output format %q (-o): use table, yaml or json", format)
}

func (o *proxyConfigOptions) completeProxies(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	planes, err := o.planeFlags.controlPlanes(cmd.Context(), o.kube)
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	all, err := proxies(cmd.Context(), planes, o.kube.namespaceFlag())
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	var names []string
	for _, p := range all {
		names = append(names, p.displayName())
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func domains(d []string) string {
	switch len(d) {
	case 0:
		return "<none>"
	case 1, 2:
		return strings.Join(d, ",")
	}
	return fmt.Sprintf("%s,%s + %d more", d[0], d[1], len(d)-2)
}
