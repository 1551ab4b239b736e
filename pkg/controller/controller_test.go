package controller

import (
	"context"
	"strings"
	"testing"
)

func TestRunRefusesOptionsItCannotServe(t *testing.T) {
	for _, tt := range []struct {
		name string
		o    Options
		want string
	}{
		{"no cluster name", Options{}, "--cluster-name is required"},
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
