package xds

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestAStreamHoldsOnlyWhatTheServerServes plays a client that names what
// it likes, over gRPC: types the server does not serve, and more names
// than any proxy subscribes to. Each such stream is ended, saying why, and
// leaves nothing behind: no metrics series of its types, no stream state.
func TestAStreamHoldsOnlyWhatTheServerServes(t *testing.T) {
	h := startServer(t)
	h.server.Update(withPods(articleMesh(true), map[string]string{"curl/curl-1": "10.244.2.10"}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := discoveryv3.NewAggregatedDiscoveryServiceClient(h.conn)
	curl := node("curl-1.curl", "sidecar", map[string]any{"namespace": "curl", "pod": "curl-1"})

	sotw := func(req *discoveryv3.DiscoveryRequest) error {
		stream, err := client.StreamAggregatedResources(ctx)
		if err != nil {
			return err
		}
		defer func() { _ = stream.CloseSend() }()
		if err := stream.Send(req); err != nil {
			return err
		}
		_, err = stream.Recv()
		return err
	}
	t.Run("a type the server does not serve ends the stream, and leaves no series", func(t *testing.T) {
		for i := range 50 {
			bogus := fmt.Sprintf("type.googleapis.com/attacker.Type%03d", i)
			err := sotw(&discoveryv3.DiscoveryRequest{Node: curl, TypeUrl: bogus})
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "is not one this server serves") {
				t.Fatalf("state of the world, %s: got %v, want InvalidArgument", bogus, err)
			}
		}
		stream, err := client.DeltaAggregatedResources(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{Node: curl, TypeUrl: "type.googleapis.com/attacker.Delta"}); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("delta: got %v, want InvalidArgument", err)
		}
		families, err := h.server.registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range families {
			for _, m := range f.GetMetric() {
				for _, l := range m.GetLabel() {
					if strings.Contains(l.GetValue(), "attacker") || strings.Contains(l.GetValue(), "Type0") {
						t.Errorf("%s has a series for a client's type: %s=%s", f.GetName(), l.GetName(), l.GetValue())
					}
				}
			}
		}
		if n := counterValue(t, h.server, "fleetmesh_xds_refused_streams_total", "limit"); n != 51 {
			t.Errorf("fleetmesh_xds_refused_streams_total{reason=limit} = %v, want 51", n)
		}
	})

	t.Run("a state-of-the-world request of too many names ends the stream", func(t *testing.T) {
		names := make([]string, MaxSubscribedNames+1)
		for i := range names {
			names[i] = fmt.Sprint(i)
		}
		err := sotw(&discoveryv3.DiscoveryRequest{Node: curl, TypeUrl: resource.EndpointType, ResourceNames: names})
		if status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("got %v, want ResourceExhausted", err)
		}
	})

	t.Run("delta subscriptions that add up to too many names end the stream", func(t *testing.T) {
		stream, err := client.DeltaAggregatedResources(ctx)
		if err != nil {
			t.Fatal(err)
		}
		const batch = 1 << 13
		for i := 0; ; i++ {
			names := make([]string, batch)
			for j := range names {
				names[j] = fmt.Sprintf("%d-%d", i, j)
			}
			req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNamesSubscribe: names}
			if i == 0 {
				req.Node = curl
			}
			if err := stream.Send(req); err != nil {
				break // ended: Recv says why
			}
			if i > MaxSubscribedNames/batch+1 {
				break
			}
		}
		for {
			if _, err = stream.Recv(); err != nil {
				break
			}
		}
		if status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("got %v, want ResourceExhausted", err)
		}
	})

	t.Run("the server serves on", func(t *testing.T) {
		if err := sotw(&discoveryv3.DiscoveryRequest{Node: curl, TypeUrl: resource.ClusterType}); err != nil {
			t.Fatalf("a sidecar's request after the refusals: %v", err)
		}
	})
}

// TestASubscriptionChangeCostsWhatItChanges: a delta stream that
// subscribes to names one request at a time keeps one set, changed in
// place, rather than a copy of its whole subscription per request (which
// made a client that adds names one by one cost the server quadratic
// time); two streams of the same names still share theirs.
func TestASubscriptionChangeCostsWhatItChanges(t *testing.T) {
	sets := newNameSets()
	var s *nameSet
	for i := range 1000 {
		before := s
		s = sets.edit(s, []string{fmt.Sprint(i)}, nil)
		if before != nil && s != before {
			t.Fatalf("adding name %d to a set only one stream holds made a new set", i)
		}
	}
	s = sets.edit(s, nil, []string{"0", "1"})
	if len(s.all()) != 998 || s.has("0") || !s.has("2") {
		t.Fatalf("after removing 0 and 1: %d names", len(s.all()))
	}
	// A second stream arriving at the same names shares the set.
	var o *nameSet
	for i := 2; i < 1000; i++ {
		o = sets.edit(o, []string{fmt.Sprint(i)}, nil)
	}
	if o != s || s.refs != 2 {
		t.Fatalf("two streams of the same names hold %p and %p (refs %d), want one set", o, s, s.refs)
	}
	// One of them changes: it gets a set of its own, the other keeps its.
	o = sets.edit(o, []string{"x"}, nil)
	if o == s || s.refs != 1 || !o.has("x") || s.has("x") {
		t.Fatal("a change to a shared set changed it for the other stream too")
	}
	sets.release(o)
	sets.release(s)
	if len(sets.sets) != 0 {
		t.Errorf("%d sets left after every stream released its own", len(sets.sets))
	}
}

// counterValue is the value of a counter of the server's registry with
// one label of that value.
func counterValue(t *testing.T, s *Server, name, label string) float64 {
	t.Helper()
	families, err := s.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetValue() == label {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestAStreamThatDoesNotReadStallsNoOther plays a client that connects
// before the control plane has its first mesh, asks for every type it can
// name on a state-of-the-world stream and never reads: the first mesh is
// still published, and every other proxy served. (A stream holds a watch
// per type, answered into a channel of the stream that the cache must not
// wait on: with the four types the server serves, the answers fit it; a
// type of the client's choosing, which made a watch of its own, is
// refused.)
func TestAStreamThatDoesNotReadStallsNoOther(t *testing.T) {
	h := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := discoveryv3.NewAggregatedDiscoveryServiceClient(h.conn)
	stuck, err := client.StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	greedy := node("curl-2.curl", "sidecar", map[string]any{"namespace": "curl", "pod": "curl-2"})
	types := []string{resource.ClusterType, resource.EndpointType, resource.ListenerType, resource.RouteType}
	// Enough answers to fill what gRPC buffers for a client that does
	// not read.
	for i := range 20_000 {
		types = append(types, fmt.Sprintf("type.googleapis.com/attacker.Type%05d", i))
	}
	for _, typ := range types {
		if err := stuck.Send(&discoveryv3.DiscoveryRequest{Node: greedy, TypeUrl: typ}); err != nil {
			break // refused: the stream is over
		}
	}
	time.Sleep(200 * time.Millisecond) // the requests are in
	// The first mesh is published, and another proxy is sent every
	// change, while the first stream never reads.
	pods := map[string]string{"curl/curl-1": "10.244.2.10", "curl/curl-2": "10.244.2.11"}
	update := func(localReady bool) {
		t.Helper()
		done := make(chan struct{})
		go func() {
			h.server.Update(withPods(articleMesh(localReady), pods))
			close(done)
		}()
		select {
		case <-done:
		case <-ctx.Done():
			t.Fatal("an update never finished: a stream that does not read holds the server")
		}
	}
	update(true)
	other, err := client.DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Send(&discoveryv3.DeltaDiscoveryRequest{
		Node:    node("curl-1.curl", "sidecar", map[string]any{"namespace": "curl", "pod": "curl-1"}),
		TypeUrl: resource.EndpointType, ResourceNamesSubscribe: []string{"outbound|8080||httpbin.httpbin.svc.cluster.local"},
	}); err != nil {
		t.Fatal(err)
	}
	resp := recvDelta(t, other)
	for i := range 10 {
		update(i%2 == 1)
		if err := other.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resource.EndpointType, ResponseNonce: resp.GetNonce()}); err != nil {
			t.Fatal(err)
		}
		resp = recvDelta(t, other)
	}
}
