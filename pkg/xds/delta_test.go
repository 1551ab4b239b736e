package xds

import (
	"context"
	"slices"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// TestADeltaStreamIsSentWhatItsSubscriptionAndTheLayersChanged walks the
// delta protocol's cases on the server's own delta ADS: names subscribed
// one by one, unsubscribed, changed and removed, and a reconnecting
// client told what it holds is gone. Two sidecars subscribing to the same
// names share one set.
func TestADeltaStreamIsSentWhatItsSubscriptionAndTheLayersChanged(t *testing.T) {
	h := startServer(t)
	mesh := func(localReady bool) {
		h.server.Update(withPods(articleMesh(localReady), map[string]string{"curl/curl-1": "10.244.2.10", "curl/curl-2": "10.244.2.11", "curl/curl-3": "10.244.2.12"}))
	}
	mesh(true)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	open := func(pod string) discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient {
		stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(h.conn).DeltaAggregatedResources(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return stream
	}
	send := func(stream discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient, req *discoveryv3.DeltaDiscoveryRequest) {
		t.Helper()
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	// expect receives one response and checks what it sends and removes;
	// it acknowledges it.
	expect := func(stream discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient, what string, sent, removed []string) {
		t.Helper()
		resp := recvDelta(t, stream)
		got, gone := namesOf(resp.GetResources()), resp.GetRemovedResources()
		slices.Sort(got)
		slices.Sort(sent)
		slices.Sort(removed)
		if resp.GetTypeUrl() != resource.EndpointType || !slices.Equal(got, sent) || !slices.Equal(gone, removed) {
			t.Fatalf("%s: got %s sent %q removed %q, want sent %q removed %q", what, shortType(resp.GetTypeUrl()), got, gone, sent, removed)
		}
		send(stream, &discoveryv3.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()})
	}
	quiet := func(stream discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient, what string) {
		t.Helper()
		ch := make(chan *discoveryv3.DeltaDiscoveryResponse, 1)
		go func() {
			if resp, err := stream.Recv(); err == nil {
				ch <- resp
			}
		}()
		select {
		case resp := <-ch:
			t.Fatalf("%s: want nothing, got %s sent %q removed %q", what, shortType(resp.GetTypeUrl()), namesOf(resp.GetResources()), resp.GetRemovedResources())
		case <-time.After(300 * time.Millisecond):
		}
		// The receiver is left waiting: the next expect's response goes
		// to it, so quiet is the last call on a stream.
	}
	httpbin := "outbound|8080||httpbin.httpbin.svc.cluster.local"
	curl := "outbound|80||curl.curl.svc.cluster.local"
	gone := "outbound|9999||gone.gone.svc.cluster.local"

	one := open("curl-1")
	n1 := node("curl-1.curl", "sidecar", map[string]any{"namespace": "curl", "pod": "curl-1"})
	send(one, &discoveryv3.DeltaDiscoveryRequest{
		Node: n1, TypeUrl: resource.EndpointType, ResourceNamesSubscribe: []string{httpbin},
		InitialResourceVersions: map[string]string{httpbin: "old", gone: "old"},
	})
	expect(one, "first response: the subscribed name, and a held name that is gone", []string{httpbin}, []string{gone})
	send(one, &discoveryv3.DeltaDiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNamesSubscribe: []string{curl}})
	expect(one, "a newly subscribed name alone", []string{curl}, nil)

	// A second sidecar of the namespace subscribes to the same names:
	// one set serves both.
	two := open("curl-2")
	send(two, &discoveryv3.DeltaDiscoveryRequest{
		Node:    node("curl-2.curl", "sidecar", map[string]any{"namespace": "curl", "pod": "curl-2"}),
		TypeUrl: resource.EndpointType, ResourceNamesSubscribe: []string{curl, httpbin},
	})
	expect(two, "the second sidecar's first response", []string{curl, httpbin}, nil)
	delta := h.server.xds.(adsServer).delta
	delta.names.mu.Lock()
	sets := 0
	for _, ss := range delta.names.sets {
		sets += len(ss)
	}
	delta.names.mu.Unlock()
	if sets != 1 {
		t.Errorf("two sidecars subscribed to the same names hold %d sets, want 1", sets)
	}

	// httpbin's local endpoint changes: both are sent httpbin alone.
	mesh(false)
	expect(one, "a changed assignment", []string{httpbin}, nil)
	expect(two, "a changed assignment", []string{httpbin}, nil)

	// Unsubscribing is answered with nothing (a request without a nonce
	// always is); a change to what is no longer subscribed is not sent.
	send(one, &discoveryv3.DeltaDiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNamesUnsubscribe: []string{httpbin}})
	expect(one, "unsubscribing", nil, nil)
	mesh(true)
	expect(two, "a changed assignment", []string{httpbin}, nil)

	// Subscribing to everything ("*") sends what was not held, and
	// nothing else.
	three := open("curl-3")
	send(three, &discoveryv3.DeltaDiscoveryRequest{
		Node:    node("curl-3.curl", "sidecar", map[string]any{"namespace": "curl", "pod": "curl-3"}),
		TypeUrl: resource.EndpointType, ResourceNamesSubscribe: []string{curl},
	})
	expect(three, "a sidecar of curl alone", []string{curl}, nil)
	send(three, &discoveryv3.DeltaDiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNamesSubscribe: []string{"*"}})
	expect(three, "subscribing to *", []string{httpbin}, nil)
	quiet(one, "after unsubscribing from the only name that changed")
}
