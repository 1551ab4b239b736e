package testenv

import (
	"fmt"
	"io"
	"os/exec"
	"path/filepath"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// KubeconfigFor writes cfg as a kubeconfig whose cluster, context and user
// are named after the cluster, as `k3d kubeconfig get` does in the article.
func KubeconfigFor(cfg *rest.Config, name string) ([]byte, error) {
	user := "admin@" + name
	kc := clientcmdapi.NewConfig()
	kc.Clusters[name] = &clientcmdapi.Cluster{
		Server:                   cfg.Host,
		CertificateAuthorityData: cfg.CAData,
	}
	kc.AuthInfos[user] = &clientcmdapi.AuthInfo{
		ClientCertificateData: cfg.CertData,
		ClientKeyData:         cfg.KeyData,
		Token:                 cfg.BearerToken,
	}
	kc.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: user}
	kc.CurrentContext = name
	out, err := clientcmd.Write(*kc)
	if err != nil {
		return nil, fmt.Errorf("write kubeconfig for %s: %w", name, err)
	}
	return out, nil
}

// Kubectl runs the real kubectl against the cluster, from the checkout's
// root (so -k manifests/<overlay> works), with stdin if given, and returns
// its combined output.
func (c *Cluster) Kubectl(stdin io.Reader, args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(AssetsDir(), "kubectl"), append([]string{"--kubeconfig", c.KubeconfigPath}, args...)...)
	cmd.Dir = RepoRoot()
	cmd.Stdin = stdin
	out, err := cmd.CombinedOutput()
	return string(out), err
}
