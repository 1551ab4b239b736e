// Package e2e holds the end-to-end tests: real kube-apiservers with a real
// kube-controller-manager each (test/testenv), fleetmesh's control plane,
// real backends on pod addresses of the test network, and real clients
// (grpc-go xDS clients, Envoy) counting where their calls land.
package e2e
