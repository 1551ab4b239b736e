package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
	"github.com/fleetmesh/fleetmesh/pkg/discovery"
	"github.com/fleetmesh/fleetmesh/pkg/federation"
	"github.com/fleetmesh/fleetmesh/pkg/model"
	"github.com/fleetmesh/fleetmesh/pkg/xds/placement"
)

func newExplainCommand(k *kubeFlags, p *planeFlags) *cobra.Command {
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
share. The consumer cluster's control plane answers it (its debug API,
/debug/explain) from the mesh its proxies are served: what it prints is
what is served.

Run it with the consumer cluster's own context; the control plane is
reached as proxy-status reaches it (RBAC list proxies.fleetmesh.io in the
service's namespace). From the control-plane cluster's context it reaches
the member with its Cluster object's credentials, which works when those
may reach the member's controller (a context joined with --credentials
context; the federation's own ServiceAccount may not, and explain says so).`,
		Example: `  fleetmesh --context k3d-cluster-2 explain httpbin.httpbin --from-cluster cluster-2
  fleetmesh --context k3d-cluster-2 explain httpbin -n httpbin --from-cluster cluster-2 -o json`,
		Args: exactArgs("SERVICE[.NAMESPACE]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, ns, found := strings.Cut(args[0], ".")
			if !found {
				ns = k.ns()
			}
			ex, err := explain(cmd.Context(), k, p, from, ns, name)
			if err != nil {
				return err
			}
			return o.print(cmd.OutOrStdout(), ex, func(w io.Writer) { table(w, ex) })
		},
	}
	o.bind(cmd)
	cmd.Flags().StringVar(&from, "from-cluster", "", "the consumer cluster whose calls are explained (required)")
	_ = cmd.MarkFlagRequired("from-cluster")
	_ = cmd.RegisterFlagCompletionFunc("from-cluster", completeClusters(k))
	return cmd
}

// consumerClients reach cluster from: through its Cluster object's
// credentials when the context is the control-plane cluster, else the
// context itself. through says which: "" or the Cluster's name.
func consumerClients(ctx context.Context, k *kubeFlags, from string) (cs *clients, through string, err error) {
	cs, err = k.clients()
	if err != nil {
		return nil, "", err
	}
	cl := &fmv1alpha1.Cluster{}
	switch err := cs.client.Get(ctx, client.ObjectKey{Name: from}, cl); {
	case apierrors.IsNotFound(err):
		return cs, "", nil // a standalone cluster, or the context is the consumer
	case err != nil:
		return nil, "", fmt.Errorf("get Cluster %s: %w", from, err)
	case cl.Spec.Mirrored:
		return cs, "", nil // a member's copy: the context is a member
	}
	cfg, err := federation.MemberConfig(ctx, cs.client, cl)
	if err != nil {
		return nil, "", fmt.Errorf("reach cluster %s through its Cluster object: %w", from, err)
	}
	member, err := newClients(cfg)
	if err != nil {
		return nil, "", err
	}
	return member, from, nil
}

// explain asks the consumer cluster's control plane where its calls to
// ns/name go, and adds who may call, from the ServiceImport where the
// cluster does not run the service itself.
func explain(ctx context.Context, k *kubeFlags, p *planeFlags, from, ns, name string) (*placement.Explanation, error) {
	cs, through, err := consumerClients(ctx, k, from)
	if err != nil {
		return nil, err
	}
	var planes []controlPlane
	if p.url != "" {
		planes, err = p.direct(k)
	} else {
		planes, err = p.controlPlanesOf(ctx, cs)
	}
	if err != nil {
		if through != "" {
			return nil, fmt.Errorf("reach %s's control plane with the credentials of Cluster %s: %w; run explain with %s's own context (--context), where it reaches its control plane as you", from, through, err, from)
		}
		return nil, err
	}
	var ex *placement.Explanation
	var errs []error
	for _, cp := range planes {
		data, err := cp.get(ctx, "/debug/explain", url.Values{"namespace": {ns}, "service": {name}})
		if err == nil {
			ex = &placement.Explanation{}
			if err = json.Unmarshal(data, ex); err == nil {
				break
			}
			ex = nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", cp.Name, err))
	}
	if ex == nil {
		return nil, errors.Join(errs...)
	}
	if ex.FromCluster != from {
		return nil, fmt.Errorf("the control plane reached serves cluster %s, not %s: run explain with %s's context, or --control-plane-url of its controller", ex.FromCluster, from, from)
	}
	if ex.Objects["service"] == "" {
		// Served from elsewhere only: the fleet's callers, as its import
		// carries them.
		imp := &fmv1alpha1.ServiceImport{}
		switch err := cs.client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, imp); {
		case err == nil:
			ex.Callers = discovery.Callers(imp.Spec.ServiceAccountName)
		case apierrors.IsForbidden(err) && through != "":
			return nil, fmt.Errorf("the credentials of Cluster %s may not read ServiceImports there: run explain with %s's own context (--context), where it reads its objects as you", through, through)
		case !apierrors.IsNotFound(err):
			return nil, fmt.Errorf("get ServiceImport %s/%s in %s: %w", ns, name, from, err)
		}
	}
	ex.Access = access(ex)
	return ex, nil
}

// access says who may call the service and how: what the serving
// sidecars enforce.
func access(ex *placement.Explanation) string {
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

func table(w io.Writer, ex *placement.Explanation) {
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
