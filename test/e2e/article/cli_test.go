package article

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/fleetmesh/fleetmesh/pkg/cli"
	"github.com/fleetmesh/fleetmesh/test/article"
	"github.com/fleetmesh/fleetmesh/test/testenv"
)

// fleetmesh runs the CLI against a cluster of the fleet, as an operator
// would with that cluster's kubeconfig, and returns what it printed.
func fleetmesh(t *testing.T, ctx context.Context, cluster string, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	args = append([]string{"--kubeconfig", fleet.Cluster(cluster).KubeconfigPath, "--control-plane-access=" + article.LabControlPlaneAccess}, args...)
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

// TestProxyStatusShowsARefusedConfiguration connects a proxy to cluster-2's
// control plane that refuses the clusters it is sent, as an Envoy whose
// validation fails would: proxy-status says NACKED and prints the proxy's
// error.
func TestProxyStatusShowsARefusedConfiguration(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := grpc.NewClient(fleet.Planes["cluster-2"].XDSAddress, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	md, err := structpb.NewStruct(map[string]any{"role": "sidecar", "namespace": "curl", "pod": "nacker", "cluster": "cluster-2"})
	if err != nil {
		t.Fatal(err)
	}
	const clusterType = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "nacker.curl", Metadata: md}, TypeUrl: clusterType}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discoveryv3.DiscoveryRequest{
		TypeUrl: clusterType, ResponseNonce: resp.GetNonce(),
		ErrorDetail: &rpcstatus.Status{Code: 3, Message: "cluster outbound|8080: refused for the test"},
	}); err != nil {
		t.Fatal(err)
	}
	var status string
	err = testenv.Eventually(ctx, 10*time.Second, func(ctx context.Context) (bool, error) {
		status = fleetmesh(t, ctx, "cluster-2", "proxy-status", "nacker.curl")
		return strings.Contains(status, "NACKED"), nil
	})
	if err != nil {
		t.Fatalf("proxy-status never said NACKED:\n%s", status)
	}
	if !strings.Contains(status, "nacker.curl refused CDS version "+resp.GetVersionInfo()+": cluster outbound|8080: refused for the test") {
		t.Errorf("proxy-status does not print the refusal:\n%s", status)
	}
	if len(testenv.TableLines(status, "nacker.curl", "sidecar", "NACKED")) != 1 {
		t.Errorf("proxy-status:\n%s", status)
	}
}

func TestVersionRemoteAsksTheControlPlane(t *testing.T) {
	out := fleetmesh(t, context.Background(), "cluster-2", "version", "--remote")
	if !strings.Contains(out, "client: fleetmesh dev") || !strings.Contains(out, "control plane fleetmesh-controller-0: fleetmesh dev") {
		t.Errorf("version --remote:\n%s", out)
	}
}
