package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fleetmesh/fleetmesh/pkg/kubeauth"
	"github.com/fleetmesh/fleetmesh/pkg/xds/syncz"
)

// ControllerLabel selects the fleetmesh-controller pods.
const ControllerLabel = "app.kubernetes.io/name=fleetmesh-controller"

// planeFlags say where the control planes' debug API is.
type planeFlags struct {
	namespace string
	port      int
	access    string
	url       string
	caFile    string
	insecure  bool
}

// The ways to reach a control plane's debug API through the API server.
const (
	accessPortForward = "port-forward"
	accessPodProxy    = "pod-proxy"
)

func (p *planeFlags) bind(cmd *cobra.Command) {
	f := cmd.PersistentFlags()
	f.StringVar(&p.namespace, "control-plane-namespace", DefaultSystemNamespace, "namespace of the fleetmesh-controller pods")
	f.IntVar(&p.port, "debug-port", 15014, "the controller's debug port (its --debug-address)")
	f.StringVar(&p.access, "control-plane-access", accessPortForward, "how to reach the controllers' debug API through the API server: "+accessPortForward+
		" (pods/portforward; HTTPS with your kubeconfig's credentials, checked by the controller: RBAC get/list proxies.fleetmesh.io) or "+
		accessPodProxy+" (pods/proxy; carries no credentials, so only for controllers run with --debug-auth=none)")
	f.StringVar(&p.url, "control-plane-url", "", "reach one control plane's debug API at this URL (e.g. https://10.0.0.5:15014) instead of through the API server; an https URL gets your kubeconfig's credentials")
	f.StringVar(&p.caFile, "control-plane-ca-file", "", "with an https --control-plane-url: the CA file to check the control plane's certificate with")
	f.BoolVar(&p.insecure, "control-plane-insecure-skip-tls-verify", false, "with an https --control-plane-url: do not check the control plane's certificate (its default one is self-signed)")
}

// controlPlane is one fleetmesh-controller's debug API.
type controlPlane struct {
	// Name is the controller's pod, or the URL it was reached at.
	Name string
	get  func(ctx context.Context, path string, query url.Values) ([]byte, error)
}

// controlPlanes finds every ready fleetmesh-controller of the selected
// cluster. Their debug API is reached through the API server, with a
// port-forward to each pod (as kubectl port-forward does), so nothing but
// the kubeconfig is needed, and the controller sees who asks.
func (p *planeFlags) controlPlanes(ctx context.Context, k *kubeFlags) ([]controlPlane, error) {
	if p.url != "" {
		return p.direct(k)
	}
	cs, err := k.clients()
	if err != nil {
		return nil, err
	}
	return p.controlPlanesOf(ctx, cs)
}

// controlPlanesOf finds every ready fleetmesh-controller of the cluster cs
// reaches, as controlPlanes does.
func (p *planeFlags) controlPlanesOf(ctx context.Context, cs *clients) ([]controlPlane, error) {
	if p.access != accessPortForward && p.access != accessPodProxy {
		return nil, fmt.Errorf("--control-plane-access %q: want %s or %s", p.access, accessPortForward, accessPodProxy)
	}
	pods, err := cs.core.CoreV1().Pods(p.namespace).List(ctx, metav1.ListOptions{LabelSelector: ControllerLabel})
	if err != nil {
		return nil, fmt.Errorf("list the fleetmesh-controller pods in %s: %w", p.namespace, err)
	}
	var debug *http.Client
	if p.access == accessPortForward {
		// The port-forward reaches the named pod through the API
		// server: that is what vouches for the controller, whose own
		// certificate is self-signed.
		if debug, err = kubeauth.Client(cs.config, nil); err != nil {
			return nil, err
		}
	}
	var planes []controlPlane
	for _, pod := range pods.Items {
		if !podReady(&pod) {
			continue
		}
		name := pod.Name
		get := func(ctx context.Context, path string, query url.Values) ([]byte, error) {
			var data []byte
			err := forward(ctx, cs, p.namespace, name, p.port, func(local int) (err error) {
				data, err = httpGet(ctx, debug, (&url.URL{Scheme: "https", Host: fmt.Sprintf("127.0.0.1:%d", local), Path: path, RawQuery: query.Encode()}).String())
				return err
			})
			if err != nil {
				return nil, fmt.Errorf("the debug API of %s/%s: %w", p.namespace, name, err)
			}
			return data, nil
		}
		if p.access == accessPodProxy {
			get = func(ctx context.Context, path string, query url.Values) ([]byte, error) {
				params := map[string]string{}
				for k := range query {
					params[k] = query.Get(k)
				}
				data, err := cs.core.CoreV1().Pods(p.namespace).ProxyGet("http", name, strconv.Itoa(p.port), path, params).DoRaw(ctx)
				if err != nil {
					var status apierrors.APIStatus
					if errors.As(err, &status) && len(data) > 0 {
						return nil, fmt.Errorf("%s from %s/%s: %s", path, p.namespace, name, strings.TrimSpace(string(data)))
					}
					return nil, fmt.Errorf("%s from %s/%s through the API server: %w", path, p.namespace, name, err)
				}
				return data, nil
			}
		}
		planes = append(planes, controlPlane{Name: name, get: get})
	}
	if len(planes) == 0 {
		return nil, fmt.Errorf("no ready fleetmesh-controller pod (label %s) in namespace %s: is fleetmesh installed in this cluster? (--control-plane-namespace, or --control-plane-url to reach one directly)", ControllerLabel, p.namespace)
	}
	slices.SortFunc(planes, func(a, b controlPlane) int { return strings.Compare(a.Name, b.Name) })
	return planes, nil
}

// direct is the one control plane --control-plane-url names.
func (p *planeFlags) direct(k *kubeFlags) ([]controlPlane, error) {
	base, err := url.Parse(p.url)
	if err != nil || base.Host == "" || (base.Scheme != "http" && base.Scheme != "https") {
		return nil, fmt.Errorf("--control-plane-url %q is not an http or https URL", p.url)
	}
	hc := http.DefaultClient
	if base.Scheme == "https" {
		var ca []byte
		if p.caFile != "" {
			if ca, err = os.ReadFile(p.caFile); err != nil {
				return nil, fmt.Errorf("--control-plane-ca-file: %w", err)
			}
		} else if !p.insecure {
			return nil, errors.New("an https --control-plane-url needs --control-plane-ca-file, or --control-plane-insecure-skip-tls-verify (the controller's own certificate is self-signed)")
		}
		cfg, err := k.restConfig()
		if err != nil {
			return nil, fmt.Errorf("the credentials for %s: %w", p.url, err)
		}
		if hc, err = kubeauth.Client(cfg, ca); err != nil {
			return nil, err
		}
	}
	return []controlPlane{{Name: p.url, get: func(ctx context.Context, path string, query url.Values) ([]byte, error) {
		u := *base
		u.Path = strings.TrimSuffix(u.Path, "/") + path
		u.RawQuery = query.Encode()
		return httpGet(ctx, hc, u.String())
	}}}, nil
}

func podReady(pod *corev1.Pod) bool {
	if pod.Status.Phase != corev1.PodRunning || pod.Status.PodIP == "" || pod.DeletionTimestamp != nil {
		return false
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func httpGet(ctx context.Context, hc *http.Client, u string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", u, resp.Status, strings.TrimSpace(string(data)))
	}
	return data, nil
}

// connectedProxy is a proxy and the control plane serving it.
type connectedProxy struct {
	syncz.ProxyStatus
	ControlPlane string `json:"controlPlane"`
	plane        controlPlane
}

// proxies lists every proxy of namespace ("": of every namespace)
// connected to any of the control planes. Naming the namespace is what
// lets a caller RBAC allows only there list its proxies.
func proxies(ctx context.Context, planes []controlPlane, namespace string) ([]connectedProxy, error) {
	var query url.Values
	if namespace != "" {
		query = url.Values{"namespace": {namespace}}
	}
	var out []connectedProxy
	for _, p := range planes {
		data, err := p.get(ctx, "/debug/syncz", query)
		if err != nil {
			return nil, err
		}
		var list []syncz.ProxyStatus
		if err := json.Unmarshal(data, &list); err != nil {
			return nil, fmt.Errorf("read /debug/syncz of %s: %w", p.Name, err)
		}
		for _, s := range list {
			out = append(out, connectedProxy{ProxyStatus: s, ControlPlane: p.Name, plane: p})
		}
	}
	slices.SortFunc(out, func(a, b connectedProxy) int { return strings.Compare(a.displayName(), b.displayName()) })
	return out, nil
}

// displayName is pod.namespace for a proxy of a pod, else its node ID.
func (p *connectedProxy) displayName() string {
	if p.Pod != "" && p.Namespace != "" {
		return p.Pod + "." + p.Namespace
	}
	return p.ID
}

// proxyNamespace is the namespace of POD[.NS] (or a sidecar's or
// gateway's node ID, pod.namespace): NS, else defaultNamespace.
func proxyNamespace(arg, defaultNamespace string) string {
	if _, ns, found := strings.Cut(arg, "."); found {
		return ns
	}
	return defaultNamespace
}

// findProxy resolves POD[.NS], or a node ID, to one connected proxy.
func findProxy(all []connectedProxy, arg, defaultNamespace string) (*connectedProxy, error) {
	for i := range all {
		if all[i].ID == arg {
			return &all[i], nil
		}
	}
	pod, ns, found := strings.Cut(arg, ".")
	if !found {
		ns = defaultNamespace
	}
	var matches []*connectedProxy
	for i := range all {
		if all[i].Pod == pod && all[i].Namespace == ns {
			matches = append(matches, &all[i])
		}
	}
	switch len(matches) {
	case 1:
		return matches[0], nil
	case 0:
		var names []string
		for _, p := range all {
			names = append(names, p.displayName())
		}
		return nil, fmt.Errorf("no proxy of pod %s in namespace %s is connected (connected: %s)", pod, ns, orNone(strings.Join(names, ", ")))
	}
	var ids []string
	for _, m := range matches {
		ids = append(ids, m.ID+" ("+m.Role+")")
	}
	return nil, fmt.Errorf("pod %s.%s has %d proxies: name one by its node ID: %s", pod, ns, len(matches), strings.Join(ids, ", "))
}

var xdsTypes = []struct{ short, column string }{
	{"Cluster", "CDS"}, {"Listener", "LDS"}, {"ClusterLoadAssignment", "EDS"}, {"RouteConfiguration", "RDS"},
}

// syncState is SYNCED, STALE, NACKED or NOT SENT for one type.
func syncState(t *syncz.TypeStatus) string {
	if t == nil || t.Sent == "" {
		return "NOT SENT"
	}
	return t.State()
}
