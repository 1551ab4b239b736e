package cli

import (
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fleetmesh/fleetmesh/pkg/scheme"
)

// kubeFlags are kubectl's connection flags, from cli-runtime: --kubeconfig,
// --context, -n/--namespace, --server, --token, --user, --as, … read the
// way kubectl reads them (KUBECONFIG included). --cluster is left out:
// proxy-config's --cluster names an Envoy cluster.
type kubeFlags struct {
	*genericclioptions.ConfigFlags
}

func newKubeFlags() *kubeFlags {
	cf := genericclioptions.NewConfigFlags(false)
	// fleetmesh asks for its kinds by name: no discovery cache.
	cf.CacheDir, cf.ClusterName = nil, nil
	return &kubeFlags{cf}
}

// onlyKubeconfig is kubeFlags reading the kubeconfig at path alone (the
// default files when empty), its current context.
func onlyKubeconfig(path string) *kubeFlags {
	k := newKubeFlags()
	*k.KubeConfig = path
	return k
}

func (k *kubeFlags) bind(cmd *cobra.Command) { k.AddFlags(cmd.PersistentFlags()) }

func (k *kubeFlags) loader() clientcmd.ClientConfig { return k.ToRawKubeConfigLoader() }

// namespaceFlag is -n, "" when not given.
func (k *kubeFlags) namespaceFlag() string { return *k.Namespace }

// rawConfig is the merged kubeconfig, every context of it.
func (k *kubeFlags) rawConfig() (clientcmdapi.Config, error) {
	return k.loader().RawConfig()
}

func (k *kubeFlags) restConfig() (*rest.Config, error) {
	cfg, err := k.ToRESTConfig()
	if err != nil {
		return nil, fmt.Errorf("read kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = 50, 100
	return cfg, nil
}

// ns is the namespace -n names, else the context's, else default.
func (k *kubeFlags) ns() string {
	if ns := k.namespaceFlag(); ns != "" {
		return ns
	}
	if ns, _, err := k.loader().Namespace(); err == nil && ns != "" {
		return ns
	}
	return "default"
}

// clients reach the API server of the selected context.
type clients struct {
	config *rest.Config
	client client.Client
	core   kubernetes.Interface
}

func (k *kubeFlags) clients() (*clients, error) {
	cfg, err := k.restConfig()
	if err != nil {
		return nil, err
	}
	return newClients(cfg)
}

func newClients(cfg *rest.Config) (*clients, error) {
	c, err := client.New(cfg, client.Options{Scheme: scheme.New()})
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", cfg.Host, err)
	}
	core, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", cfg.Host, err)
	}
	return &clients{config: cfg, client: c, core: core}, nil
}
