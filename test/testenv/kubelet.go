package testenv

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/portforward"
	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/streaming/pkg/httpstream/spdy"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// KubeletPort is where the stand-in kubelet of every test node listens.
const KubeletPort = 10250

// startKubelet serves the one part of the kubelet API that tools reach
// through the API server and the harness cannot otherwise stand for:
// port-forward (POST /portForward/<ns>/<pod>, SPDY, protocol
// portforward.k8s.io). The API server's pods/portforward proxies here, as
// it proxies to a real kubelet. A forwarded port is dialled on localhost,
// which in the test network is every pod's localhost.
func (c *Cluster) startKubelet(ctx context.Context) error {
	addr := net.JoinHostPort(c.PodIP(254), strconv.Itoa(KubeletPort))
	if err := AddAddress(c.PodIP(254)); err != nil {
		return err
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("stand-in kubelet of %s: %w", c.Name, err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(servePortForward))
	_ = srv.Listener.Close()
	srv.Listener = l
	srv.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	srv.StartTLS() // the API server does not check a kubelet's certificate unless told to
	c.kubelet = srv

	node := &corev1.Node{}
	if err := c.Client.Get(ctx, client.ObjectKey{Name: c.NodeName}, node); err != nil {
		return fmt.Errorf("get node %s in %s: %w", c.NodeName, c.Name, err)
	}
	node.Status.DaemonEndpoints.KubeletEndpoint.Port = KubeletPort
	if err := c.Client.Status().Update(ctx, node); err != nil {
		return fmt.Errorf("update node %s status in %s: %w", c.NodeName, c.Name, err)
	}
	return nil
}

func servePortForward(w http.ResponseWriter, req *http.Request) {
	if !strings.HasPrefix(req.URL.Path, "/portForward/") {
		http.Error(w, "the stand-in kubelet serves only /portForward", http.StatusNotFound)
		return
	}
	if _, err := httpstream.Handshake(req, w, []string{portforward.PortForwardV1Name}); err != nil {
		return // Handshake wrote the error
	}
	streams := make(chan httpstream.Stream, 8)
	conn := spdy.NewResponseUpgrader().UpgradeResponse(w, req, func(s httpstream.Stream, _ <-chan struct{}) error {
		streams <- s
		return nil
	})
	if conn == nil {
		return
	}
	defer func() { _ = conn.Close() }()
	conn.SetIdleTimeout(10 * time.Minute)

	// Streams come in pairs (error, data) sharing a request ID.
	var mu sync.Mutex
	errStreams := map[string]httpstream.Stream{}
	for {
		select {
		case <-conn.CloseChan():
			return
		case s := <-streams:
			id := s.Headers().Get(corev1.PortForwardRequestIDHeader)
			switch s.Headers().Get(corev1.StreamType) {
			case corev1.StreamTypeError:
				mu.Lock()
				errStreams[id] = s
				mu.Unlock()
			case corev1.StreamTypeData:
				mu.Lock()
				errStream := errStreams[id]
				delete(errStreams, id)
				mu.Unlock()
				go forward(s, errStream, s.Headers().Get(corev1.PortHeader))
			default:
				_ = s.Reset()
			}
		}
	}
}

// forward copies one forwarded connection between the client's data stream
// and the port on localhost; a failure to dial goes back on the error
// stream, as the kubelet reports it.
func forward(data, errStream httpstream.Stream, port string) {
	defer func() { _ = data.Close() }()
	if errStream != nil {
		defer func() { _ = errStream.Close() }()
	}
	target, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", port), 5*time.Second)
	if err != nil {
		if errStream != nil {
			_, _ = fmt.Fprintf(errStream, "error forwarding port %s: %v", port, err)
		}
		return
	}
	defer func() { _ = target.Close() }()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(target, data); done <- struct{}{} }()
	go func() { _, _ = io.Copy(data, target); done <- struct{}{} }()
	<-done
}
