// Package discovery watches one cluster's API server (through a
// controller-runtime cache) and publishes immutable mesh models: Services,
// EndpointSlices (the cluster's own and the MCS-labelled copies from other
// clusters), ServiceImports, ServiceExports, GlobalTrafficPolicies, Clusters
// and Pods go in; model.Mesh comes out (Build, a pure function). Changes
// are queued and coalesced (a quiet period, bounded). A rebuild also
// decides the status of the imports and policies it read; the elected
// replica alone writes it (status.go).
package discovery
