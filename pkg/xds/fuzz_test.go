package xds

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/fleetmesh/fleetmesh/pkg/internal/meshgen"
)

// fuzzServer is one ADS server on loopback for every fuzz input, with a
// log that records panics.
type fuzzServer struct {
	addr   string
	mu     sync.Mutex
	panics []string
}

func startFuzzServer(t testing.TB) *fuzzServer {
	fs := &fuzzServer{}
	log := funcr.New(func(prefix, args string) {
		if strings.Contains(args, "panicked") {
			fs.mu.Lock()
			fs.panics = append(fs.panics, args)
			fs.mu.Unlock()
		}
	}, funcr.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	s := NewServer(ctx, Options{ClusterName: "c0", Log: logr.Discard()})
	s.Update(meshgen.Mesh(&meshgen.Choices{Data: []byte("a fleet of a few clusters and services, some exported")}))
	g := NewGRPCServer(GRPCOptions{Log: log})
	s.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(func() { g.Stop(); cancel() })
	fs.addr = lis.Addr().String()
	return fs
}

// requestsFrom makes a client's requests from fuzz input: any node id and
// metadata (roles, clusters and ports good and bad), any type URL (real
// ones and garbage), up to thousands of resource names, versions, nonces
// and NACKs.
func requestsFrom(data []byte) (delta bool, sotw []*discoveryv3.DiscoveryRequest, deltas []*discoveryv3.DeltaDiscoveryRequest) {
	c := &meshgen.Choices{Data: data}
	pick := func(options ...string) string { return options[c.N(len(options))] }
	str := func() string {
		n := c.N(40)
		if len(c.Data) < n {
			n = len(c.Data)
		}
		s := string(c.Data[:n])
		c.Data = c.Data[n:]
		return s
	}
	delta = c.Bool()
	for range 1 + c.N(4) {
		var node *corev3.Node
		if c.N(4) != 0 {
			md := map[string]any{}
			for _, k := range []string{"role", "namespace", "pod", "serviceAccount", "cluster", "ip", "appIP", "listenPort", "interception"} {
				if c.Bool() {
					md[k] = pick("sidecar", "gateway", "grpc", "", "c0", "c1", "10.0.0.1", "not-an-ip", "0", "65536", "8080", "iptables", str())
				}
			}
			meta, err := structpb.NewStruct(md)
			if err != nil { // invalid UTF-8 from str()
				meta = nil
			}
			node = &corev3.Node{Id: pick("p.ns", "", str()), Metadata: meta}
		}
		typeURL := pick(
			"type.googleapis.com/envoy.config.cluster.v3.Cluster",
			"type.googleapis.com/envoy.config.listener.v3.Listener",
			"type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
			"type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
			"type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
			"", "garbage", str())
		var names []string
		for i := range []int{0, 1, 3, 5000}[c.N(4)] {
			names = append(names, fmt.Sprintf("%s%d", pick("outbound|80||", "*", "", str()), i))
		}
		var nack *status.Status
		if c.N(5) == 0 {
			nack = &status.Status{Code: 3, Message: str()}
		}
		if delta {
			deltas = append(deltas, &discoveryv3.DeltaDiscoveryRequest{
				Node: node, TypeUrl: typeURL, ResourceNamesSubscribe: names, ResourceNamesUnsubscribe: names[:len(names)/2],
				ResponseNonce: pick("", "1", str()), ErrorDetail: nack,
				InitialResourceVersions: map[string]string{pick("a", str()): str()},
			})
		} else {
			sotw = append(sotw, &discoveryv3.DiscoveryRequest{
				Node: node, TypeUrl: typeURL, ResourceNames: names,
				VersionInfo: pick("", "1", str()), ResponseNonce: pick("", "1", str()), ErrorDetail: nack,
			})
		}
	}
	return delta, sotw, deltas
}

// FuzzADSRequests sends any sequence of requests on a stream, state of the
// world or delta: the server never crashes or panics, and keeps serving a
// well-formed proxy at once after each.
func FuzzADSRequests(f *testing.F) {
	for _, seed := range []string{
		"", "\x00\x01\x02", "delta with a node and many names \xff\xfe\x03\x03",
		"\x01\x03\x01\x01\x01\x01\x01\x01\x01\x01\x01\x03\x05garbage",
		strings.Repeat("\x07", 200),
	} {
		f.Add([]byte(seed))
	}
	fs := startFuzzServer(f)
	conn, err := grpc.NewClient(fs.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		f.Fatal(err)
	}
	defer conn.Close()
	ads := discoveryv3.NewAggregatedDiscoveryServiceClient(conn)
	f.Fuzz(func(t *testing.T, data []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		delta, sotw, deltas := requestsFrom(data)
		if delta {
			stream, err := ads.DeltaAggregatedResources(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range deltas {
				_ = stream.Send(r)
			}
			go func() {
				for {
					if _, err := stream.Recv(); err != nil {
						return
					}
				}
			}()
		} else {
			stream, err := ads.StreamAggregatedResources(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range sotw {
				_ = stream.Send(r)
			}
			go func() {
				for {
					if _, err := stream.Recv(); err != nil {
						return
					}
				}
			}()
		}
		// A proxy that asks properly is answered at once, whatever came
		// before.
		wctx, wcancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer wcancel()
		stream, err := ads.StreamAggregatedResources(wctx)
		if err != nil {
			t.Fatal(err)
		}
		md, _ := structpb.NewStruct(map[string]any{"role": "grpc", "namespace": "ns", "cluster": "c0"})
		if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "well-formed.ns", Metadata: md}, TypeUrl: "type.googleapis.com/envoy.config.cluster.v3.Cluster"}); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != nil {
			t.Fatalf("after the fuzzed stream, a well-formed proxy was not answered: %v", err)
		}
		fs.mu.Lock()
		defer fs.mu.Unlock()
		if len(fs.panics) > 0 {
			t.Fatalf("the server panicked: %s", fs.panics[0])
		}
	})
}
