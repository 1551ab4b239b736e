package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fleetmesh/fleetmesh/test/testenv"
)

// stormProxies is how many proxies reconnect at once in
// BenchmarkTokenReconnectStorm.
const stormProxies = 500

// BenchmarkTokenReconnectStorm: stormProxies proxies that authenticate
// with their pods' tokens (--xds-token-auth) connect to the built
// controller at once, as after a control plane restart: the time until the
// last has its first answer, and the TokenReviews it took. Each token is
// new to the controller, so each is reviewed.
func BenchmarkTokenReconnectStorm(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c := fleet.Cluster("cluster-1")
	cp, roots := startTLSControlPlane(ctx, b, c, "--xds-token-auth")
	benchRuns++
	ns, sa := fmt.Sprintf("storm-%d", benchRuns), "storm"
	if err := c.EnsureNamespace(ctx, ns); err != nil {
		b.Fatal(err)
	}
	if err := c.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sa}}); err != nil {
		b.Fatal(err)
	}
	tokens, ips := make([]string, stormProxies), make([]string, stormProxies)
	for i := range tokens {
		pod := fmt.Sprintf("proxy-%d", i)
		// Addresses of their own, beside the cluster's pods'.
		p, err := c.RunPod(ctx, testenv.PodOptions{Namespace: ns, Name: pod, ServiceAccountName: sa, IP: fmt.Sprintf("10.250.%d.%d", benchRuns*2+i/250, i%250+1)})
		if err != nil {
			b.Fatal(err)
		}
		tokens[i], ips[i] = podToken(ctx, b, c, ns, pod, sa, "fleetmesh", false), p.IP
	}
	before := reviewResults(b, cp)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, stormProxies)
	for i, token := range tokens {
		wg.Go(func() {
			pod := fmt.Sprintf("proxy-%d", i)
			// Each from its pod's address, as in a cluster.
			_, err := firstAnswer(ctx, dialWithTokenFrom(b, ips[i], cp.XDSAddress, roots, token),
				&discoveryv3.DiscoveryRequest{Node: node(b, pod+"."+ns, "sidecar", ns, pod, sa), TypeUrl: clusterType})
			if err != nil {
				errs <- fmt.Errorf("%s: %w", pod, err)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	after := reviewResults(b, cp)
	b.ReportMetric(elapsed.Seconds(), "storm-s")
	b.ReportMetric(float64(after["authenticated"]-before["authenticated"]), "reviews")
	b.Logf("%d proxies with tokens connected at once: the last answered after %s, %d reviews", stormProxies, elapsed.Round(time.Millisecond), after["authenticated"]-before["authenticated"])
}
