// Package xds serves the translator's Envoy resources over ADS, state of
// the world and delta, to Envoy sidecars, Envoy gateways and proxyless gRPC
// clients.
//
// Each proxy's view is a union of layers in a Cache: the cluster-wide
// outbound clusters and endpoints ("outbound"), the proxyless listeners and
// routes ("proxyless"), and the proxy's own resources ("proxy/<node id>":
// a sidecar's listeners bound to its pod's address, routes and inbound
// clusters; a gateway's whole configuration). Every resource is marshalled
// once and versioned by its content, so an endpoint change sends only the
// ClusterLoadAssignment that changed, to only the proxies that hold it.
//
// The Server also tracks what every proxy was sent, acknowledged and
// refused (syncz, Prometheus metrics), and serves the debug API:
// /debug/config_dump?proxy=<node id>, /debug/syncz, /metrics, /healthz and
// /readyz.
package xds
