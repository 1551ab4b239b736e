package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Backend is the process behind a pod: it serves on the pod's address.
type Backend interface {
	// Start begins serving on ip.
	Start(ip string) error
	// Stop stops serving; the address then refuses connections.
	Stop() error
}

// PodOptions describes a pod to run.
type PodOptions struct {
	Namespace   string
	Name        string
	Labels      map[string]string
	Annotations map[string]string
	// ServiceAccountName of the pod; "default" when empty.
	ServiceAccountName string
	// IP is the pod's address; empty takes the cluster's next free one.
	IP string
	// Ports the pod's container declares.
	Ports []corev1.ContainerPort
	// Backend serves the pod; nil runs the Pod object alone.
	Backend Backend
	// Elsewhere says IP lives in another network namespace (one a test
	// made for the pod): it is not put on the test network's loopback.
	Elsewhere bool
	// Hostname and Subdomain are the pod's (a StatefulSet's pods have
	// them): with Subdomain naming a headless Service, the EndpointSlice
	// controller carries Hostname into the pod's endpoint.
	Hostname, Subdomain string
}

// Pod is a running pod: a Pod object bound to the cluster's node, its
// address on the test network and its backend. Its status is kept true as a
// kubelet would: Ready while the backend runs.
type Pod struct {
	Cluster   *Cluster
	Namespace string
	Name      string
	IP        string

	mu      sync.Mutex
	backend Backend
	running bool
}

// nextPodIP is the cluster's next free pod address.
func (c *Cluster) nextPodIP() (string, error) {
	c.mu.Lock()
	c.nextPod++
	n := c.nextPod + 9 // .1–.9 stay free for gateways and fixtures
	c.mu.Unlock()
	if n > 250 {
		return "", errors.New("out of pod addresses")
	}
	return c.PodIP(n), nil
}

// EnsureNamespace creates the namespace if it does not exist.
func (c *Cluster) EnsureNamespace(ctx context.Context, name string) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := c.Client.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s in %s: %w", name, c.Name, err)
	}
	return nil
}

// RunPod creates the Pod, puts its address on the test network, starts its
// backend and reports it Running and Ready.
func (c *Cluster) RunPod(ctx context.Context, opts PodOptions) (*Pod, error) {
	if opts.IP == "" {
		ip, err := c.nextPodIP()
		if err != nil {
			return nil, fmt.Errorf("run pod %s/%s in %s: %w", opts.Namespace, opts.Name, c.Name, err)
		}
		opts.IP = ip
	}
	if opts.ServiceAccountName == "" {
		opts.ServiceAccountName = "default"
	}
	if err := c.EnsureNamespace(ctx, opts.Namespace); err != nil {
		return nil, err
	}
	if !opts.Elsewhere {
		if err := AddAddress(opts.IP); err != nil {
			return nil, err
		}
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: opts.Namespace, Name: opts.Name, Labels: opts.Labels, Annotations: opts.Annotations},
		Spec: corev1.PodSpec{
			NodeName:                      c.NodeName,
			Hostname:                      opts.Hostname,
			Subdomain:                     opts.Subdomain,
			ServiceAccountName:            opts.ServiceAccountName,
			AutomountServiceAccountToken:  ptr.To(false),
			TerminationGracePeriodSeconds: ptr.To[int64](0),
			Containers: []corev1.Container{{
				Name:  "app",
				Image: "fleetmesh.io/test-backend",
				Ports: opts.Ports,
			}},
		},
	}
	if err := c.Client.Create(ctx, pod); err != nil {
		return nil, fmt.Errorf("create pod %s/%s in %s: %w", opts.Namespace, opts.Name, c.Name, err)
	}
	p := &Pod{Cluster: c, Namespace: opts.Namespace, Name: opts.Name, IP: opts.IP, backend: opts.Backend}
	if err := p.Start(ctx); err != nil {
		return p, err
	}
	return p, nil
}

// Start starts the pod's backend and reports the pod Ready.
func (p *Pod) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.backend != nil && !p.running {
		if err := p.backend.Start(p.IP); err != nil {
			return fmt.Errorf("start backend of pod %s/%s in %s: %w", p.Namespace, p.Name, p.Cluster.Name, err)
		}
	}
	p.running = true
	return p.setStatus(ctx, true)
}

// Stop stops the pod's backend, as a crashed container, and reports the
// pod not Ready.
func (p *Pod) Stop(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	if p.backend != nil && p.running {
		errs = append(errs, p.backend.Stop())
	}
	p.running = false
	errs = append(errs, p.setStatus(ctx, false))
	return errors.Join(errs...)
}

// SetReady reports the pod Ready or not without touching its backend, as a
// failing readiness probe would.
func (p *Pod) SetReady(ctx context.Context, ready bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.setStatus(ctx, ready)
}

// Delete stops the backend and deletes the Pod at once (grace period 0).
func (p *Pod) Delete(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	if p.backend != nil && p.running {
		errs = append(errs, p.backend.Stop())
	}
	p.running = false
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name}}
	if err := p.Cluster.Client.Delete(ctx, pod, client.GracePeriodSeconds(0)); err != nil && !apierrors.IsNotFound(err) {
		errs = append(errs, fmt.Errorf("delete pod %s/%s in %s: %w", p.Namespace, p.Name, p.Cluster.Name, err))
	}
	return errors.Join(errs...)
}

func (p *Pod) setStatus(ctx context.Context, ready bool) error {
	pod := &corev1.Pod{}
	if err := p.Cluster.Client.Get(ctx, client.ObjectKey{Namespace: p.Namespace, Name: p.Name}, pod); err != nil {
		return fmt.Errorf("get pod %s/%s in %s: %w", p.Namespace, p.Name, p.Cluster.Name, err)
	}
	return p.Cluster.setPodStatus(ctx, pod, p.IP, ready)
}

// setPodStatus reports the pod Running on ip, its containers running and
// Ready or not, as a kubelet would.
func (c *Cluster) setPodStatus(ctx context.Context, pod *corev1.Pod, ip string, ready bool) error {
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	now := metav1.Now()
	pod.Status = corev1.PodStatus{
		Phase:     corev1.PodRunning,
		HostIP:    c.PodIP(254),
		PodIP:     ip,
		PodIPs:    []corev1.PodIP{{IP: ip}},
		StartTime: ptr.To(pod.CreationTimestamp),
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: pod.CreationTimestamp},
			{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: pod.CreationTimestamp},
			{Type: corev1.ContainersReady, Status: status, LastTransitionTime: now},
			{Type: corev1.PodReady, Status: status, LastTransitionTime: now},
		},
	}
	for _, ctr := range pod.Spec.Containers {
		pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: ctr.Name, Image: ctr.Image, Ready: ready, Started: ptr.To(ready),
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: pod.CreationTimestamp}},
		})
	}
	if err := c.Client.Status().Update(ctx, pod); err != nil {
		return fmt.Errorf("update status of pod %s/%s in %s: %w", pod.Namespace, pod.Name, c.Name, err)
	}
	return nil
}

// RunPodsOf is a stand-in scheduler and kubelet for the pods others
// create (a Deployment's, a conformance suite's) in the namespaces match
// accepts: each is bound to the cluster's node and reported Running and
// Ready on the next free pod address until ctx ends. Nothing runs behind
// them: they are for API-level checks (EndpointSlices, imports).
func (c *Cluster) RunPodsOf(ctx context.Context, match func(namespace string) bool) {
	go func() {
		done := map[types.UID]bool{}
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			var pods corev1.PodList
			if err := c.Client.List(ctx, &pods); err == nil {
				for i := range pods.Items {
					pod := &pods.Items[i]
					if done[pod.UID] || !match(pod.Namespace) || pod.DeletionTimestamp != nil {
						continue
					}
					if err := c.runStandIn(ctx, pod); err == nil {
						done[pod.UID] = true
					}
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
}

// runStandIn binds one pod to the node and reports it running.
func (c *Cluster) runStandIn(ctx context.Context, pod *corev1.Pod) error {
	if pod.Spec.NodeName == "" {
		binding := &corev1.Binding{
			ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name},
			Target:     corev1.ObjectReference{Kind: "Node", Name: c.NodeName},
		}
		if err := c.Client.SubResource("binding").Create(ctx, pod, binding); err != nil {
			return err
		}
		if err := c.Client.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
			return err
		}
	}
	ip, err := c.nextPodIP()
	if err != nil {
		return err
	}
	return c.setPodStatus(ctx, pod, ip, true)
}

// HTTPBackend answers every HTTP request with Body, like the article's pipy
// httpbin.
type HTTPBackend struct {
	Port int
	Body string
	// Status is the answer's status code; 0 is 200. A Ready pod that
	// answers 503 is a failing endpoint.
	Status int
	// ShowHeader, when set, adds a line to the answer with that request
	// header's value ("<header>: <value>"): what the pod was told.
	ShowHeader string
	// ShowPath adds a line with the request's path as it came, escapes
	// kept ("path: <path>").
	ShowPath bool

	srv *http.Server
}

// Start serves on ip:Port.
func (b *HTTPBackend) Start(ip string) error {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(b.Port)))
	if err != nil {
		return err
	}
	body := []byte(b.Body)
	b.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			if b.Status != 0 {
				w.WriteHeader(b.Status)
			}
			_, _ = w.Write(body)
			if b.ShowHeader != "" {
				_, _ = fmt.Fprintf(w, "%s: %s\n", b.ShowHeader, r.Header.Get(b.ShowHeader))
			}
			if b.ShowPath {
				_, _ = fmt.Fprintf(w, "path: %s\n", r.RequestURI)
			}
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go func() { _ = b.srv.Serve(l) }()
	return nil
}

// Stop closes the listener and every connection.
func (b *HTTPBackend) Stop() error {
	if b.srv == nil {
		return nil
	}
	err := b.srv.Close()
	b.srv = nil
	return err
}
