package federation

import (
	"strings"
	"testing"
)

// kubeconfigWith is a kubeconfig whose current context's cluster and user
// carry the given lines (indented under cluster: and user:), and a second
// context, not current, whose user runs an exec plugin.
func kubeconfigWith(cluster, user string) string {
	return `apiVersion: v1
kind: Config
current-context: member
contexts:
- name: member
  context: {cluster: member, user: member}
- name: other
  context: {cluster: member, user: other}
clusters:
- name: member
  cluster:
    server: https://10.244.0.10:6443
` + cluster + `
users:
- name: member
  user:
` + user + `
- name: other
  user:
    exec: {apiVersion: client.authentication.k8s.io/v1, command: /bin/other}
`
}

func TestAMemberKubeconfigThatWouldRunOrReadSomethingIsRefusedNamingTheField(t *testing.T) {
	const clean = "    token: abc"
	for _, tt := range []struct {
		name, cluster, user, want string
	}{
		{
			"an exec plugin", "", "    exec: {apiVersion: client.authentication.k8s.io/v1, command: /bin/sh, args: [-c, 'touch /tmp/x']}",
			`users["member"].user.exec: the exec plugin "/bin/sh" would run in the control plane`,
		},
		{"an auth provider", "", "    auth-provider: {name: gcp}", `users["member"].user.auth-provider: the auth provider "gcp"`},
		{"a token file", "", "    tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token", `users["member"].user.tokenFile`},
		{"a client certificate file", "", "    client-certificate: /etc/kubernetes/pki/admin.crt\n    client-key-data: a2V5", `users["member"].user.client-certificate`},
		{"a client key file", "", "    client-certificate-data: Y2VydA==\n    client-key: /etc/kubernetes/pki/admin.key", `users["member"].user.client-key`},
		{"a CA file", "    certificate-authority: /etc/kubernetes/pki/ca.crt", clean, `clusters["member"].cluster.certificate-authority`},
		{"a proxy", "    proxy-url: http://10.244.0.66:3128", clean, `clusters["member"].cluster.proxy-url: the member's requests, credentials included, would go through http://10.244.0.66:3128`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := MemberRESTConfig([]byte(kubeconfigWith(tt.cluster, tt.user)))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want a refusal saying %s", err, tt.want)
			}
		})
	}
	t.Run("a token or certificate inline passes, and other contexts are dropped", func(t *testing.T) {
		cfg, err := SanitizeKubeconfig([]byte(kubeconfigWith("    insecure-skip-tls-verify: true", clean)))
		if err != nil {
			t.Fatal(err)
		}
		if len(cfg.Contexts) != 1 || len(cfg.AuthInfos) != 1 || cfg.AuthInfos["other"] != nil {
			t.Errorf("kept %d contexts and %d users, want the current one alone", len(cfg.Contexts), len(cfg.AuthInfos))
		}
		rc, err := MemberRESTConfig([]byte(kubeconfigWith("    insecure-skip-tls-verify: true", clean)))
		if err != nil || rc.BearerToken != "abc" || rc.ExecProvider != nil || rc.Host != "https://10.244.0.10:6443" {
			t.Errorf("MemberRESTConfig = %+v, %v", rc, err)
		}
	})
	for _, bad := range []string{"not: a kubeconfig: at all", "apiVersion: v1\nkind: Config\n"} {
		if _, err := SanitizeKubeconfig([]byte(bad)); err == nil {
			t.Errorf("%q was taken", bad)
		}
	}
}
