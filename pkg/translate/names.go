package translate

import (
	"fmt"

	"github.com/fleetmesh/fleetmesh/pkg/model"
)

// OutboundClusterName names the cluster (and its endpoints) through which
// consumers in the local cluster reach a service port, under its policy.
func OutboundClusterName(svc *model.Service, port uint32) string {
	return fmt.Sprintf("outbound|%d||%s", port, svc.FQDN())
}

// LocalClusterName names the cluster of a service port's local endpoints
// only, which the gateway serves to other clusters.
func LocalClusterName(svc *model.Service, port uint32) string {
	return fmt.Sprintf("local|%d||%s", port, svc.FQDN())
}

// PassthroughClusterNameFor names the gateway's cluster of a service
// port's local pods that take mesh mTLS: connections for the port's SNI
// go on to them, still encrypted.
func PassthroughClusterNameFor(svc *model.Service, port uint32) string {
	return fmt.Sprintf("sni|%d||%s", port, svc.FQDN())
}

// InboundClusterName names the cluster of a sidecar's own app port.
func InboundClusterName(port uint32) string {
	return fmt.Sprintf("inbound|%d||", port)
}

// ProxylessName names the listener and routes a proxyless gRPC client asks
// for when it dials xds:///<svc>.<ns>.svc.cluster.local:<port>.
func ProxylessName(svc *model.Service, port uint32) string {
	return fmt.Sprintf("%s:%d", svc.FQDN(), port)
}

// ProxylessClustersetName names the listener and routes a proxyless gRPC
// client asks for when it dials a service of the clusterset by its MCS
// name, xds:///<svc>.<ns>.svc.clusterset.local:<port>.
func ProxylessClustersetName(svc *model.Service, port uint32) string {
	return fmt.Sprintf("%s:%d", svc.ClustersetFQDN(), port)
}

func outboundListenerName(port uint32) string { return fmt.Sprintf("outbound|%d", port) }

func outboundRouteName(port uint32, namespace string) string {
	return fmt.Sprintf("outbound|%d|%s", port, namespace)
}

func inboundListenerName(port uint32) string { return fmt.Sprintf("inbound|%d", port) }

func gatewayName(port uint32) string { return fmt.Sprintf("gateway|%d", port) }

// hostnames returns every name form a client may put in its Host header
// for the service port: name.ns, name.ns.svc, the FQDN (and the
// clusterset.local one, for a service of the clusterset), the virtual IPs,
// each with :port and, when withoutPort, also without; the bare name only
// for a proxy in the service's own namespace (bareFor).
func hostnames(svc *model.Service, port uint32, bareFor string, withoutPort bool) []string {
	forms := []string{svc.Name + "." + svc.Namespace, svc.Name + "." + svc.Namespace + ".svc", svc.FQDN()}
	if svc.InClusterset() {
		forms = append(forms, svc.ClustersetFQDN())
	}
	if bareFor != "" && svc.Namespace == bareFor {
		forms = append(forms, svc.Name)
	}
	forms = append(forms, svc.VIPs...)
	out := make([]string, 0, 2*len(forms))
	for _, f := range forms {
		if withoutPort {
			out = append(out, f)
		}
		out = append(out, fmt.Sprintf("%s:%d", hostPort(f), port))
	}
	return out
}

// hostPort brackets an IPv6 address for use before :port.
func hostPort(host string) string {
	for i := 0; i < len(host); i++ {
		if host[i] == ':' {
			return "[" + host + "]"
		}
	}
	return host
}
