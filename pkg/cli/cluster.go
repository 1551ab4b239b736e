package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
	"github.com/fleetmesh/fleetmesh/pkg/federation"
)

// FieldOwner is the field manager of the objects the CLI writes.
const FieldOwner = "fleetmesh-cli"

// DefaultSystemNamespace is where fleetmesh runs and keeps member
// credentials.
const DefaultSystemNamespace = "fleetmesh-system"

// memberLabel on a Secret names the member whose kubeconfig it holds.
const memberLabel = "fleetmesh.io/cluster"

// memberSecretName names the Secret holding a member's kubeconfig.
func memberSecretName(cluster string) string { return "fleetmesh-member-" + cluster }

func newClusterCommand(k *kubeFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "cluster",
		Aliases: []string{"clusters"},
		Short:   "Join member clusters to the fleet, list them, or take them out",
		Long: `Manage the fleet's members. These commands talk to the control-plane
cluster (--kubeconfig/--context), where the federation runs and the Cluster
objects live.`,
	}
	cmd.AddCommand(newJoinCommand(k), newLeaveCommand(k), newListCommand(k))
	return cmd
}

type joinOptions struct {
	memberKubeconfig string
	memberContext    string
	apiHost          string
	secretNamespace  string
	skipCheck        bool
	credentials      string
	tokenTTL         time.Duration
	spec             fmv1alpha1.ClusterSpec
}

// FederationServiceAccount is the member's identity for the federation
// (manifests/member creates it with its least-privilege role).
const FederationServiceAccount = "fleetmesh-federation"

func newJoinCommand(k *kubeFlags) *cobra.Command {
	o := joinOptions{}
	cmd := &cobra.Command{
		Use:   "join NAME --member-context CONTEXT",
		Short: "Join a member cluster to the fleet",
		Long: `Join a member cluster: read the kubeconfig context of the member, check
that its API server answers, store the credentials in a Secret of the
control-plane cluster, and create (or update) the Cluster object NAME
pointing at it. The federation then connects to the member and reports it
Ready in 'fleetmesh cluster list'.

The federation acts in the member as the ServiceAccount
fleetmesh-system/fleetmesh-federation that 'kubectl apply -k
manifests/member' creates with only the rights it needs: join asks the
member for a token of it (--token-ttl, a day), bound to the Secret
fleetmesh-federation-token-a or -b in the member's fleetmesh-system; the
federation renews it before it expires and revokes the token it replaced
by deleting the Secret that one was bound to. Joining again revokes the
previous token the same way.
--credentials context stores the context's own credentials instead.

A member whose kubeconfig says 127.0.0.1 or localhost (k3d, kind) is not
reachable from the control plane's pods: --api-host names the address they
should use instead; the port is kept and TLS still checks the certificate
against the original name.`,
		Example: `  # the article's three k3d clusters, joined to the control-plane cluster
  fleetmesh --context k3d-control-plane cluster join cluster-1 \
      --member-context k3d-cluster-1 --api-host 10.0.0.5 \
      --gateway-host 10.0.0.5 --gateway-port 81`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runJoin(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), k, args[0], o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.memberContext, "member-context", "", "the member's context in the kubeconfig (required)")
	f.StringVar(&o.memberKubeconfig, "member-kubeconfig", "", "the kubeconfig file holding --member-context (default: the one --kubeconfig reads)")
	f.StringVar(&o.apiHost, "api-host", "", "replace a loopback API server address (127.0.0.1, localhost) of the member with this host")
	f.StringVar(&o.spec.GatewayHost, "gateway-host", "", "host or IP of the member's fleetmesh gateway")
	f.Int32Var(&o.spec.GatewayPort, "gateway-port", fmv1alpha1.DefaultGatewayPort, "port of the member's fleetmesh gateway")
	f.StringVar(&o.spec.Region, "region", "default", "the member's region (part of its clusterKey)")
	f.StringVar(&o.spec.Zone, "zone", "default", "the member's zone (part of its clusterKey)")
	f.StringVar(&o.spec.Group, "group", "default", "the member's group (part of its clusterKey)")
	f.StringVar(&o.spec.Network, "network", "", "the member's network: members with the same network reach each other's pods directly")
	f.StringVar(&o.secretNamespace, "secret-namespace", DefaultSystemNamespace, "namespace of the control-plane cluster that keeps the member's credentials")
	f.BoolVar(&o.skipCheck, "skip-check", false, "do not check that the member's API server answers before joining it")
	f.StringVar(&o.credentials, "credentials", "service-account", "what the federation uses in the member: service-account (a token of fleetmesh-system/fleetmesh-federation) or context (the context's own credentials)")
	f.DurationVar(&o.tokenTTL, "token-ttl", federation.DefaultTokenTTL, "with --credentials service-account: how long the token is valid (the federation renews it, --member-token-ttl)")
	_ = cmd.MarkFlagRequired("member-context")
	_ = cmd.RegisterFlagCompletionFunc("member-context", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		raw, err := onlyKubeconfig(o.memberKubeconfig).rawConfig()
		if o.memberKubeconfig == "" {
			raw, err = k.rawConfig()
		}
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		return slices.Sorted(maps.Keys(raw.Contexts)), cobra.ShellCompDirectiveNoFileComp
	})
	return cmd
}

func runJoin(ctx context.Context, out, errOut io.Writer, k *kubeFlags, name string, o joinOptions) error {
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return fmt.Errorf("cluster name %q: %s", name, strings.Join(errs, "; "))
	}
	memberFlags := onlyKubeconfig(o.memberKubeconfig)
	if o.memberKubeconfig == "" {
		memberFlags = onlyKubeconfig(*k.KubeConfig)
	}
	raw, err := memberFlags.rawConfig()
	if err != nil {
		return fmt.Errorf("read the member's kubeconfig: %w", err)
	}
	kubeconfig, notes, err := MemberKubeconfig(raw, o.memberContext, o.apiHost)
	if err != nil {
		return err
	}
	for _, n := range notes {
		_, _ = fmt.Fprintln(errOut, "note:", n)
	}
	if !o.skipCheck {
		if err := checkMember(kubeconfig); err != nil {
			return fmt.Errorf("the member's API server (context %s) does not answer: %w (--skip-check joins it anyway)", o.memberContext, err)
		}
	}
	hub, err := k.clients()
	if err != nil {
		return err
	}
	// Joined before: the token in use is revoked once its successor is
	// stored.
	previous := &corev1.Secret{}
	switch err := hub.client.Get(ctx, client.ObjectKey{Namespace: o.secretNamespace, Name: memberSecretName(name)}, previous); {
	case apierrors.IsNotFound(err):
	case err != nil:
		return fmt.Errorf("get Secret %s/%s: %w", o.secretNamespace, memberSecretName(name), err)
	}
	var token federation.BoundToken
	var member *clients
	switch o.credentials {
	case "context":
	case "service-account":
		// The token is asked for through the context as the operator
		// reaches it (not through --api-host).
		local, _, err := MemberKubeconfig(raw, o.memberContext, "")
		if err != nil {
			return err
		}
		if kubeconfig, token, member, err = withServiceAccountToken(ctx, local, kubeconfig, o.tokenTTL, previous.Annotations[fmv1alpha1.AnnotationTokenBoundTo]); err != nil {
			return fmt.Errorf("--member-context %s: %w", o.memberContext, err)
		}
	default:
		return fmt.Errorf("--credentials %q: want service-account or context", o.credentials)
	}
	expires := token.Expires

	secret, err := writeMemberSecret(ctx, hub.client, name, o.secretNamespace, kubeconfig, token)
	if err != nil {
		return err
	}
	if old := previous.Annotations[fmv1alpha1.AnnotationTokenBoundTo]; old != "" && member != nil {
		if err := federation.RevokeToken(ctx, member.client, old); err != nil {
			_, _ = fmt.Fprintf(errOut, "warning: the previous token stays valid until %s: %v\n", previous.Annotations[fmv1alpha1.AnnotationTokenExpires], err)
		}
	}
	cl, err := writeCluster(ctx, hub.client, name, o.spec, secret)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "cluster %s joined: clusterKey %s, credentials in Secret %s/%s\n", name, cl.Key(), secret.Namespace, secret.Name)
	if err == nil && !expires.IsZero() {
		_, err = fmt.Fprintf(out, "the federation acts in %s as %s/%s; its token expires %s (the federation renews it before)\n", name, DefaultSystemNamespace, FederationServiceAccount, expires.UTC().Format(time.RFC3339))
	}
	return err
}

// withServiceAccountToken asks the member (through local, a kubeconfig
// the operator can use) for a token of the federation's ServiceAccount,
// bound to the one of federation.TokenSecrets current is not, and returns
// stored with its user's credentials replaced by that token, and the
// member's clients.
func withServiceAccountToken(ctx context.Context, local, stored []byte, ttl time.Duration, current string) ([]byte, federation.BoundToken, *clients, error) {
	cfg, err := clientcmd.RESTConfigFromKubeConfig(local)
	if err != nil {
		return nil, federation.BoundToken{}, nil, err
	}
	member, err := newClients(cfg)
	if err != nil {
		return nil, federation.BoundToken{}, nil, err
	}
	token, err := federation.RequestBoundToken(ctx, member.client, DefaultSystemNamespace, FederationServiceAccount, ttl, current)
	if apierrors.IsNotFound(err) {
		return nil, federation.BoundToken{}, nil, fmt.Errorf("the member has no ServiceAccount %s/%s: install fleetmesh there first (kubectl apply -k manifests/member), or join with --credentials context (%w)", DefaultSystemNamespace, FederationServiceAccount, err)
	}
	if err != nil {
		return nil, federation.BoundToken{}, nil, fmt.Errorf("ask the member for a token: %w", err)
	}
	data, err := federation.WithToken(stored, token.Token)
	return data, token, member, err
}

// MemberKubeconfig extracts one context of a kubeconfig into a standalone
// kubeconfig (certificates and tokens inlined) that the federation can use
// from another machine. With apiHost, a loopback API server address is
// replaced by apiHost; TLS keeps checking the certificate against the
// original name. It returns notes worth telling the user.
func MemberKubeconfig(raw clientcmdapi.Config, contextName, apiHost string) ([]byte, []string, error) {
	var notes []string
	kctx, ok := raw.Contexts[contextName]
	if !ok {
		return nil, nil, fmt.Errorf("--member-context %q is not in the kubeconfig (it has: %s)", contextName, strings.Join(slices.Sorted(maps.Keys(raw.Contexts)), ", "))
	}
	if _, ok := raw.Clusters[kctx.Cluster]; !ok {
		return nil, nil, fmt.Errorf("--member-context %q names cluster %q, which the kubeconfig does not have", contextName, kctx.Cluster)
	}
	cfg := raw.DeepCopy()
	cfg.CurrentContext = contextName
	if err := clientcmdapi.MinifyConfig(cfg); err != nil {
		return nil, nil, fmt.Errorf("--member-context %q: %w", contextName, err)
	}
	if err := clientcmdapi.FlattenConfig(cfg); err != nil {
		return nil, nil, fmt.Errorf("--member-context %q: inline its certificates: %w", contextName, err)
	}
	for _, c := range cfg.Clusters {
		u, err := url.Parse(c.Server)
		if err != nil || u.Host == "" {
			return nil, nil, fmt.Errorf("--member-context %q: server %q is not a URL", contextName, c.Server)
		}
		loopback := isLoopbackHost(u.Hostname())
		switch {
		case apiHost != "" && loopback:
			if c.TLSServerName == "" && !c.InsecureSkipTLSVerify {
				c.TLSServerName = u.Hostname()
			}
			if port := u.Port(); port != "" {
				u.Host = net.JoinHostPort(apiHost, port)
			} else {
				u.Host = apiHost
			}
			notes = append(notes, fmt.Sprintf("API server %s rewritten to %s (TLS server name %s)", c.Server, u.String(), c.TLSServerName))
			c.Server = u.String()
		case apiHost != "":
			notes = append(notes, fmt.Sprintf("API server %s is not a loopback address: --api-host %s is not used", c.Server, apiHost))
		case loopback:
			notes = append(notes, fmt.Sprintf("API server %s is a loopback address: the control plane reaches it only if it runs on this machine; --api-host names an address it can reach", c.Server))
		}
	}
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("--member-context %q: %w", contextName, err)
	}
	// What the federation will refuse is refused here, in the same words.
	if _, err := federation.SanitizeKubeconfig(data); err != nil {
		return nil, nil, fmt.Errorf("--member-context %q: %w", contextName, err)
	}
	return data, notes, nil
}

func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && (ip.IsLoopback() || ip.IsUnspecified())
}

func checkMember(kubeconfig []byte) error {
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		return err
	}
	cfg.Timeout = 10 * time.Second
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return err
	}
	_, err = dc.ServerVersion()
	return err
}

func newLeaveCommand(k *kubeFlags) *cobra.Command {
	var secretNamespace string
	cmd := &cobra.Command{
		Use:   "leave NAME",
		Short: "Take a member cluster out of the fleet",
		Long: `Take a member out of the fleet: delete its Cluster object and the Secret
that 'cluster join' wrote for it. The federation then withdraws what the
member contributed from the other members, and stops writing to it.`,
		Args:              exactArgs("NAME"),
		ValidArgsFunction: completeClusters(k),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runLeave(cmd.Context(), cmd.OutOrStdout(), k, args[0], secretNamespace)
		},
	}
	cmd.Flags().StringVar(&secretNamespace, "secret-namespace", DefaultSystemNamespace, "namespace of the control-plane cluster that keeps the member's credentials")
	return cmd
}

func runLeave(ctx context.Context, out io.Writer, k *kubeFlags, name, secretNamespace string) error {
	hub, err := k.clients()
	if err != nil {
		return err
	}
	cl := &fmv1alpha1.Cluster{}
	if err := hub.client.Get(ctx, client.ObjectKey{Name: name}, cl); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("cluster %s is not in the fleet (fleetmesh cluster list shows the members)", name)
		}
		return fmt.Errorf("get Cluster %s: %w", name, err)
	}
	if cl.Spec.Mirrored {
		return fmt.Errorf("cluster %s here is a mirrored copy (spec.mirrored): run leave against the control-plane cluster", name)
	}
	if err := hub.client.Delete(ctx, cl); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete Cluster %s: %w", name, err)
	}
	// Only the Secret join wrote goes: one the user made and named in
	// kubeconfigSecretRef is theirs.
	secret := &corev1.Secret{}
	key := client.ObjectKey{Namespace: secretNamespace, Name: memberSecretName(name)}
	if ref := cl.Spec.KubeconfigSecretRef; ref != nil {
		key = client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}
	}
	switch err := hub.client.Get(ctx, key, secret); {
	case apierrors.IsNotFound(err):
	case err != nil:
		return fmt.Errorf("get Secret %s: %w", key, err)
	case secret.Labels[fmv1alpha1.ManagedByLabel] == fmv1alpha1.ManagedByValue && secret.Labels[memberLabel] == name:
		if err := hub.client.Delete(ctx, secret); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete Secret %s: %w", key, err)
		}
	default:
		_, _ = fmt.Fprintf(out, "Secret %s was not written by fleetmesh: kept\n", key)
	}
	_, err = fmt.Fprintf(out, "cluster %s left the fleet\n", name)
	return err
}

// MemberRow is one member in 'cluster list'.
type MemberRow struct {
	Name       string       `json:"name"`
	ClusterKey string       `json:"clusterKey"`
	Gateway    string       `json:"gateway,omitempty"`
	GatewayIP  string       `json:"gatewayIP,omitempty"`
	Network    string       `json:"network,omitempty"`
	Ready      string       `json:"ready"`
	Reason     string       `json:"reason,omitempty"`
	Message    string       `json:"message,omitempty"`
	LastSync   *metav1.Time `json:"lastSyncTime,omitempty"`
	// TokenExpires is when the federation's token for the member expires
	// (members joined with --credentials service-account).
	TokenExpires *metav1.Time `json:"tokenExpires,omitempty"`
	StaleSince   *metav1.Time `json:"staleSince,omitempty"`
	Mirrored     bool         `json:"mirrored,omitempty"`
	// Version is the member's Kubernetes version; Lacks the capability
	// conditions it has False (MCSAPI, PodCertificates, NativeSidecars),
	// whose messages say what to do.
	Version string   `json:"kubernetesVersion,omitempty"`
	Lacks   []string `json:"lacks,omitempty"`
}

func newListCommand(k *kubeFlags) *cobra.Command {
	var o outputFlag
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the fleet's members with their clusterKey, gateway, readiness, last sync, Kubernetes version and what it lacks",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			hub, err := k.clients()
			if err != nil {
				return err
			}
			rows, err := listClusters(cmd.Context(), hub.client)
			if err != nil {
				return err
			}
			return o.print(cmd.OutOrStdout(), rows, func(w io.Writer) {
				now := time.Now()
				row(w, "NAME", "CLUSTERKEY", "GATEWAY", "NETWORK", "READY", "REASON", "LAST SYNC", "TOKEN EXPIRES", "VERSION", "LACKS")
				for _, r := range rows {
					sync := "<never>"
					if r.LastSync != nil {
						sync = age(r.LastSync.Time, now) + " ago"
					}
					if r.StaleSince != nil {
						sync += " (stale " + age(r.StaleSince.Time, now) + ")"
					}
					expires := "-"
					if r.TokenExpires != nil {
						expires = "in " + age(now, r.TokenExpires.Time)
						if r.TokenExpires.Before(&metav1.Time{Time: now}) {
							expires = "EXPIRED " + age(r.TokenExpires.Time, now) + " ago"
						}
					}
					row(w, r.Name, r.ClusterKey, orNone(r.Gateway), orNone(r.Network), r.Ready, orNone(r.Reason), sync, expires, orNone(r.Version), orNone(strings.Join(r.Lacks, ",")))
				}
			})
		},
	}
	o.bind(cmd)
	return cmd
}

func listClusters(ctx context.Context, c client.Client) ([]MemberRow, error) {
	var list fmv1alpha1.ClusterList
	if err := c.List(ctx, &list); err != nil {
		if meta.IsNoMatchError(err) || apierrors.IsNotFound(err) {
			return nil, errors.New("this API server has no fleetmesh Cluster type: is fleetmesh installed here (kubectl apply -k manifests/control-plane)?")
		}
		return nil, fmt.Errorf("list Clusters: %w", err)
	}
	rows := make([]MemberRow, 0, len(list.Items))
	for _, cl := range list.Items {
		r := MemberRow{
			Name: cl.Name, ClusterKey: string(cl.Key()), Network: cl.Spec.Network, GatewayIP: cl.Status.GatewayIP,
			LastSync: cl.Status.LastSyncTime, StaleSince: cl.Status.StaleSince, Mirrored: cl.Spec.Mirrored, Ready: "Unknown",
		}
		if cl.Spec.GatewayHost != "" {
			r.Gateway = net.JoinHostPort(cl.Spec.GatewayHost, fmt.Sprint(cl.EffectiveGatewayPort()))
		}
		if cond := meta.FindStatusCondition(cl.Status.Conditions, fmv1alpha1.ConditionReady); cond != nil {
			r.Ready, r.Reason, r.Message = string(cond.Status), cond.Reason, cond.Message
		}
		r.TokenExpires = tokenExpiry(ctx, c, &cl)
		r.Version = cl.Status.KubernetesVersion
		for _, typ := range []string{fmv1alpha1.ConditionMCSAPI, fmv1alpha1.ConditionPodCertificates, fmv1alpha1.ConditionNativeSidecars} {
			if meta.IsStatusConditionFalse(cl.Status.Conditions, typ) {
				r.Lacks = append(r.Lacks, typ)
			}
		}
		rows = append(rows, r)
	}
	slices.SortFunc(rows, func(a, b MemberRow) int { return strings.Compare(a.Name, b.Name) })
	return rows, nil
}

func completeClusters(k *kubeFlags) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		hub, err := k.clients()
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		rows, err := listClusters(cmd.Context(), hub.client)
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		var names []string
		for _, r := range rows {
			names = append(names, r.Name)
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}

func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != len(names) {
			return fmt.Errorf("%s takes %s (see %s --help)", cmd.CommandPath(), strings.Join(names, " "), cmd.CommandPath())
		}
		return nil
	}
}

// tokenExpiry reads when the token in a member's Secret expires, from the
// annotation join writes (nil when there is none or it cannot be read).
func tokenExpiry(ctx context.Context, c client.Client, cl *fmv1alpha1.Cluster) *metav1.Time {
	ref := cl.Spec.KubeconfigSecretRef
	if ref == nil {
		return nil
	}
	meta := &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"}}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, meta); err != nil {
		return nil
	}
	t, err := time.Parse(time.RFC3339, meta.Annotations[fmv1alpha1.AnnotationTokenExpires])
	if err != nil {
		return nil
	}
	return &metav1.Time{Time: t}
}

// writeMemberSecret writes the Secret holding a member's kubeconfig in
// the control-plane cluster, with its token's life and binding when it
// holds one.
func writeMemberSecret(ctx context.Context, hub client.Client, name, namespace string, kubeconfig []byte, token federation.BoundToken) (*corev1.Secret, error) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}
	if err := hub.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) && !apierrors.IsForbidden(err) {
		return nil, fmt.Errorf("create namespace %s: %w", namespace, err)
	}
	secret := &corev1.Secret{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{
			Namespace: namespace, Name: memberSecretName(name),
			Labels: map[string]string{fmv1alpha1.ManagedByLabel: fmv1alpha1.ManagedByValue, memberLabel: name},
		},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{"kubeconfig": kubeconfig},
	}
	if !token.Expires.IsZero() {
		secret.Annotations = map[string]string{
			fmv1alpha1.AnnotationTokenExpires:   token.Expires.UTC().Format(time.RFC3339),
			fmv1alpha1.AnnotationServiceAccount: DefaultSystemNamespace + "/" + FederationServiceAccount,
			fmv1alpha1.AnnotationTokenBoundTo:   token.BoundTo,
		}
	}
	if err := federation.Apply(ctx, hub, secret, FieldOwner); err != nil {
		return nil, fmt.Errorf("write Secret %s/%s: %w", secret.Namespace, secret.Name, err)
	}
	return secret, nil
}

// writeCluster writes a member's Cluster in the control-plane cluster,
// its credentials in secret; a Cluster of the name with an inline
// kubeconfig, or a mirrored copy (this is a member), is left alone.
func writeCluster(ctx context.Context, hub client.Client, name string, spec fmv1alpha1.ClusterSpec, secret *corev1.Secret) (*fmv1alpha1.Cluster, error) {
	spec.KubeconfigSecretRef = &fmv1alpha1.SecretKeyRef{Namespace: secret.Namespace, Name: secret.Name, Key: "kubeconfig"}
	cl := &fmv1alpha1.Cluster{
		TypeMeta:   metav1.TypeMeta{APIVersion: fmv1alpha1.GroupVersion.String(), Kind: "Cluster"},
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       spec,
	}
	existing := &fmv1alpha1.Cluster{}
	switch err := hub.Get(ctx, client.ObjectKey{Name: name}, existing); {
	case err == nil && existing.Spec.Kubeconfig != "":
		return nil, fmt.Errorf("cluster %s was joined with an inline spec.kubeconfig: delete it (fleetmesh cluster leave %s) before joining it again", name, name)
	case err == nil && existing.Spec.Mirrored:
		return nil, fmt.Errorf("cluster %s here is a mirrored copy (spec.mirrored): this is a member, not the control-plane cluster; use the control plane's --context", name)
	case err != nil && !apierrors.IsNotFound(err):
		return nil, fmt.Errorf("get Cluster %s: %w", name, err)
	}
	if err := federation.Apply(ctx, hub, cl, FieldOwner); err != nil {
		return nil, fmt.Errorf("write Cluster %s: %w", name, err)
	}
	return cl, nil
}
