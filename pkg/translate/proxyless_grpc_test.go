package translate

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/xds"
)

// ackLog records, per resource type, the versions a client acknowledged and
// the errors of those it refused.
type ackLog struct {
	mu    sync.Mutex
	acked map[string]bool
	nacks []string
}

func (a *ackLog) request(_ int64, req *discoveryv3.DiscoveryRequest) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case req.GetErrorDetail() != nil:
		msg := req.GetErrorDetail().GetMessage()
		if len(msg) > 400 {
			msg = msg[:400] + "…"
		}
		a.nacks = append(a.nacks, fmt.Sprintf("%s: %s", req.GetTypeUrl(), msg))
	case req.GetVersionInfo() != "":
		a.acked[req.GetTypeUrl()] = true
	}
	return nil
}

func (a *ackLog) state() (map[string]bool, []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	acked := map[string]bool{}
	for k, v := range a.acked {
		acked[k] = v
	}
	return acked, append([]string(nil), a.nacks...)
}

// TestProxylessGoldensAreAcceptedByGRPC serves each proxyless golden
// translation to a real grpc-go xDS client dialing the service, and checks
// that the client acknowledges the listener, routes, cluster and
// endpoints, refusing none. Envoy validates ApiListeners only as its own
// client listener, so grpc-go is the judge of these.
func TestProxylessGoldensAreAcceptedByGRPC(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "proxyless-*.in.yaml"))
	if len(files) == 0 {
		t.Fatal("no proxyless golden cases")
	}
	for _, in := range files {
		name := strings.TrimSuffix(filepath.Base(in), ".in.yaml")
		t.Run(name, func(t *testing.T) {
			c := loadCase(t, in)
			res, err := Translate(&c.Mesh, &c.Proxy)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Listeners) == 0 {
				t.Fatal("no listener to check")
			}
			for _, l := range res.Listeners {
				if l.GetApiListener() != nil { // a server's listener is no client's target
					checkWithGRPC(t, res, l.GetName())
				}
			}
		})
	}
}

func checkWithGRPC(t *testing.T, res *Resources, target string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	nodeID := "grpc-check-" + target
	snapshotCache := cachev3.NewSnapshotCache(false, cachev3.IDHash{}, nil)
	snap, err := cachev3.NewSnapshot("1", map[resource.Type][]types.Resource{
		resource.ListenerType: toResources(res.Listeners),
		resource.RouteType:    toResources(res.Routes),
		resource.ClusterType:  toResources(res.Clusters),
		resource.EndpointType: toResources(res.Endpoints),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := snapshotCache.SetSnapshot(ctx, nodeID, snap); err != nil {
		t.Fatal(err)
	}
	acks := &ackLog{acked: map[string]bool{}}
	srv := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(srv, serverv3.NewServer(ctx, snapshotCache, serverv3.CallbackFuncs{StreamRequestFunc: acks.request}))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()

	// The certificate provider a client with a workload certificate
	// names (its files are read only when a connection is made).
	dir := t.TempDir()
	bootstrap := fmt.Sprintf(`{
		"xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
		"node": {"id": %q},
		"certificate_providers": {%q: {"plugin_name": "file_watcher", "config": {
			"certificate_file": %q, "private_key_file": %q, "ca_certificate_file": %q}}}
	}`, lis.Addr().String(), nodeID, ProxylessCertificateProvider,
		filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "roots.pem"))
	builder, err := xds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("xds:///"+target, grpc.WithResolvers(builder), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Connect()

	want := []string{resource.ListenerType, resource.RouteType, resource.ClusterType, resource.EndpointType}
	for {
		acked, nacks := acks.state()
		if len(nacks) > 0 {
			t.Fatalf("grpc-go refused the translation for %s: %v", target, nacks)
		}
		all := true
		for _, typ := range want {
			all = all && acked[typ]
		}
		if all {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("grpc-go did not acknowledge every type for %s; acknowledged %v", target, acked)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func toResources[T types.Resource](in []T) []types.Resource {
	out := make([]types.Resource, len(in))
	for i, r := range in {
		out[i] = r
	}
	return out
}
