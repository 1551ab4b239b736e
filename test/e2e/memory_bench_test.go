package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fleetmesh/fleetmesh/test/testenv"
)

// BenchmarkMemoryPerSidecar measures what one more sidecar costs the
// built fleetmesh-controller. One cluster holds 1,000 Services of one
// namespace (HTTP port 80, one ready endpoint each); Envoy-like
// subscribers connect as injected sidecars of that namespace, each on its
// own connection: delta ADS, wildcard CDS and LDS, EDS for every cluster
// and RDS for every route configuration they are sent, every response
// acknowledged. The controller's heap after two collections
// (/debug/pprof/heap?gc=1) and its RSS are read with 0, 100 and 1,000
// subscribers synced; the per-sidecar figures are the growth divided by
// the number of subscribers. With FLEETMESH_BENCH_PROFILES=<dir> the heap
// profiles are written there.
func BenchmarkMemoryPerSidecar(b *testing.B) {
	const services = 1000
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	f, err := testenv.StartFleet(ctx, testenv.FleetOptions{Clusters: []string{"memory"}, NoControllerManager: true})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = f.Stop() }()
	c := f.Clusters[0]
	const ns = "memory"
	if err := c.EnsureNamespace(ctx, ns); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, services)
	sem := make(chan struct{}, 16)
	for i := range services {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			name := fmt.Sprintf("svc-%04d", i)
			svc := &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
				Spec: corev1.ServiceSpec{
					Selector: map[string]string{"app": name},
					Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}},
				},
			}
			slice := &discoveryv1.EndpointSlice{
				ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: name}},
				AddressType: discoveryv1.AddressTypeIPv4,
				Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080)}},
				Endpoints: []discoveryv1.Endpoint{{
					Addresses:  []string{fmt.Sprintf("10.200.%d.%d", i/250, i%250+1)},
					Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
				}},
			}
			if err := c.Client.Create(ctx, svc); err != nil {
				errs <- err
				return
			}
			if err := c.Client.Create(ctx, slice); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	b.Logf("%d Services and EndpointSlices written in %v", services, time.Since(start).Round(time.Millisecond))

	cp, err := c.StartControlPlane(ctx, testenv.ControlPlaneOptions{
		Args:      []string{"--cluster-name=memory", "--debug-auth=none", "--metrics-auth=none"},
		WaitReady: true,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = cp.Stop() }()

	heap := func() (heapKiB, rssKiB int) {
		// Two collections: gRPC's pooled buffers (a sync.Pool keeps what
		// it holds through one) are no sidecar's state.
		if _, err := cp.Get("/debug/pprof/heap?gc=1"); err != nil {
			b.Fatal(err)
		}
		out, err := cp.Get("/debug/pprof/heap?gc=1&debug=1")
		if err != nil {
			b.Fatal(err)
		}
		m := regexp.MustCompile(`# HeapInuse = (\d+)`).FindStringSubmatch(out)
		if m == nil {
			b.Fatalf("no HeapInuse in the heap profile:\n%.500s", out)
		}
		n, _ := strconv.Atoi(m[1])
		rss, err := cp.RSSKiB()
		if err != nil {
			b.Fatal(err)
		}
		return n / 1024, rss
	}

	b.ResetTimer()
	for range b.N {
		baseHeap, baseRSS := heap()
		b.Logf("0 sidecars: heap %d KiB, RSS %d KiB", baseHeap, baseRSS)
		var subs []*subscriber
		for _, n := range []int{100, 1000} {
			start := time.Now()
			for i := len(subs); i < n; i++ {
				s, err := subscribe(ctx, cp.XDSAddress, ns, fmt.Sprintf("sidecar-%d", i))
				if err != nil {
					b.Fatal(err)
				}
				subs = append(subs, s)
			}
			for _, s := range subs {
				if err := s.waitSynced(ctx, services); err != nil {
					b.Fatal(err)
				}
			}
			synced := time.Since(start)
			h, rss := heap()
			perHeap := float64(h-baseHeap) / float64(n)
			perRSS := float64(rss-baseRSS) / float64(n)
			b.Logf("%d sidecars synced in %v: heap %d KiB (%.1f KiB per sidecar), RSS %d KiB (%.1f KiB per sidecar)",
				n, synced.Round(time.Millisecond), h, perHeap, rss, perRSS)
			if dir := os.Getenv("FLEETMESH_BENCH_PROFILES"); dir != "" {
				// Where the memory goes: go tool pprof -sample_index=inuse_space <file>
				profile, err := cp.Get("/debug/pprof/heap")
				if err != nil {
					b.Fatal(err)
				}
				file := filepath.Join(dir, fmt.Sprintf("heap-%d-sidecars.pprof", n))
				if err := os.WriteFile(file, []byte(profile), 0o644); err != nil {
					b.Fatal(err)
				}
				b.Logf("heap profile: %s", file)
			}
			b.ReportMetric(perHeap, fmt.Sprintf("heap-KiB/sidecar@%d", n))
			b.ReportMetric(perRSS, fmt.Sprintf("rss-KiB/sidecar@%d", n))
		}
		profiled := make(chan struct{})
		if dir := os.Getenv("FLEETMESH_BENCH_PROFILES"); dir != "" {
			// Where the push's time goes: go tool pprof <binary> <file>
			go func() {
				defer close(profiled)
				profile, err := cp.Get("/debug/pprof/profile?seconds=2")
				if err == nil {
					err = os.WriteFile(filepath.Join(dir, "cpu-endpoint-change.pprof"), []byte(profile), 0o644)
				}
				if err != nil {
					b.Error(err)
				}
			}()
			time.Sleep(100 * time.Millisecond)
		} else {
			close(profiled)
		}
		p50, p99, last := endpointChangeTo(ctx, b, c, ns, subs)
		<-profiled
		b.Logf("an endpoint change reached all %d sidecars: p50 %v, p99 %v, last %v after the EndpointSlice write", len(subs), p50, p99, last)
		b.ReportMetric(float64(p99.Milliseconds()), "push-p99-ms")
		for _, s := range subs {
			s.close()
		}
	}
}

// watchedAssignment is the assignment whose updates subscribers time.
const watchedAssignment = "outbound|80||svc-0000.memory.svc.cluster.local"

// endpointChangeTo changes the endpoint of svc-0000 through the API
// server and returns when every subscriber received the new assignment:
// p50, p99 and the last, from the write (watch, debounce, translation,
// push).
func endpointChangeTo(ctx context.Context, b *testing.B, c *testenv.Cluster, ns string, subs []*subscriber) (p50, p99, last time.Duration) {
	slice := &discoveryv1.EndpointSlice{}
	if err := c.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "svc-0000"}, slice); err != nil {
		b.Fatal(err)
	}
	slice.Endpoints[0].Addresses = []string{"10.201.0.1"}
	start := time.Now()
	if err := c.Client.Update(ctx, slice); err != nil {
		b.Fatal(err)
	}
	var lat []time.Duration
	err := testenv.Eventually(ctx, time.Minute, func(context.Context) (bool, error) {
		lat = lat[:0]
		for _, s := range subs {
			if at := s.watchedAt.Load(); at > start.UnixNano() {
				lat = append(lat, time.Duration(at-start.UnixNano()))
			}
		}
		return len(lat) == len(subs), fmt.Errorf("%d of %d sidecars have the new assignment", len(lat), len(subs))
	})
	if err != nil {
		b.Fatal(err)
	}
	slices.Sort(lat)
	return lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1]
}

// subscriber is an Envoy-like delta ADS client of one sidecar.
type subscriber struct {
	conn   *grpc.ClientConn
	cancel context.CancelFunc
	// counts of the resources held, by type
	clusters, endpoints, listeners, routes atomic.Int64
	err                                    atomic.Value
	// watchedAt is when watchedAssignment last came (Unix ns).
	watchedAt atomic.Int64
}

// subscribe connects a sidecar named pod of namespace ns and keeps its
// stream going, as Envoy does, until close.
func subscribe(ctx context.Context, addr, ns, pod string) (*subscriber, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(sctx)
	if err != nil {
		cancel()
		_ = conn.Close()
		return nil, err
	}
	md, _ := structpb.NewStruct(map[string]any{
		"role": "sidecar", "namespace": ns, "pod": pod, "serviceAccount": "default", "cluster": "memory", "interception": "iptables",
	})
	node := &corev3.Node{Id: pod + "." + ns, Metadata: md}
	s := &subscriber{conn: conn, cancel: cancel}
	send := func(req *discoveryv3.DeltaDiscoveryRequest) error { return stream.Send(req) }
	for _, typ := range []string{resource.ClusterType, resource.ListenerType} {
		if err := send(&discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: typ}); err != nil {
			cancel()
			_ = conn.Close()
			return nil, err
		}
	}
	go func() {
		subscribed := map[string]map[string]bool{resource.EndpointType: {}, resource.RouteType: {}}
		held := map[string]map[string]bool{}
		for {
			resp, err := stream.Recv()
			if err != nil {
				if !errors.Is(err, io.EOF) && sctx.Err() == nil {
					s.err.Store(err)
				}
				return
			}
			typ := resp.GetTypeUrl()
			if held[typ] == nil {
				held[typ] = map[string]bool{}
			}
			more := map[string][]string{}
			for _, r := range resp.GetResources() {
				held[typ][r.GetName()] = true
				if r.GetName() == watchedAssignment {
					s.watchedAt.Store(time.Now().UnixNano())
				}
				switch typ {
				case resource.ClusterType:
					c := &clusterv3.Cluster{}
					if r.GetResource().UnmarshalTo(c) == nil && c.GetType() == clusterv3.Cluster_EDS && !subscribed[resource.EndpointType][c.GetName()] {
						subscribed[resource.EndpointType][c.GetName()] = true
						more[resource.EndpointType] = append(more[resource.EndpointType], c.GetName())
					}
				case resource.ListenerType:
					l := &listenerv3.Listener{}
					if r.GetResource().UnmarshalTo(l) != nil {
						continue
					}
					for _, fc := range l.GetFilterChains() {
						for _, f := range fc.GetFilters() {
							h := &hcmv3.HttpConnectionManager{}
							if f.GetTypedConfig().UnmarshalTo(h) == nil && h.GetRds() != nil {
								name := h.GetRds().GetRouteConfigName()
								if !subscribed[resource.RouteType][name] {
									subscribed[resource.RouteType][name] = true
									more[resource.RouteType] = append(more[resource.RouteType], name)
								}
							}
						}
					}
				}
			}
			for _, name := range resp.GetRemovedResources() {
				delete(held[typ], name)
			}
			counter := map[string]*atomic.Int64{resource.ClusterType: &s.clusters, resource.EndpointType: &s.endpoints, resource.ListenerType: &s.listeners, resource.RouteType: &s.routes}[typ]
			if counter != nil {
				counter.Store(int64(len(held[typ])))
			}
			if err := send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: typ, ResponseNonce: resp.GetNonce()}); err != nil {
				return
			}
			for t, names := range more {
				if err := send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: t, ResourceNamesSubscribe: names}); err != nil {
					return
				}
			}
		}
	}()
	return s, nil
}

// waitSynced waits until the subscriber holds a cluster and an
// assignment of every service, and a route configuration.
func (s *subscriber) waitSynced(ctx context.Context, services int) error {
	return testenv.Eventually(ctx, 5*time.Minute, func(context.Context) (bool, error) {
		if err, ok := s.err.Load().(error); ok {
			return false, err
		}
		return s.clusters.Load() >= int64(services) && s.endpoints.Load() >= int64(services) && s.routes.Load() > 0,
			fmt.Errorf("%d clusters, %d assignments, %d listeners, %d route configurations", s.clusters.Load(), s.endpoints.Load(), s.listeners.Load(), s.routes.Load())
	})
}

func (s *subscriber) close() {
	s.cancel()
	_ = s.conn.Close()
}
