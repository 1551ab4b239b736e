package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
	streamhttp "k8s.io/streaming/pkg/httpstream"
)

// envoyConfigDump reads a sidecar's own Envoy admin /config_dump through a
// port-forward to the pod, as kubectl port-forward and istioctl do: the
// admin listener is on the pod's localhost, out of reach otherwise.
func envoyConfigDump(ctx context.Context, k *kubeFlags, namespace, pod string, adminPort int) ([]byte, error) {
	return envoyAdminGet(ctx, k, namespace, pod, adminPort, "/config_dump?include_eds")
}

// envoyAdminGet reads path of the Envoy admin API of a pod's sidecar,
// port-forwarded through the API server.
func envoyAdminGet(ctx context.Context, k *kubeFlags, namespace, pod string, adminPort int, path string) ([]byte, error) {
	cs, err := k.clients()
	if err != nil {
		return nil, err
	}
	p, err := cs.core.CoreV1().Pods(namespace).Get(ctx, pod, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("get pod %s/%s: %w", namespace, pod, err)
	}
	if !podReady(p) {
		return nil, fmt.Errorf("pod %s/%s is not running and ready: its Envoy cannot be reached", namespace, pod)
	}
	var data []byte
	err = forward(ctx, cs, namespace, pod, adminPort, func(local int) error {
		data, err = httpGet(ctx, http.DefaultClient, fmt.Sprintf("http://127.0.0.1:%d%s", local, path))
		if err != nil {
			return fmt.Errorf("the Envoy admin API of %s/%s (port %d): %w", namespace, pod, adminPort, err)
		}
		return nil
	})
	return data, err
}

// forward calls use with a local port forwarded to the pod's port
// through the API server (pods/portforward, with the caller's own
// rights), as kubectl port-forward does, and ends the forward after.
func forward(ctx context.Context, cs *clients, namespace, pod string, port int, use func(local int) error) error {
	u := cs.core.CoreV1().RESTClient().Post().Resource("pods").Namespace(namespace).Name(pod).SubResource("portforward").URL()
	transport, upgrader, err := spdy.RoundTripperFor(cs.config)
	if err != nil {
		return err
	}
	dialer := spdy.NewDialerForStreaming(upgrader, &http.Client{Transport: transport}, http.MethodPost, u)
	tunneling, err := portforward.NewSPDYOverWebsocketDialerForStreaming(u, cs.config)
	if err != nil {
		return err
	}
	dialer = portforward.NewFallbackDialerForStreaming(tunneling, dialer, func(err error) bool {
		return streamhttp.IsUpgradeFailure(err) || streamhttp.IsHTTPSProxyError(err)
	})
	stop, ready := make(chan struct{}), make(chan struct{})
	defer close(stop)
	var errOut bytes.Buffer
	fw, err := portforward.NewOnAddressesForStreaming(dialer, []string{"127.0.0.1"}, []string{"0:" + strconv.Itoa(port)}, stop, ready, io.Discard, &errOut)
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- fw.ForwardPorts() }()
	select {
	case <-ready:
	case err := <-done:
		return fmt.Errorf("port-forward to %s/%s:%d: %w %s", namespace, pod, port, err, errOut.String())
	case <-ctx.Done():
		return ctx.Err()
	}
	ports, err := fw.GetPorts()
	if err != nil || len(ports) == 0 {
		return fmt.Errorf("port-forward to %s/%s:%d: no local port: %w", namespace, pod, port, err)
	}
	if err := use(int(ports[0].Local)); err != nil {
		if errOut.Len() > 0 {
			return fmt.Errorf("%w (port-forward: %s)", err, errOut.String())
		}
		return err
	}
	return nil
}
