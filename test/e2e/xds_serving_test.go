package e2e

import (
	"context"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/fleetmesh/fleetmesh/test/testenv"
)

// TestConnectionsAreAgedOut runs the built controller with
// --xds-max-connection-age: a proxy's connection is closed after it (with
// the grace for its stream), so after a rollout proxies spread over the
// replicas again; the proxy reconnects and is served.
func TestConnectionsAreAgedOut(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := fleet.Cluster("cluster-2")
	cp, err := c.StartControlPlane(ctx, testenv.ControlPlaneOptions{
		Args:      []string{"--cluster-name=cluster-2", "--xds-max-connection-age=2s", "--xds-max-connection-age-grace=1s"},
		WaitReady: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cp.Stop() }()

	md, err := structpb.NewStruct(map[string]any{"role": "sidecar", "namespace": "default", "pod": "aged"})
	if err != nil {
		t.Fatal(err)
	}
	const clusterType = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	connect := func() discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient {
		conn, err := grpc.NewClient(cp.XDSAddress, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "aged.default", Metadata: md}, TypeUrl: clusterType}); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != nil {
			t.Fatalf("first response: %v", err)
		}
		return stream
	}
	stream := connect()
	start := time.Now()
	ended := make(chan error, 1)
	go func() {
		for {
			if _, err := stream.Recv(); err != nil {
				ended <- err
				return
			}
		}
	}()
	select {
	case err := <-ended:
		t.Logf("the stream ended %v after its first response: %v", time.Since(start).Round(100*time.Millisecond), err)
	case <-time.After(30 * time.Second):
		t.Fatal("the connection was not closed within 30 s of a 2 s maximum age")
	}
	connect() // served again on a new connection
}
