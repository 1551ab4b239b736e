package article

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/fleetmesh/fleetmesh/pkg/cli"
)

// fleetmesh runs the CLI against a cluster of the fleet, as an operator
// would with that cluster's kubeconfig, and returns what it printed.
func fleetmesh(t *testing.T, ctx context.Context, cluster string, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	args = append([]string{"--kubeconfig", fleet.Cluster(cluster).KubeconfigPath}, args...)
	if err := cli.Execute(ctx, &out, args); err != nil {
		t.Fatalf("fleetmesh %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

// fleetmeshJSON runs the CLI with -o json and decodes what it printed.
func fleetmeshJSON[T any](t *testing.T, ctx context.Context, cluster string, args ...string) T {
	t.Helper()
	var v T
	out := fleetmesh(t, ctx, cluster, append(args, "-o", "json")...)
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("fleetmesh %v -o json printed what is not JSON: %v\n%s", args, err, out)
	}
	return v
}

// endpointsOf is what 'proxy-config endpoints' says about httpbin:8080 in
// curl's sidecar: "cluster priority weight" per endpoint, sorted.
func endpointsOf(rows []cli.EndpointRow) []string {
	var out []string
	for _, r := range rows {
		if r.EnvoyCluster == "outbound|8080||httpbin.httpbin.svc.cluster.local" {
			out = append(out, fmt.Sprintf("%s %s/%s priority=%d weight=%d", r.Cluster, r.Region, r.Zone, r.Priority, r.Weight))
		}
	}
	slices.Sort(out)
	return out
}
