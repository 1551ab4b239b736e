package controller

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
	"github.com/fleetmesh/fleetmesh/test/testenv"
)

func TestRunRefusesOptionsItCannotServe(t *testing.T) {
	for _, tt := range []struct {
		name string
		o    Options
		want string
	}{
		{"no kubeconfig outside a cluster", Options{}, "no --kubeconfig and not in a cluster"},
		{"unreadable kubeconfig", Options{ClusterName: "cluster-1", Kubeconfig: "/nonexistent/kubeconfig"}, "read --kubeconfig /nonexistent/kubeconfig"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Run(context.Background(), tt.o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Run() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestInjectionFlagsAreReadAndCheckedBeforeServing(t *testing.T) {
	var o Options
	fs := flag.NewFlagSet("fleetmesh-controller", flag.ContinueOnError)
	o.BindFlags(fs)
	if err := fs.Parse([]string{"--inject", "--proxy-memory-limit=1Gi", "--proxy-image-pull-policy=IfNotPresent", "--proxy-log-level=loud"}); err != nil {
		t.Fatal(err)
	}
	if got := o.Injection.Resources.Limits.Memory().String(); got != "1Gi" {
		t.Errorf("memory limit %s", got)
	}
	if got := o.Injection.Resources.Requests.Cpu().String(); got != "50m" {
		t.Errorf("the CPU request kept its default? %s", got)
	}
	if o.Injection.ImagePullPolicy != "IfNotPresent" || o.Namespace != "fleetmesh-system" {
		t.Errorf("options %+v", o)
	}
	if err := fs.Parse([]string{"--proxy-image-pull-policy=Sometimes"}); err == nil {
		t.Error("a pull policy Kubernetes does not know was accepted")
	}
	o.ClusterName, o.ManageWebhookCerts = "cluster-1", false
	_, err := RunWithConfig(context.Background(), o, &rest.Config{Host: "https://127.0.0.1:1"}, logr.Discard())
	if err == nil || !strings.Contains(err.Error(), `--inject: proxy log level "loud"`) {
		t.Fatalf("got %v", err)
	}
}

func TestWithoutAClusterNameItWaitsAliveButNotReadyThenLearnsItsName(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := fleet.Cluster("member")
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	debug := fmt.Sprintf("127.0.0.1:%d", port)
	type result struct {
		run *Running
		err error
	}
	done := make(chan result, 1)
	go func() {
		run, err := RunWithConfig(ctx, Options{XDSAddress: "127.0.0.1:0", DebugAddress: debug}, c.Config, logr.Discard())
		done <- result{run, err}
	}()
	status := func(path string) (int, string) {
		// The probes answer anyone, over the debug API's HTTPS.
		insecure := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
		resp, err := insecure.Get("https://" + debug + path)
		if err != nil {
			return 0, err.Error()
		}
		defer func() { _ = resp.Body.Close() }()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	err = testenv.Eventually(ctx, 10*time.Second, func(context.Context) (bool, error) {
		code, _ := status("/healthz")
		return code == http.StatusOK, nil
	})
	if err != nil {
		t.Fatalf("not alive while waiting: %v", err)
	}
	if code, body := status("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "waiting for the federation to join this cluster") {
		t.Errorf("/readyz while waiting: %d %q", code, body)
	}

	// The federation's copy of this cluster's own Cluster object.
	if err := c.Client.Create(ctx, &fmv1alpha1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: "member-7", Labels: map[string]string{fmv1alpha1.LocalClusterLabel: "true"}},
		Spec:       fmv1alpha1.ClusterSpec{Mirrored: true},
	}); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer func() { cancel(); _ = r.run.Wait() }()
	err = testenv.Eventually(ctx, 10*time.Second, func(context.Context) (bool, error) {
		code, _ := status("/readyz")
		return code == http.StatusOK, nil
	})
	if err != nil {
		t.Errorf("never ready once the name was known: %v", err)
	}
	if r.run.XDS == nil || r.run.DebugAddress.String() != debug {
		t.Errorf("running %+v", r.run)
	}
}

func TestAuthOptionsThatCannotWorkTogetherAreRefused(t *testing.T) {
	for _, tt := range []struct {
		name string
		o    Options
		want string
	}{
		{"tokens without TLS", Options{XDSTokenAuth: true}, "--xds-token-auth needs --xds-tls"},
		{"token sidecars without TLS", Options{ProxyCredential: ProxyCredentialToken}, "--proxy-credential token needs --xds-tls"},
		{"an unknown sidecar credential", Options{XDSTLS: true, ProxyCredential: "password"}, `--proxy-credential "password": want certificate or token`},
		{"an unknown debug guard", Options{DebugAuth: "basic"}, `--debug-auth "basic": want kubernetes or none`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := RunWithConfig(context.Background(), tt.o, &rest.Config{Host: "https://127.0.0.1:1"}, logr.Discard())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("RunWithConfig() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
