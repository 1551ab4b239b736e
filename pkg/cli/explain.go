package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
	"github.com/fleetmesh/fleetmesh/pkg/discovery"
	"github.com/fleetmesh/fleetmesh/pkg/federation"
	"github.com/fleetmesh/fleetmesh/pkg/model"
	"github.com/fleetmesh/fleetmesh/pkg/translate"
)

// Explanation is where a consumer cluster's traffic for a service goes.
type Explanation struct {
	Service     string `json:"service"`
	Namespace   string `json:"namespace"`
	FromCluster string `json:"fromCluster"`
	// LbType is the consumer's policy for the service (Locality without
	// a GlobalTrafficPolicy).
	LbType    model.LbType `json:"lbType"`
	HasPolicy bool         `json:"hasPolicy"`
	// Exporters are the clusters that serve the service to FromCluster,
	// itself included when it runs the service.
	Exporters        []string        `json:"exporters"`
	Ports            []ExplainedPort `json:"ports"`
	UnmatchedTargets []string        `json:"unmatchedTargets,omitempty"`
	// Callers are the ServiceAccounts (namespace/name) the exporters let
	// call the service, from the serviceAccountName the fleet carries
	// (the oldest export's); empty is anyone.
	Callers []string `json:"callers,omitempty"`
	// MTLSMode is the mode of the service's namespace in FromCluster
	// (the same in every member, by namespace sameness).
	MTLSMode model.MTLSMode `json:"mtlsMode"`
	// Access says, in a sentence, who may call and how.
	Access  string            `json:"access"`
	Summary string            `json:"summary"`
	Objects map[string]string `json:"objects"`
}

// ExplainedPort is one service port's placement.
type ExplainedPort struct {
	Port     uint32         `json:"port"`
	Protocol model.Protocol `json:"protocol"`
	Serving  []Share        `json:"serving"`
	// Unused are exporters that get none of this port's traffic, and why.
	Unused []Unused `json:"unused,omitempty"`
}

// Share is one cluster's part of a port's traffic.
type Share struct {
	Priority   int    `json:"priority"`
	Cluster    string `json:"cluster"`
	ClusterKey string `json:"clusterKey"`
	Via        string `json:"via"`
	Endpoints  int    `json:"endpoints"`
	Weight     uint32 `json:"weight"`
	// Percent of the port's calls the cluster gets while every tier
	// above it is healthy: its share of priority 0, 0 for standby tiers.
	Percent float64 `json:"percent"`
}

// Unused is an exporter left out, and why.
type Unused struct {
	Cluster string `json:"cluster"`
	Reason  string `json:"reason"`
}

func newExplainCommand(k *kubeFlags) *cobra.Command {
	var (
		o    outputFlag
		from string
	)
	cmd := &cobra.Command{
		Use:   "explain SERVICE[.NAMESPACE] --from-cluster CLUSTER",
		Short: "Explain which clusters serve a service to a consumer cluster, and with what share",
		Long: `Explain where a consumer cluster's calls to a service go right now: which
clusters serve it (from the ServiceImport and the cluster's own Service),
which the GlobalTrafficPolicy lets the traffic reach (Locality, FailOver,
ActiveActive), in which priority tier, through what (the cluster's own pods,
a remote cluster's pods on a shared network, or its gateway), and with what
share. It runs the same placement code as the control plane.

Run it with the consumer cluster's own context. From the control-plane
cluster's context it reaches the member with its Cluster object's
credentials, which works when those may read GlobalTrafficPolicies (a
context joined with --credentials context; the federation's own
ServiceAccount may not, and explain says so).`,
		Example: `  fleetmesh --context k3d-cluster-2 explain httpbin.httpbin --from-cluster cluster-2
  fleetmesh --context k3d-cluster-2 explain httpbin -n httpbin --from-cluster cluster-2 -o json`,
		Args: exactArgs("SERVICE[.NAMESPACE]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, ns, found := strings.Cut(args[0], ".")
			if !found {
				ns = k.ns()
			}
			ex, err := explain(cmd.Context(), k, from, ns, name)
			if err != nil {
				return err
			}
			return o.print(cmd.OutOrStdout(), ex, func(w *tabwriter.Writer) { ex.table(w) })
		},
	}
	o.bind(cmd)
	cmd.Flags().StringVar(&from, "from-cluster", "", "the consumer cluster whose calls are explained (required)")
	_ = cmd.MarkFlagRequired("from-cluster")
	_ = cmd.RegisterFlagCompletionFunc("from-cluster", completeClusters(k))
	return cmd
}

// consumerClient reaches cluster from: through its Cluster object's
// credentials when the context is the control-plane cluster, else the
// context itself. through says which: "" or the Cluster's name.
func consumerClient(ctx context.Context, k *kubeFlags, from string) (c client.Client, through string, err error) {
	cs, err := k.clients()
	if err != nil {
		return nil, "", err
	}
	cl := &fmv1alpha1.Cluster{}
	switch err := cs.client.Get(ctx, client.ObjectKey{Name: from}, cl); {
	case apierrors.IsNotFound(err):
		return cs.client, "", nil // a standalone cluster, or the context is the consumer
	case err != nil:
		return nil, "", fmt.Errorf("get Cluster %s: %w", from, err)
	case cl.Spec.Mirrored:
		return cs.client, "", nil // a member's copy: the context is a member
	}
	cfg, err := federation.MemberConfig(ctx, cs.client, cl)
	if err != nil {
		return nil, "", fmt.Errorf("reach cluster %s through its Cluster object: %w", from, err)
	}
	member, err := newClients(cfg)
	if err != nil {
		return nil, "", err
	}
	return member.client, from, nil
}

func explain(ctx context.Context, k *kubeFlags, from, ns, name string) (*Explanation, error) {
	c, through, err := consumerClient(ctx, k, from)
	if err != nil {
		return nil, err
	}
	var (
		clusters fmv1alpha1.ClusterList
		services corev1.ServiceList
		slices   discoveryv1.EndpointSliceList
		imports  fmv1alpha1.ServiceImportList
		exports  fmv1alpha1.ServiceExportList
		policies fmv1alpha1.GlobalTrafficPolicyList
	)
	if err := c.List(ctx, &clusters); err != nil {
		return nil, fmt.Errorf("list Clusters in %s: %w", from, err)
	}
	for _, l := range []client.ObjectList{&services, &slices, &imports, &exports, &policies} {
		if err := c.List(ctx, l, client.InNamespace(ns)); err != nil {
			if apierrors.IsForbidden(err) && through != "" {
				// The federation's own identity reads only what it needs.
				return nil, fmt.Errorf("the credentials of Cluster %s may not list %T there: run explain with %s's own context (--context), where it reads its objects as you", through, l, through)
			}
			return nil, fmt.Errorf("list %T in %s: %w", l, from, err)
		}
	}
	// The MCS API's exports, where the cluster serves it.
	var mcsExports mcsv1beta1.ServiceExportList
	if err := c.List(ctx, &mcsExports, client.InNamespace(ns)); err != nil && !meta.IsNoMatchError(err) {
		return nil, fmt.Errorf("list MCS ServiceExports in %s: %w", from, err)
	}
	in := &discovery.Objects{
		ClusterName: from, Clusters: clusters.Items, Services: services.Items,
		EndpointSlices: slices.Items, Imports: imports.Items, Exports: exports.Items, Policies: policies.Items,
		MCSExports: mcsExports.Items,
	}
	// The namespace's mTLS mode, when it may be read.
	namespace := corev1.Namespace{}
	if err := c.Get(ctx, client.ObjectKey{Name: ns}, &namespace); err == nil {
		in.Namespaces = []corev1.Namespace{namespace}
	}
	ex, err := Explain(discovery.Build(in), ns, name)
	if err != nil {
		return nil, err
	}
	for _, imp := range imports.Items {
		if imp.Name == name && ex.Objects["service"] == "" {
			// Served from elsewhere only: the fleet's callers.
			ex.Callers = discovery.Callers(imp.Spec.ServiceAccountName)
		}
	}
	ex.Access = access(ex)
	return ex, nil
}

// access says who may call the service and how: what the serving
// sidecars enforce.
func access(ex *Explanation) string {
	who := "Callers: anyone (serviceAccountName *)."
	if len(ex.Callers) > 0 {
		who = "Callers: only " + strings.Join(ex.Callers, ", ") + "; others get 403 (HTTP) or a closed connection (TCP)."
	}
	mode := " mTLS: PERMISSIVE (mesh mTLS and plaintext)."
	if ex.MTLSMode == model.MTLSStrict {
		mode = " mTLS: STRICT (mesh mTLS only: plaintext callers, proxyless gRPC included, are refused)."
	} else if len(ex.Callers) > 0 {
		mode += " A plaintext caller has no identity: it gets 403 at the pods, no route at the gateway, and no north-south path."
	}
	return who + mode
}

// Explain places the service's traffic from the mesh's local cluster with
// the control plane's own placement (translate.Place).
func Explain(mesh *model.Mesh, ns, name string) (*Explanation, error) {
	var svc *model.Service
	for i := range mesh.Services {
		if s := &mesh.Services[i]; s.Namespace == ns && s.Name == name {
			svc = s
		}
	}
	if svc == nil {
		return nil, fmt.Errorf("service %s.%s is neither a Service nor a ServiceImport in cluster %s", name, ns, mesh.LocalCluster)
	}
	byName := map[string]*model.Cluster{}
	for i := range mesh.Clusters {
		byName[mesh.Clusters[i].Name] = &mesh.Clusters[i]
	}
	ex := &Explanation{
		Service: name, Namespace: ns, FromCluster: mesh.LocalCluster, LbType: model.Locality,
		Objects: map[string]string{}, MTLSMode: mesh.MTLSMode(ns, ""),
	}
	if svc.Export != nil {
		ex.Callers = svc.Export.Callers
	}
	if svc.Policy != nil {
		ex.LbType, ex.HasPolicy = svc.Policy.LbType, true
		ex.Objects["globalTrafficPolicy"] = ns + "/" + name
	}
	if len(svc.ImportedFrom) > 0 {
		ex.Objects["serviceImport"] = ns + "/" + name
	}
	for _, p := range svc.Ports {
		for _, e := range p.Endpoints {
			if e.Cluster == mesh.LocalCluster && !e.Gateway {
				ex.Objects["service"] = ns + "/" + name
			}
		}
	}
	exporters := map[string]bool{}
	if ex.Objects["service"] != "" {
		exporters[mesh.LocalCluster] = true
	}
	for _, c := range svc.ImportedFrom {
		exporters[c] = true
	}
	ex.Exporters = sortedKeys(exporters)

	for i := range svc.Ports {
		port := &svc.Ports[i]
		pl := translate.Place(mesh, svc, port)
		ex.UnmatchedTargets = pl.Unmatched
		ep := ExplainedPort{Port: port.Port, Protocol: port.Protocol}
		serving := map[string]bool{}
		var total uint32
		if len(pl.Tiers) > 0 {
			for _, l := range pl.Tiers[0] {
				total += l.Weight
			}
		}
		for prio, tier := range pl.Tiers {
			for _, l := range tier {
				serving[l.Cluster.Name] = true
				s := Share{
					Priority: prio, Cluster: l.Cluster.Name, ClusterKey: l.Cluster.Key(),
					Via: via(mesh, l), Endpoints: len(l.Endpoints), Weight: l.Weight,
				}
				if prio == 0 && total > 0 {
					s.Percent = 100 * float64(l.Weight) / float64(total)
				}
				ep.Serving = append(ep.Serving, s)
			}
		}
		for _, c := range ex.Exporters {
			if !serving[c] {
				ep.Unused = append(ep.Unused, Unused{Cluster: c, Reason: unusedReason(mesh, svc, port, c, ex.LbType)})
			}
		}
		ex.Ports = append(ex.Ports, ep)
	}
	ex.Summary = summary(ex)
	return ex, nil
}

func via(mesh *model.Mesh, l translate.Locality) string {
	if l.Cluster.Name == mesh.LocalCluster {
		return "local pods"
	}
	for _, e := range l.Endpoints {
		if e.Gateway {
			return fmt.Sprintf("gateway %s:%d", e.Address, e.Port)
		}
	}
	return "pods (shared network)"
}

// unusedReason says why an exporter gets none of a port's traffic.
func unusedReason(mesh *model.Mesh, svc *model.Service, port *model.Port, cluster string, lb model.LbType) string {
	ready, gateway := 0, false
	for _, e := range port.Endpoints {
		if e.Cluster == cluster && e.Ready {
			ready++
			gateway = gateway || e.Gateway
		}
	}
	switch {
	case ready == 0:
		return "no ready endpoints"
	case gateway && (svc.Headless || port.Protocol == model.ProtocolTCP):
		return "only reachable through its gateway, which cannot route headless services or TCP ports"
	case lb == model.Locality && cluster != mesh.LocalCluster:
		return "the policy is Locality: traffic stays in " + mesh.LocalCluster
	}
	return "not a target of the GlobalTrafficPolicy (or weight 0)"
}

func summary(ex *Explanation) string {
	var b strings.Builder
	policy := "no GlobalTrafficPolicy: Locality"
	if ex.HasPolicy {
		policy = "GlobalTrafficPolicy " + ex.Namespace + "/" + ex.Service + ": " + string(ex.LbType)
	}
	fmt.Fprintf(&b, "%s.%s from %s (%s). ", ex.Service, ex.Namespace, ex.FromCluster, policy)
	served := false
	for _, p := range ex.Ports {
		served = served || len(p.Serving) > 0
	}
	switch {
	case !served && ex.LbType == model.Locality:
		fmt.Fprintf(&b, "%s has no ready endpoint of its own and the policy keeps traffic local: calls fail (HTTP 503, gRPC UNAVAILABLE).", ex.FromCluster)
	case !served:
		b.WriteString("No cluster the policy allows has a ready endpoint: calls fail (HTTP 503, gRPC UNAVAILABLE).")
	case ex.LbType == model.FailOver:
		b.WriteString("Priority 0 takes every call while it has healthy endpoints; when they fail or go, the next priority takes over, its clusters sharing by weight.")
	case ex.LbType == model.ActiveActive:
		b.WriteString("Every call goes to one of the clusters at priority 0, in proportion to their weights.")
	default:
		fmt.Fprintf(&b, "Calls stay in %s.", ex.FromCluster)
	}
	if len(ex.UnmatchedTargets) > 0 {
		fmt.Fprintf(&b, " Ignored targets (no cluster exporting the service): %s.", strings.Join(ex.UnmatchedTargets, ", "))
	}
	return b.String()
}

func (ex *Explanation) table(w io.Writer) {
	_, _ = fmt.Fprintln(w, ex.Summary)
	if ex.Access != "" {
		_, _ = fmt.Fprintln(w, ex.Access)
	}
	_, _ = fmt.Fprintln(w)
	row(w, "PORT", "PRIORITY", "CLUSTER", "CLUSTERKEY", "VIA", "ENDPOINTS", "WEIGHT", "SHARE")
	for _, p := range ex.Ports {
		for _, s := range p.Serving {
			share := fmt.Sprintf("%.0f%%", s.Percent)
			if s.Priority > 0 {
				share = "standby"
			}
			row(w, fmt.Sprintf("%d/%s", p.Port, p.Protocol), s.Priority, s.Cluster, s.ClusterKey, s.Via, s.Endpoints, s.Weight, share)
		}
		for _, u := range p.Unused {
			row(w, fmt.Sprintf("%d/%s", p.Port, p.Protocol), "-", u.Cluster, "", "not used: "+u.Reason, "", "", "0%")
		}
	}
}
