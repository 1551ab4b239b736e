package xds

import (
	"context"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/go-logr/logr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// BenchmarkEndpointChangeWhileHammered serves 100 real grpc-go xDS
// clients with the server as shipped (NewGRPCServer: 100 streams per
// connection; LimitAccepts: 100 new connections a second) and, per
// iteration, changes one endpoint twice: once quietly, once while 8
// goroutines hammer the port, each opening connections and streams as
// fast as it can and sending requests no proxy would (an unknown role).
// It reports the p99 time until the served clients acknowledged, quiet and
// hammered, and what the hammer got through.
func BenchmarkEndpointChangeWhileHammered(b *testing.B) {
	const clients, hammers = 100, 8
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := NewServer(ctx, Options{ClusterName: "cluster-2", Log: logr.Discard()})
	g := NewGRPCServer(GRPCOptions{MaxStreamsPerConnection: 100, Log: logr.Discard()})
	s.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = g.Serve(LimitAccepts(lis, 100)) }()
	defer g.Stop()
	s.Update(benchMeshWith(1))
	startBenchClients(b, lis.Addr().String(), clients)
	waitAcked(b, s, nil, clients)

	change := func(i int) time.Duration {
		prev := ackedVersions(s)
		start := time.Now()
		s.Update(benchMeshWith(2 + i%2))
		acked, _ := waitAcked(b, s, prev, clients)
		var lat []time.Duration
		for _, t := range acked {
			lat = append(lat, t.Sub(start))
		}
		slices.Sort(lat)
		return lat[len(lat)*99/100]
	}
	var quiet, hammered []time.Duration
	var conns, streams atomic.Int64
	var hammerTime time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		quiet = append(quiet, change(2*i))
		hctx, stop := context.WithCancel(ctx)
		var wg sync.WaitGroup
		for range hammers {
			wg.Go(func() { hammer(hctx, lis.Addr().String(), &conns, &streams) })
		}
		time.Sleep(time.Second) // the hammer is at full speed
		began := time.Now()
		hammered = append(hammered, change(2*i+1))
		stop()
		wg.Wait()
		hammerTime += time.Since(began) + time.Second
	}
	b.StopTimer()
	b.ReportMetric(medianMs(quiet), "quiet-p99-ms")
	b.ReportMetric(medianMs(hammered), "hammered-p99-ms")
	b.ReportMetric(float64(conns.Load())/hammerTime.Seconds(), "hammer-conns/s")
	b.ReportMetric(float64(streams.Load())/hammerTime.Seconds(), "hammer-streams/s")
}

// hammer opens connections and, on each, as many streams as it may, each
// sending a request the server refuses, until ctx ends.
func hammer(ctx context.Context, addr string, conns, streams *atomic.Int64) {
	bad := &discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "hammer"}, TypeUrl: "type.googleapis.com/envoy.config.cluster.v3.Cluster"}
	for ctx.Err() == nil {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return
		}
		conns.Add(1)
		ads := discoveryv3.NewAggregatedDiscoveryServiceClient(conn)
		for range 100 {
			if ctx.Err() != nil {
				break
			}
			sctx, cancel := context.WithTimeout(ctx, time.Second)
			stream, err := ads.StreamAggregatedResources(sctx)
			if err == nil && stream.Send(bad) == nil {
				_, _ = stream.Recv()
				streams.Add(1)
			}
			cancel()
		}
		_ = conn.Close()
	}
}
