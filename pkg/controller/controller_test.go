package controller

import (
	"context"
	"flag"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
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
