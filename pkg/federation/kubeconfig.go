package federation

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// SanitizeKubeconfig reads a member's kubeconfig as fleetmesh uses one
// that someone wrote into a Cluster (inline, or in its Secret): its
// current context's cluster and user alone, everything in it inline.
// Whoever may write a Cluster must not make the process that reads it run
// a command, read one of its own files, or send its requests (and its
// credentials) through a place of their choosing, so it refuses, naming
// the field:
//   - users' exec plugins and auth providers (they run code);
//   - tokenFile, client-certificate, client-key and a cluster's
//     certificate-authority (files of the reader's machine; the -data
//     fields carry the same inline);
//   - a cluster's proxy-url.
//
// The CLI checks a kubeconfig it stores (fleetmesh cluster join) with it,
// and the federation and the CLI read a Cluster's with MemberRESTConfig.
func SanitizeKubeconfig(data []byte) (*clientcmdapi.Config, error) {
	raw, err := clientcmd.Load(data)
	if err != nil {
		return nil, fmt.Errorf("not a kubeconfig: %w", err)
	}
	if raw.CurrentContext == "" {
		return nil, errors.New("current-context is empty: name the context to use")
	}
	kctx, ok := raw.Contexts[raw.CurrentContext]
	if !ok {
		return nil, fmt.Errorf("current-context %q is not among contexts", raw.CurrentContext)
	}
	cluster, ok := raw.Clusters[kctx.Cluster]
	if !ok {
		return nil, fmt.Errorf("contexts[%q].cluster %q is not among clusters", raw.CurrentContext, kctx.Cluster)
	}
	user, ok := raw.AuthInfos[kctx.AuthInfo]
	if !ok {
		user = clientcmdapi.NewAuthInfo()
	}
	var refused []string
	refuse := func(field, why string) {
		refused = append(refused, field+": "+why)
	}
	u := fmt.Sprintf("users[%q].user.", kctx.AuthInfo)
	c := fmt.Sprintf("clusters[%q].cluster.", kctx.Cluster)
	if user.Exec != nil {
		refuse(u+"exec", fmt.Sprintf("the exec plugin %q would run in the control plane", user.Exec.Command))
	}
	if user.AuthProvider != nil {
		refuse(u+"auth-provider", fmt.Sprintf("the auth provider %q would run in the control plane", user.AuthProvider.Name))
	}
	if user.TokenFile != "" {
		refuse(u+"tokenFile", "a file of the control plane's machine; put the token inline (token)")
	}
	if user.ClientCertificate != "" {
		refuse(u+"client-certificate", "a file of the control plane's machine; put the certificate inline (client-certificate-data)")
	}
	if user.ClientKey != "" {
		refuse(u+"client-key", "a file of the control plane's machine; put the key inline (client-key-data)")
	}
	if cluster.CertificateAuthority != "" {
		refuse(c+"certificate-authority", "a file of the control plane's machine; put the CA inline (certificate-authority-data)")
	}
	if cluster.ProxyURL != "" {
		refuse(c+"proxy-url", "the member's requests, credentials included, would go through "+cluster.ProxyURL)
	}
	if len(refused) > 0 {
		slices.Sort(refused)
		return nil, fmt.Errorf("the kubeconfig is refused: %s; give the member a token or client certificate inline (fleetmesh cluster join writes one)", strings.Join(refused, "; "))
	}
	out := clientcmdapi.NewConfig()
	out.CurrentContext = raw.CurrentContext
	out.Contexts[raw.CurrentContext] = kctx
	out.Clusters[kctx.Cluster] = cluster
	out.AuthInfos[kctx.AuthInfo] = user
	return out, nil
}

// MemberRESTConfig is the client configuration of a member's kubeconfig
// that someone wrote into a Cluster, sanitised (SanitizeKubeconfig).
func MemberRESTConfig(data []byte) (*rest.Config, error) {
	cfg, err := SanitizeKubeconfig(data)
	if err != nil {
		return nil, err
	}
	return clientcmd.NewDefaultClientConfig(*cfg, &clientcmd.ConfigOverrides{}).ClientConfig()
}
