package cli

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/fleetmesh/fleetmesh/pkg/internal/capabilities"
)

// ClustersetZone is the MCS API's DNS zone.
const ClustersetZone = "clusterset.local"

// CorefileAnnotation is the annotation of CoreDNS's pod template that
// holds the SHA-256 of the Corefile `fleetmesh dns enable` wrote:
// changing it rolls CoreDNS out with the new Corefile.
const CorefileAnnotation = "fleetmesh.io/corefile-sha256"

type dnsOptions struct {
	configMap, deployment, serviceAccount string
	dryRun                                bool
}

func newDNSCommand(k *kubeFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dns",
		Short: "Serve the clusterset.local names of the MCS API from the cluster's CoreDNS",
	}
	cmd.AddCommand(newDNSEnableCommand(k))
	return cmd
}

func newDNSEnableCommand(k *kubeFlags) *cobra.Command {
	o := dnsOptions{}
	cmd := &cobra.Command{
		Use:   "enable",
		Short: "Make the cluster's CoreDNS answer <svc>.<ns>.svc.clusterset.local",
		Long: `Make the cluster's CoreDNS (1.12.2 or later) answer the MCS API's names,
<svc>.<ns>.svc.clusterset.local, from the ServiceImports fleetmesh writes (the
clusterset IP, which the cluster's proxies route by its GlobalTrafficPolicy)
and, for headless services, from the MCS EndpointSlices.

It adds clusterset.local to the zones of the Corefile's kubernetes plugin that
serves cluster.local and 'multicluster clusterset.local' to its block, then
rolls CoreDNS out. Run it again: it changes nothing that is already right.
It checks first that the cluster serves the MCS API (manifests/mcs-crd) and
that CoreDNS may read ServiceImports (kubectl apply -k manifests/coredns).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := k.clients()
			if err != nil {
				return err
			}
			return enableClustersetDNS(cmd.Context(), cmd.OutOrStdout(), c, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.configMap, "configmap", "kube-system/coredns", "the ConfigMap (namespace/name) of CoreDNS's Corefile")
	f.StringVar(&o.deployment, "deployment", "kube-system/coredns", "CoreDNS's Deployment (namespace/name), rolled out after the change; empty rolls nothing out")
	f.StringVar(&o.serviceAccount, "service-account", "kube-system/coredns", "CoreDNS's ServiceAccount (namespace/name), which must be allowed to read ServiceImports")
	f.BoolVar(&o.dryRun, "dry-run", false, "print the new Corefile and change nothing")
	return cmd
}

func splitKey(flag, key string) (types.NamespacedName, error) {
	ns, name, ok := strings.Cut(key, "/")
	if !ok || ns == "" || name == "" {
		return types.NamespacedName{}, fmt.Errorf("--%s %q: want namespace/name", flag, key)
	}
	return types.NamespacedName{Namespace: ns, Name: name}, nil
}

func enableClustersetDNS(ctx context.Context, out io.Writer, c *clients, o dnsOptions) error {
	cmKey, err := splitKey("configmap", o.configMap)
	if err != nil {
		return err
	}
	cm, err := c.core.CoreV1().ConfigMaps(cmKey.Namespace).Get(ctx, cmKey.Name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("read CoreDNS's ConfigMap %s: %w", cmKey, err)
	}
	corefile, ok := cm.Data["Corefile"]
	if !ok {
		return fmt.Errorf("ConfigMap %s has no key Corefile", cmKey)
	}
	next, err := ClustersetCorefile(corefile, ClustersetZone)
	if err != nil {
		return fmt.Errorf("ConfigMap %s: %w", cmKey, err)
	}
	if o.dryRun {
		_, err := io.WriteString(out, next)
		return err
	}
	if err := checkClustersetReadable(ctx, c, o.serviceAccount); err != nil {
		return err
	}
	if next == corefile {
		fmt.Fprintf(out, "ConfigMap %s already serves %s\n", cmKey, ClustersetZone)
	} else {
		cm.Data["Corefile"] = next
		if _, err := c.core.CoreV1().ConfigMaps(cmKey.Namespace).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("write CoreDNS's ConfigMap %s: %w", cmKey, err)
		}
		fmt.Fprintf(out, "ConfigMap %s now serves %s\n", cmKey, ClustersetZone)
	}
	if o.deployment == "" {
		return nil
	}
	depKey, err := splitKey("deployment", o.deployment)
	if err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(next))
	patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{%q:%q}}}}}`, CorefileAnnotation, hex.EncodeToString(sum[:]))
	if _, err := c.core.AppsV1().Deployments(depKey.Namespace).Patch(ctx, depKey.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("roll out CoreDNS's Deployment %s: %w", depKey, err)
	}
	fmt.Fprintf(out, "Deployment %s rolls out with it\n", depKey)
	return nil
}

// checkClustersetReadable checks that the cluster serves the MCS API and
// that CoreDNS's ServiceAccount may read its ServiceImports: without
// either, CoreDNS would wait for ServiceImports that never come.
func checkClustersetReadable(ctx context.Context, c *clients, serviceAccount string) error {
	ok, why, err := capabilities.MCS(c.core.Discovery())
	if err != nil {
		return fmt.Errorf("ask whether the cluster serves the MCS API: %w", err)
	}
	if !ok {
		return errors.New(why)
	}
	sa, err := splitKey("service-account", serviceAccount)
	if err != nil {
		return err
	}
	user := "system:serviceaccount:" + sa.Namespace + ":" + sa.Name
	for _, verb := range []string{"list", "watch"} {
		review, err := c.core.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: user, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + sa.Namespace, "system:authenticated"},
			ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: verb, Group: mcsv1beta1.GroupName, Resource: mcsv1beta1.ServiceImportPluralName},
		}}, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("ask whether %s may %s serviceimports: %w", user, verb, err)
		}
		if !review.Status.Allowed {
			return fmt.Errorf("CoreDNS's ServiceAccount %s may not %s serviceimports.%s: kubectl apply -k manifests/coredns first", sa, verb, mcsv1beta1.GroupName)
		}
	}
	return nil
}

// ClustersetCorefile is corefile with zone (clusterset.local) served by
// the kubernetes plugin that serves cluster.local, as a multicluster zone:
// the zone joins the plugin's zones and `multicluster <zone>` its block
// (made if it has none). A Corefile that already does is returned as it
// is.
func ClustersetCorefile(corefile, zone string) (string, error) {
	lines := strings.Split(corefile, "\n")
	at := slices.IndexFunc(lines, func(l string) bool {
		f := strings.Fields(l)
		return len(f) > 1 && f[0] == "kubernetes" && slices.Contains(f, "cluster.local")
	})
	if at < 0 {
		return "", errors.New("the Corefile has no kubernetes plugin serving cluster.local")
	}
	indent := leadingSpace(lines[at])
	fields := strings.Fields(lines[at])
	block := fields[len(fields)-1] == "{"
	zones := fields[1:]
	if block {
		zones = zones[:len(zones)-1]
	}
	if !slices.Contains(zones, zone) {
		i := slices.Index(zones, "cluster.local")
		zones = slices.Insert(slices.Clone(zones), i+1, zone)
	}
	head := indent + "kubernetes " + strings.Join(zones, " ") + " {"
	if !block {
		lines = slices.Replace(lines, at, at+1, head, indent+"    multicluster "+zone, indent+"}")
		return strings.Join(lines, "\n"), nil
	}
	lines[at] = head
	// The block's own lines (depth 1), up to its closing brace; the new
	// line is indented as its first.
	depth, inner := 1, ""
	for i := at + 1; i < len(lines) && depth > 0; i++ {
		f := strings.Fields(lines[i])
		if depth == 1 && len(f) > 0 && f[0] != "}" && inner == "" {
			inner = leadingSpace(lines[i])
		}
		if depth == 1 && len(f) > 0 && f[0] == "multicluster" {
			if !slices.Contains(f[1:], zone) {
				lines[i] = lines[i] + " " + zone
			}
			return strings.Join(lines, "\n"), nil
		}
		depth += strings.Count(lines[i], "{") - strings.Count(lines[i], "}")
	}
	lines = slices.Insert(lines, at+1, cmp.Or(inner, indent+"    ")+"multicluster "+zone)
	return strings.Join(lines, "\n"), nil
}

// leadingSpace is the indentation a line begins with.
func leadingSpace(line string) string {
	return line[:len(line)-len(strings.TrimLeft(line, " \t"))]
}
