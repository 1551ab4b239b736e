package cli

import (
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fleetmesh/fleetmesh/pkg/scheme"
)

// kubeFlags are kubectl's connection flags: --kubeconfig, --context and
// -n/--namespace, read the way kubectl reads them (KUBECONFIG included).
type kubeFlags struct {
	kubeconfig string
	context    string
	namespace  string
}

func (k *kubeFlags) bind(cmd *cobra.Command) {
	f := cmd.PersistentFlags()
	f.StringVar(&k.kubeconfig, "kubeconfig", "", "path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)")
	f.StringVar(&k.context, "context", "", "the kubeconfig context to use (default: its current context)")
	f.StringVarP(&k.namespace, "namespace", "n", "", "the namespace (default: the context's, then default)")
}

func (k *kubeFlags) loader() clientcmd.ClientConfig {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = k.kubeconfig
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: k.context})
}

// rawConfig is the merged kubeconfig, every context of it.
func (k *kubeFlags) rawConfig() (clientcmdapi.Config, error) {
	return k.loader().RawConfig()
}

func (k *kubeFlags) restConfig() (*rest.Config, error) {
	cfg, err := k.loader().ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("read kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = 50, 100
	return cfg, nil
}

// ns is the namespace -n names, else the context's, else default.
func (k *kubeFlags) ns() string {
	if k.namespace != "" {
		return k.namespace
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
