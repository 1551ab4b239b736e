package testenv

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// A cluster with a real node has a load balancer as a cloud gives one,
// played by the harness: each Service of type LoadBalancer gets the next
// address of the node's LoadBalancerCIDR in its status, and the test
// network routes that range to the node, where kube-proxy sends it to the
// Service's endpoints (as MetalLB's layer-3 mode does). An address stays
// the Service's for the life of the cluster.

// loadBalancerPoll is how often the harness looks for new LoadBalancer
// Services.
const loadBalancerPoll = 200 * time.Millisecond

// serveLoadBalancers assigns LoadBalancer addresses until ctx ends.
func (c *Cluster) serveLoadBalancers(ctx context.Context) {
	prefix := netip.MustParsePrefix(c.Node.LoadBalancerCIDR)
	next := prefix.Addr().Next() // .0 is the network's
	given := map[string]string{}
	for {
		var list corev1.ServiceList
		if err := c.Client.List(ctx, &list); err == nil {
			for i := range list.Items {
				svc := &list.Items[i]
				if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
					continue
				}
				key := svc.Namespace + "/" + svc.Name
				ip, ok := given[key]
				if !ok {
					if !prefix.Contains(next) {
						fmt.Fprintf(os.Stderr, "testenv: %s: no LoadBalancer address left for %s\n", c.Name, key)
						continue
					}
					ip, next = next.String(), next.Next()
					given[key] = ip
				}
				if ing := svc.Status.LoadBalancer.Ingress; len(ing) == 1 && ing[0].IP == ip {
					continue
				}
				svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: ip, IPMode: ptr.To(corev1.LoadBalancerIPModeVIP)}}
				_ = c.Client.Status().Update(ctx, svc)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(loadBalancerPoll):
		}
	}
}

// LoadBalancerIP waits until the Service ns/name has its LoadBalancer
// address and returns it.
func (c *Cluster) LoadBalancerIP(ctx context.Context, ns, name string) (string, error) {
	var ip string
	err := Eventually(ctx, time.Minute, func(ctx context.Context) (bool, error) {
		var svc corev1.Service
		if err := c.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &svc); err != nil {
			return false, err
		}
		if ing := svc.Status.LoadBalancer.Ingress; len(ing) > 0 {
			ip = ing[0].IP
		}
		return ip != "", nil
	})
	if err != nil {
		return "", fmt.Errorf("LoadBalancer address of Service %s/%s in %s: %w", ns, name, c.Name, err)
	}
	return ip, nil
}

// isolateNetworks keeps the pods of clusters on different networks apart:
// the test network drops what a pod of one sends to a pod of another
// (their LoadBalancer addresses stay reachable), unless both clusters name
// the same network in networks.
func (f *Fleet) isolateNetworks(networks map[string]string) error {
	var rules []string
	for _, from := range f.Clusters {
		for _, to := range f.Clusters {
			if from == to || from.Node == nil || to.Node == nil {
				continue
			}
			if n := networks[from.Name]; n != "" && n == networks[to.Name] {
				continue
			}
			rules = append(rules, fmt.Sprintf("-A FORWARD -s %s -d %s -j DROP", from.Node.PodCIDR, to.Node.PodCIDR))
		}
	}
	if len(rules) == 0 {
		return nil
	}
	// Appended to the test network's own table: it goes with the network.
	restore := exec.Command("iptables-restore", "--noflush")
	restore.Stdin = strings.NewReader("*filter\n" + strings.Join(rules, "\n") + "\nCOMMIT\n")
	if out, err := restore.CombinedOutput(); err != nil {
		return fmt.Errorf("isolate the clusters' networks: iptables-restore: %w: %s", err, out)
	}
	return nil
}
