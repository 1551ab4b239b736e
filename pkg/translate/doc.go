// Package translate turns the mesh model into Envoy resources for one proxy:
// a sidecar, a gateway, or a proxyless gRPC client. Translation is a pure
// function of the model and the proxy's identity: it does no I/O, reads no
// clock, and the same input always yields byte-identical resources.
//
// Resource names are stable and documented:
//
//	outbound|<port>||<svc>.<ns>.svc.cluster.local  cluster and endpoints a consumer uses (sidecar and gRPC)
//	local|<port>||<svc>.<ns>.svc.cluster.local     this cluster's endpoints only (gateway)
//	inbound|<port>||                               a sidecar's own app
//	outbound|<port>                                a sidecar's outbound listener
//	outbound|<port>|<proxy namespace>              its routes (the bare service name is namespace-scoped)
//	inbound|<port>                                 a sidecar's inbound listener and routes
//	gateway|<port>                                 a gateway's listener and routes
//	<svc>.<ns>.svc.cluster.local:<port>            a proxyless client's listener and routes
//
// Traffic policy (README, "GlobalTrafficPolicy" and "How a policy becomes
// Envoy configuration") is decided in one place, Place, which both the
// endpoint assignments and the policy status reports read.
package translate
