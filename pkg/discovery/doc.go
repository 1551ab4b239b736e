// Package discovery watches one cluster's API server (through a
// controller-runtime cache) and publishes immutable mesh models: Services,
// EndpointSlices (the cluster's own and the MCS-labelled copies from other
// clusters), ServiceImports, ServiceExports, GlobalTrafficPolicies, Clusters
// and Pods go in; model.Mesh comes out (Build, a pure function). Bursts of
// events are coalesced: a rebuild waits for a quiet period (debounce) but
// never longer than a maximum delay. It also writes each
// GlobalTrafficPolicy's status.
package discovery
