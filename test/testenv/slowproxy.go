package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"time"

	"k8s.io/client-go/rest"
)

// SlowAPIServer stands in front of a cluster's API server and can make it
// slow, as an overloaded API server is: while slow, every request but the
// health checks (/version, /healthz, /livez, /readyz) waits before it is
// passed on, so lists and watches answer late (or time out) while the
// server still looks alive. It serves plain HTTP on loopback and speaks to
// the API server with the cluster's admin credentials.
type SlowAPIServer struct {
	// URL is the proxy's address (http://127.0.0.1:<port>).
	URL string
	// Kubeconfig points at the proxy.
	Kubeconfig []byte

	delay atomic.Int64
	srv   *http.Server
}

// StartSlowProxy starts a SlowAPIServer for the cluster, fast until SetDelay.
func (c *Cluster) StartSlowProxy() (*SlowAPIServer, error) {
	target, err := url.Parse(c.Config.Host)
	if err != nil {
		return nil, err
	}
	transport, err := rest.TransportFor(c.Config)
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &SlowAPIServer{URL: "http://" + l.Addr().String()}
	proxy := &httputil.ReverseProxy{
		Rewrite:       func(r *httputil.ProxyRequest) { r.SetURL(target) },
		Transport:     transport,
		FlushInterval: -1, // watches stream
	}
	s.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/version", "/healthz", "/livez", "/readyz":
			default:
				select {
				case <-time.After(time.Duration(s.delay.Load())):
				case <-r.Context().Done():
					return
				}
			}
			proxy.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { _ = s.srv.Serve(l) }()
	if s.Kubeconfig, err = KubeconfigFor(&rest.Config{Host: s.URL}, c.Name); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("slow proxy for %s: %w", c.Name, err)
	}
	return s, nil
}

// SetDelay makes every request but the health checks wait d; 0 is fast.
func (s *SlowAPIServer) SetDelay(d time.Duration) { s.delay.Store(int64(d)) }

// Close stops the proxy and ends the connections through it.
func (s *SlowAPIServer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return s.srv.Close()
}
