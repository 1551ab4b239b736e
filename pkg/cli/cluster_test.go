package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
	"github.com/fleetmesh/fleetmesh/test/testenv"
)

// operatorKubeconfig writes the fleet's kubeconfig (a context per cluster,
// named after it, as k3d does) with one more context whose API server is
// gone.
func operatorKubeconfig(t *testing.T) string {
	t.Helper()
	merged, err := clientcmd.LoadFromFile(fleet.KubeconfigPath)
	if err != nil {
		t.Fatal(err)
	}
	// A cluster whose API server is gone: nothing listens there.
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	gone := *merged.Clusters["member-a"]
	gone.Server = "https://127.0.0.1:" + strconv.Itoa(port)
	merged.Clusters["gone"] = &gone
	merged.Contexts["gone"] = &clientcmdapi.Context{Cluster: "gone", AuthInfo: "admin@member-a"}
	merged.CurrentContext = "control-plane"
	path := filepath.Join(t.TempDir(), "config")
	if err := clientcmd.WriteToFile(*merged, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// run executes the CLI with the operator's kubeconfig.
func run(t *testing.T, kubeconfig string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := Execute(ctx, &out, append([]string{"--kubeconfig", kubeconfig}, args...))
	return out.String(), err
}

func mustRun(t *testing.T, kubeconfig string, args ...string) string {
	t.Helper()
	out, err := run(t, kubeconfig, args...)
	if err != nil {
		t.Fatalf("fleetmesh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// members reads 'cluster list -o json'.
func members(t *testing.T, kubeconfig string) map[string]MemberRow {
	t.Helper()
	var rows []MemberRow
	if err := json.Unmarshal([]byte(mustRun(t, kubeconfig, "cluster", "list", "-o", "json")), &rows); err != nil {
		t.Fatal(err)
	}
	out := map[string]MemberRow{}
	for _, r := range rows {
		out[r.Name] = r
	}
	return out
}

func waitReady(t *testing.T, kubeconfig, name string) MemberRow {
	t.Helper()
	var row MemberRow
	err := testenv.Eventually(context.Background(), 30*time.Second, func(context.Context) (bool, error) {
		row = members(t, kubeconfig)[name]
		return row.Ready == "True" && row.LastSync != nil, nil
	})
	if err != nil {
		t.Fatalf("%s never became Ready in cluster list: %+v", name, row)
	}
	return row
}

func TestJoinFromAKubeconfigContextMakesAMemberTheFederationReportsReady(t *testing.T) {
	kubeconfig := operatorKubeconfig(t)
	hub := fleet.Cluster("control-plane").Client
	out := mustRun(t, kubeconfig, "cluster", "join", "member-a", "--member-context", "member-a", "--credentials", "context",
		"--gateway-host", "10.244.9.1", "--gateway-port", "81", "--region", "eu", "--zone", "eu-1", "--network", "net-a")
	if !strings.Contains(out, "cluster member-a joined: clusterKey eu/eu-1/default/member-a") {
		t.Errorf("join printed %q", out)
	}
	row := waitReady(t, kubeconfig, "member-a")
	if row.ClusterKey != "eu/eu-1/default/member-a" || row.Gateway != "10.244.9.1:81" || row.Network != "net-a" {
		t.Errorf("cluster list: %+v", row)
	}

	// The credentials are in a Secret, not in the Cluster object.
	cl := &fmv1alpha1.Cluster{}
	if err := hub.Get(context.Background(), client.ObjectKey{Name: "member-a"}, cl); err != nil {
		t.Fatal(err)
	}
	ref := cl.Spec.KubeconfigSecretRef
	if cl.Spec.Kubeconfig != "" || ref == nil || ref.Namespace != "fleetmesh-system" || ref.Name != "fleetmesh-member-member-a" {
		t.Fatalf("Cluster member-a: %+v", cl.Spec)
	}
	secret := &corev1.Secret{}
	if err := hub.Get(context.Background(), client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, secret); err != nil {
		t.Fatal(err)
	}
	stored, err := clientcmd.Load(secret.Data["kubeconfig"])
	if err != nil || len(stored.Contexts) != 1 || stored.Contexts["member-a"] == nil {
		t.Fatalf("the stored kubeconfig holds %v (%v), want member-a's context alone", stored, err)
	}

	table := mustRun(t, kubeconfig, "cluster", "list")
	if lines := testenv.TableLines(table, "member-a", "eu/eu-1/default/member-a", "10.244.9.1:81", "net-a", "True", "ago"); len(lines) != 1 {
		t.Errorf("cluster list table:\n%s", table)
	}

	// Joining again updates the member: a changed gateway, nothing else.
	mustRun(t, kubeconfig, "cluster", "join", "member-a", "--member-context", "member-a", "--credentials", "context",
		"--gateway-host", "10.244.9.2", "--gateway-port", "81", "--region", "eu", "--zone", "eu-1", "--network", "net-a")
	if row := members(t, kubeconfig)["member-a"]; row.Gateway != "10.244.9.2:81" || row.ClusterKey != "eu/eu-1/default/member-a" {
		t.Errorf("after a second join: %+v", row)
	}

	// The federation mirrors the member into itself: it has joined.
	err = testenv.Eventually(context.Background(), 30*time.Second, func(ctx context.Context) (bool, error) {
		mirror := &fmv1alpha1.Cluster{}
		err := fleet.Cluster("member-a").Client.Get(ctx, client.ObjectKey{Name: "member-a"}, mirror)
		return err == nil && mirror.Spec.Mirrored, client.IgnoreNotFound(err)
	})
	if err != nil {
		t.Errorf("the federation never mirrored member-a into itself: %v", err)
	}

	// Shell completion offers the fleet's members, read from the API server.
	if out := mustRun(t, kubeconfig, "__complete", "cluster", "leave", ""); !strings.Contains(out, "member-a\n") {
		t.Errorf("completion of cluster leave offered:\n%s", out)
	}

	// Leaving removes the Cluster and the Secret join wrote.
	if out := mustRun(t, kubeconfig, "cluster", "leave", "member-a"); !strings.Contains(out, "cluster member-a left the fleet") {
		t.Errorf("leave printed %q", out)
	}
	if err := hub.Get(context.Background(), client.ObjectKey{Name: "member-a"}, &fmv1alpha1.Cluster{}); !apierrors.IsNotFound(err) {
		t.Errorf("Cluster member-a after leave: %v", err)
	}
	if err := hub.Get(context.Background(), client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, &corev1.Secret{}); !apierrors.IsNotFound(err) {
		t.Errorf("Secret %s/%s after leave: %v", ref.Namespace, ref.Name, err)
	}
	if _, ok := members(t, kubeconfig)["member-a"]; ok {
		t.Error("member-a is still listed after leave")
	}
}

func TestJoinRewritesALoopbackAPIServerAndTLSStillChecksTheOriginalName(t *testing.T) {
	kubeconfig := operatorKubeconfig(t)
	// The test API servers listen on 127.0.0.1; "localhost" stands for the
	// address a k3d user would give. The certificate does not name it by
	// the IP the connection uses: the TLS server name keeps the check.
	out, err := run(t, kubeconfig, "cluster", "join", "member-b", "--member-context", "member-b", "--api-host", "localhost", "--credentials", "context")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	defer func() { _, _ = run(t, kubeconfig, "cluster", "leave", "member-b") }()
	waitReady(t, kubeconfig, "member-b")
	secret := &corev1.Secret{}
	if err := fleet.Cluster("control-plane").Client.Get(context.Background(), client.ObjectKey{Namespace: "fleetmesh-system", Name: "fleetmesh-member-member-b"}, secret); err != nil {
		t.Fatal(err)
	}
	stored, err := clientcmd.Load(secret.Data["kubeconfig"])
	if err != nil {
		t.Fatal(err)
	}
	c := stored.Clusters[stored.Contexts["member-b"].Cluster]
	if !strings.HasPrefix(c.Server, "https://localhost:") || c.TLSServerName != "127.0.0.1" {
		t.Errorf("stored server %q, TLS server name %q", c.Server, c.TLSServerName)
	}
}

func TestJoinRefusesWhatCannotWorkAndWritesNothing(t *testing.T) {
	kubeconfig := operatorKubeconfig(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"a context the kubeconfig does not have", []string{"cluster", "join", "member-x", "--member-context", "nope"}, `--member-context "nope" is not in the kubeconfig (it has: control-plane, gone, member-a, member-b)`},
		{"a member whose API server does not answer", []string{"cluster", "join", "gone", "--member-context", "gone"}, "does not answer"},
		{"a name Kubernetes refuses", []string{"cluster", "join", "Member_A", "--member-context", "member-a"}, `cluster name "Member_A"`},
		{"no member context", []string{"cluster", "join", "member-x"}, `"member-context" not set`},
		{"no name", []string{"cluster", "join", "--member-context", "member-a"}, "takes NAME"},
		{"a member without fleetmesh installed, for its ServiceAccount", []string{"cluster", "join", "member-x", "--member-context", "member-a"}, "the member has no ServiceAccount fleetmesh-system/fleetmesh-federation: install fleetmesh there first"},
		{"credentials of an unknown kind", []string{"cluster", "join", "member-x", "--member-context", "member-a", "--credentials", "password"}, `--credentials "password"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := run(t, kubeconfig, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v (%s), want an error with %q", err, out, tc.want)
			}
		})
	}
	var list fmv1alpha1.ClusterList
	if err := fleet.Cluster("control-plane").Client.List(context.Background(), &list); err != nil {
		t.Fatal(err)
	}
	for _, c := range list.Items {
		if c.Name == "member-x" || c.Name == "gone" {
			t.Errorf("a refused join left Cluster %s", c.Name)
		}
	}
}

func TestLeaveKeepsASecretItDidNotWrite(t *testing.T) {
	kubeconfig := operatorKubeconfig(t)
	ctx := context.Background()
	hub := fleet.Cluster("control-plane").Client
	if err := fleet.Cluster("control-plane").EnsureNamespace(ctx, "team-a"); err != nil {
		t.Fatal(err)
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "member-c-kubeconfig"},
		Data:       map[string][]byte{"config": fleet.Cluster("member-b").Kubeconfig},
	}
	if err := hub.Create(ctx, secret); err != nil {
		t.Fatal(err)
	}
	if err := hub.Create(ctx, &fmv1alpha1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: "member-c"},
		Spec:       fmv1alpha1.ClusterSpec{KubeconfigSecretRef: &fmv1alpha1.SecretKeyRef{Namespace: "team-a", Name: "member-c-kubeconfig", Key: "config"}},
	}); err != nil {
		t.Fatal(err)
	}
	out := mustRun(t, kubeconfig, "cluster", "leave", "member-c")
	if !strings.Contains(out, "Secret team-a/member-c-kubeconfig was not written by fleetmesh: kept") {
		t.Errorf("leave printed %q", out)
	}
	if err := hub.Get(ctx, client.ObjectKeyFromObject(secret), &corev1.Secret{}); err != nil {
		t.Errorf("the user's Secret after leave: %v", err)
	}
	if _, err := run(t, kubeconfig, "cluster", "leave", "member-c"); err == nil || !strings.Contains(err.Error(), "cluster member-c is not in the fleet") {
		t.Errorf("leaving twice: %v", err)
	}
}

func TestProxyCommandsWithoutAControlPlaneSayWhereTheyLooked(t *testing.T) {
	kubeconfig := operatorKubeconfig(t)
	for _, args := range [][]string{{"proxy-status"}, {"proxy-config", "endpoints", "curl-1.curl"}} {
		_, err := run(t, kubeconfig, args...)
		if err == nil || !strings.Contains(err.Error(), "no ready fleetmesh-controller pod (label app.kubernetes.io/name=fleetmesh-controller) in namespace fleetmesh-system") {
			t.Errorf("%v: %v", args, err)
		}
	}
}

func TestMemberKubeconfigRefusesCredentialsTheFederationCannotUse(t *testing.T) {
	raw := clientcmdapi.NewConfig()
	raw.Clusters["eks"] = &clientcmdapi.Cluster{Server: "https://eks.example:443"}
	raw.AuthInfos["aws"] = &clientcmdapi.AuthInfo{Exec: &clientcmdapi.ExecConfig{Command: "aws"}}
	raw.Contexts["eks"] = &clientcmdapi.Context{Cluster: "eks", AuthInfo: "aws"}
	_, _, err := MemberKubeconfig(*raw, "eks", "")
	if err == nil || !strings.Contains(err.Error(), `exec plugin "aws"`) {
		t.Fatalf("got %v", err)
	}
}

func TestMemberKubeconfigInlinesCertificateFiles(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(ca, []byte("CA DATA"), 0o600); err != nil {
		t.Fatal(err)
	}
	raw := clientcmdapi.NewConfig()
	raw.Clusters["k3d"] = &clientcmdapi.Cluster{Server: "https://0.0.0.0:6443", CertificateAuthority: ca}
	raw.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: "t"}
	raw.Contexts["k3d"] = &clientcmdapi.Context{Cluster: "k3d", AuthInfo: "admin"}
	raw.Contexts["other"] = &clientcmdapi.Context{Cluster: "k3d", AuthInfo: "admin"}
	data, notes, err := MemberKubeconfig(*raw, "k3d", "10.0.0.5")
	if err != nil {
		t.Fatal(err)
	}
	got, err := clientcmd.Load(data)
	if err != nil {
		t.Fatal(err)
	}
	c := got.Clusters["k3d"]
	if string(c.CertificateAuthorityData) != "CA DATA" || c.CertificateAuthority != "" || len(got.Contexts) != 1 {
		t.Errorf("not inlined or not minified: %+v, %d contexts", c, len(got.Contexts))
	}
	if c.Server != "https://10.0.0.5:6443" || c.TLSServerName != "0.0.0.0" || len(notes) != 1 {
		t.Errorf("server %q, TLS name %q, notes %q", c.Server, c.TLSServerName, notes)
	}
}
