package article

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fleetmesh/fleetmesh/test/testenv"
)

// The benchmark path: a client pod's sidecar in cluster-2, cluster-1's
// gateway, a server pod's sidecar in cluster-1, its app. It lives in a
// namespace of its own, so the article's steps and the benchmarks share a
// fleet. With MTLS every hop is the mesh's mTLS (the gateway passes it
// through); without, every hop is plaintext.
const (
	benchNamespace = "bench"
	benchHost      = "echo.bench:8080"
)

// BenchPath deploys the benchmark path, once, and returns the client pod.
func (f *Fleet) BenchPath(ctx context.Context) (*testenv.Pod, error) {
	f.benchOnce.Do(func() { f.benchClient, f.benchErr = f.deployBenchPath(ctx) })
	return f.benchClient, f.benchErr
}

func (f *Fleet) deployBenchPath(ctx context.Context) (*testenv.Pod, error) {
	if _, err := f.deployMeshed(ctx, "cluster-1", meshedApp{
		namespace: benchNamespace, pod: "echo-1", app: "echo", serviceAccount: "echo",
		services: []string{"echo"}, backend: &testenv.HTTPBackend{Port: 8080, Body: "Hi, I am from cluster-1!\n"}, appHost: 20,
	}); err != nil {
		return nil, err
	}
	if err := f.ExportToCluster2(ctx, benchNamespace, "echo", "*"); err != nil {
		return nil, err
	}
	pod, _, err := f.RunClient(ctx, benchNamespace, "client-1", "client")
	if err != nil {
		return nil, err
	}
	err = testenv.Eventually(ctx, time.Minute, func(ctx context.Context) (bool, error) {
		_, err := Get(ctx, net.JoinHostPort(pod.IP, "8080"), benchHost, "/")
		return err == nil, nil
	})
	if err != nil {
		return nil, fmt.Errorf("the benchmark client never reached echo in cluster-1: %w", err)
	}
	return pod, nil
}

// Measured are the results of a load.
type Measured struct {
	Calls, Failed int
	PerSecond     float64
	P50, P99      time.Duration
}

// MeasureCalls sends n GETs for echo through the client pod's sidecar,
// from workers connections at a time (each keeps its connection), and
// measures them.
func MeasureCalls(ctx context.Context, client *testenv.Pod, n, workers int) Measured {
	addr := "http://" + net.JoinHostPort(client.IP, "8080") + "/"
	latencies := make([][]time.Duration, workers)
	failed := make([]int, workers)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range workers {
		wg.Go(func() {
			hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			defer hc.CloseIdleConnections()
			for i := w; i < n; i += workers {
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, addr, nil)
				if err != nil {
					failed[w]++
					continue
				}
				req.Host = benchHost
				t0 := time.Now()
				resp, err := hc.Do(req)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
				}
				if err != nil || resp.StatusCode != http.StatusOK {
					failed[w]++
					continue
				}
				latencies[w] = append(latencies[w], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	var all []time.Duration
	m := Measured{Calls: n}
	for w := range workers {
		all = append(all, latencies[w]...)
		m.Failed += failed[w]
	}
	slices.Sort(all)
	if len(all) > 0 {
		m.P50, m.P99 = all[len(all)/2], all[len(all)*99/100]
	}
	m.PerSecond = float64(len(all)) / elapsed.Seconds()
	return m
}

// BenchmarkThroughTheGateway is the benchmark of the path, for the
// packages whose fleets run it (plaintext, and with MTLS): requests per
// second, p50 and p99 of 2,000 calls from 8 connections, after a warm-up.
func BenchmarkThroughTheGateway(b *testing.B, f *Fleet) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	client, err := f.BenchPath(ctx)
	if err != nil {
		b.Fatal(err)
	}
	MeasureCalls(ctx, client, 200, 8)
	var m Measured
	for b.Loop() {
		m = MeasureCalls(ctx, client, 2000, 8)
	}
	if m.Failed > 0 {
		b.Fatalf("%d of %d calls failed", m.Failed, m.Calls)
	}
	b.ReportMetric(m.PerSecond, "req/s")
	b.ReportMetric(float64(m.P50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(m.P99.Microseconds())/1000, "p99-ms")
}
