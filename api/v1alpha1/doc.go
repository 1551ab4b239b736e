// Package v1alpha1 holds the fleetmesh.io/v1alpha1 API: the objects a platform
// team writes to schedule service traffic across a fleet of Kubernetes
// clusters.
//
// The words used throughout fleetmesh:
//
//   - A member (or member cluster) is a Kubernetes cluster registered with the
//     federation by a Cluster object in the control-plane cluster.
//   - A clusterKey names a member across the fleet as region/zone/group/name,
//     for example "default/default/default/cluster-1". Region, zone and group
//     default to "default". [Cluster.Key] computes it; [ParseClusterKey] reads
//     one back.
//   - An export is a ServiceExport in a member: it offers the Service of the
//     same namespace and name to the rest of the fleet, optionally through
//     gateway paths (its rules).
//   - An import is the ServiceImport that the federation writes into every
//     other member for each exported service: one endpoint per exporting
//     cluster, each with the target (gateway host, IP, port and path) at which
//     that cluster serves it.
//   - A target is a cluster that a consumer's GlobalTrafficPolicy lets traffic
//     go to, besides the consumer's own cluster: with FailOver only when local
//     endpoints are gone or failing, with ActiveActive all the time, weighted.
//
// +kubebuilder:object:generate=true
// +groupName=fleetmesh.io
package v1alpha1
