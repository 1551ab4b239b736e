package xds

import (
	"context"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/xds"

	"github.com/fleetmesh/fleetmesh/pkg/model"
)

// wireCounter counts the bytes the server writes on the wire.
type wireCounter struct{ out atomic.Int64 }

func (w *wireCounter) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }

func (w *wireCounter) HandleRPC(_ context.Context, s stats.RPCStats) {
	if p, ok := s.(*stats.OutPayload); ok {
		w.out.Add(int64(p.WireLength))
	}
}

func (w *wireCounter) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (w *wireCounter) HandleConn(context.Context, stats.ConnStats)                       {}

// benchMeshWith is the article's cluster-2 with a variable number of local
// httpbin pods on loopback addresses (nothing listens there: clients only
// subscribe).
func benchMeshWith(localPods int) *model.Mesh {
	m := articleMesh(false)
	eps := m.Services[0].Ports[0].Endpoints[:2]
	for i := range localPods {
		eps = append(eps, model.Endpoint{Cluster: "cluster-2", Address: fmt.Sprintf("127.0.1.%d", i+1), Port: 8080, Ready: true})
	}
	m.Services[0].Ports[0].Endpoints = eps
	m.Clusters[0].Gateway.IP, m.Clusters[2].Gateway.IP = "127.0.0.81", "127.0.0.83"
	m.Services[0].Ports[0].Endpoints[0].Address, m.Services[0].Ports[0].Endpoints[1].Address = "127.0.0.81", "127.0.0.83"
	return m
}

var (
	rssOnce  sync.Once
	rssFirst [2]int
)

func rssKiB() int {
	data, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			n, _ := strconv.Atoi(strings.Fields(line)[1])
			return n
		}
	}
	return 0
}

// BenchmarkEndpointChangeTo1000Clients connects 1,000 real grpc-go xDS
// clients (one process, each with its own xDS client and node id) to one
// service, then, per iteration, changes one endpoint and measures the time
// until each client has acknowledged the new assignment: p50 and p99
// across clients, the time until the last one, the bytes the server sent
// for the change, and the process's RSS (server and clients).
func BenchmarkEndpointChangeTo1000Clients(b *testing.B) {
	const clients = 1000
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := NewServer(ctx, Options{ClusterName: "cluster-2", Log: logr.Discard()})
	wire := &wireCounter{}
	g := grpc.NewServer(grpc.StatsHandler(wire), grpc.MaxConcurrentStreams(1<<20))
	s.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = g.Serve(lis) }()
	defer g.Stop()
	// Real listeners on every endpoint, so the clients' subchannels are
	// ready rather than retrying refused connections.
	for _, addr := range []string{"127.0.0.81:81", "127.0.0.83:83", "127.0.1.1:8080", "127.0.1.2:8080", "127.0.1.3:8080"} {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		backend := grpc.NewServer()
		go func() { _ = backend.Serve(l) }()
		defer backend.Stop()
	}
	s.Update(benchMeshWith(1))
	rssBefore := rssKiB()

	startBenchClients(b, lis.Addr().String(), clients)
	var lastSent time.Time
	waitAll := func(prev map[string]string) map[string]time.Time {
		var acked map[string]time.Time
		acked, lastSent = waitAcked(b, s, prev, clients)
		return acked
	}
	waitAll(nil)
	rssConnected := rssKiB()

	var p50s, p99s, lasts, pushed []time.Duration
	var bytes int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		prev := ackedVersions(s)
		sent := wire.out.Load()
		start := time.Now()
		s.Update(benchMeshWith(2 + i%2)) // one local endpoint comes or goes
		acked := waitAll(prev)
		bytes += wire.out.Load() - sent
		var lat []time.Duration
		for _, t := range acked {
			lat = append(lat, t.Sub(start))
		}
		slices.Sort(lat)
		p50s = append(p50s, lat[len(lat)/2])
		p99s = append(p99s, lat[len(lat)*99/100])
		lasts = append(lasts, lat[len(lat)-1])
		pushed = append(pushed, lastSent.Sub(start))
	}
	b.StopTimer()
	b.ReportMetric(medianMs(p50s), "p50-ms")
	b.ReportMetric(medianMs(p99s), "p99-ms")
	b.ReportMetric(medianMs(lasts), "last-ms")
	b.ReportMetric(medianMs(pushed), "server-pushed-all-ms")
	b.ReportMetric(float64(bytes)/float64(b.N), "wire-bytes/change")
	// The first run's figures: later runs start with its memory still
	// held by the process.
	rssOnce.Do(func() { rssFirst = [2]int{rssBefore, rssConnected} })
	b.ReportMetric(float64(rssFirst[0])/1024, "rss-MiB-server-only")
	b.ReportMetric(float64(rssFirst[1])/1024, "rss-MiB-with-clients")
}

// startBenchClients connects n real grpc-go xDS clients to the server at
// addr, each with its own xDS client and node id, subscribed to httpbin.
func startBenchClients(b *testing.B, addr string, n int) {
	target := "xds:///httpbin.httpbin.svc.cluster.local:8080"
	for i := range n {
		bootstrap := fmt.Sprintf(`{"xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
			"node": {"id": "bench-%d", "metadata": {"role": "grpc", "namespace": "bench"}}}`, addr, i)
		builder, err := xds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
		if err != nil {
			b.Fatal(err)
		}
		conn, err := grpc.NewClient(target, grpc.WithResolvers(builder), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { conn.Close() })
		conn.Connect()
	}
}

// ackedVersions is the endpoint version each proxy acknowledged.
func ackedVersions(s *Server) map[string]string {
	prev := map[string]string{}
	for _, p := range s.Proxies() {
		if st := p.Types["ClusterLoadAssignment"]; st != nil {
			prev[p.ID] = st.Acked
		}
	}
	return prev
}

// waitAcked waits until n proxies have acknowledged endpoints newer than
// prev, and returns when each did and when the server sent the last.
func waitAcked(b *testing.B, s *Server, prev map[string]string, n int) (map[string]time.Time, time.Time) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		acked := map[string]time.Time{}
		var lastSent time.Time
		for _, p := range s.Proxies() {
			if st := p.Types["ClusterLoadAssignment"]; st != nil && st.Acked != "" && st.Acked != prev[p.ID] && st.State() == "SYNCED" {
				acked[p.ID] = st.AckedAt
				if st.SentAt.After(lastSent) {
					lastSent = st.SentAt
				}
			}
		}
		if len(acked) == n {
			return acked, lastSent
		}
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d clients acknowledged", len(acked), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// medianMs is the median of d in milliseconds.
func medianMs(d []time.Duration) float64 {
	slices.Sort(d)
	return float64(d[len(d)/2].Microseconds()) / 1000
}
