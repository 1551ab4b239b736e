package xds

import (
	"context"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
)

// callbackFuncs adapts the tracker to go-control-plane's Callbacks.
type callbackFuncs struct {
	open          func(ctx context.Context, id int64, delta bool)
	closed        func(id int64, delta bool)
	sotwRequest   func(id int64, req *discoveryv3.DiscoveryRequest) error
	sotwResponse  func(id int64, resp *discoveryv3.DiscoveryResponse)
	deltaRequest  func(id int64, req *discoveryv3.DeltaDiscoveryRequest) error
	deltaResponse func(id int64, resp *discoveryv3.DeltaDiscoveryResponse)
}

var _ serverv3.Callbacks = callbackFuncs{}

func (c callbackFuncs) OnStreamOpen(ctx context.Context, id int64, _ string) error {
	c.open(ctx, id, false)
	return nil
}
func (c callbackFuncs) OnStreamClosed(id int64, _ *corev3.Node) { c.closed(id, false) }
func (c callbackFuncs) OnDeltaStreamOpen(ctx context.Context, id int64, _ string) error {
	c.open(ctx, id, true)
	return nil
}
func (c callbackFuncs) OnDeltaStreamClosed(id int64, _ *corev3.Node) { c.closed(id, true) }
func (c callbackFuncs) OnStreamRequest(id int64, req *discoveryv3.DiscoveryRequest) error {
	return c.sotwRequest(id, req)
}

func (c callbackFuncs) OnStreamResponse(_ context.Context, id int64, _ *discoveryv3.DiscoveryRequest, resp *discoveryv3.DiscoveryResponse) {
	c.sotwResponse(id, resp)
}

func (c callbackFuncs) OnStreamDeltaRequest(id int64, req *discoveryv3.DeltaDiscoveryRequest) error {
	return c.deltaRequest(id, req)
}

func (c callbackFuncs) OnStreamDeltaResponse(id int64, _ *discoveryv3.DeltaDiscoveryRequest, resp *discoveryv3.DeltaDiscoveryResponse) {
	c.deltaResponse(id, resp)
}

func (c callbackFuncs) OnFetchRequest(context.Context, *discoveryv3.DiscoveryRequest) error {
	return nil
}

func (c callbackFuncs) OnFetchResponse(*discoveryv3.DiscoveryRequest, *discoveryv3.DiscoveryResponse) {
}
