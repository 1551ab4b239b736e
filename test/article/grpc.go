package article

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/xds"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
	"github.com/fleetmesh/fleetmesh/pkg/bootstrap"
	"github.com/fleetmesh/fleetmesh/pkg/discovery"
	"github.com/fleetmesh/fleetmesh/pkg/translate"
	"github.com/fleetmesh/fleetmesh/test/testenv"
)

// The gRPC side of the demo: grpcbin (port 9090, "grpc") follows httpbin
// through every step, called by a proxyless grpc-go client in cluster-2
// that dials xds:///grpcbin.httpbin.svc.cluster.local:9090.
const grpcTarget = "grpcbin.httpbin.svc.cluster.local:9090"

// DeployGRPCBin runs grpcbin in a member: its Service and a pod answering
// "I am from <cluster>"; exported when export is set. In cluster-2, where
// fleetmesh derived the Service, the user takes it over, as with httpbin.
func (f *Fleet) DeployGRPCBin(ctx context.Context, cluster string, export bool) (Stopper, error) {
	c := f.Cluster(cluster)
	if err := c.EnsureNamespace(ctx, "httpbin"); err != nil {
		return nil, err
	}
	svc := &corev1.Service{}
	err := c.Client.Get(ctx, client.ObjectKey{Namespace: "httpbin", Name: "grpcbin"}, svc)
	svc.Namespace, svc.Name = "httpbin", "grpcbin"
	svc.Spec.Selector = map[string]string{"app": "grpcbin"}
	svc.Spec.Ports = []corev1.ServicePort{{Name: "grpc", Port: 9090, Protocol: corev1.ProtocolTCP}}
	if err == nil {
		err = c.Client.Update(ctx, svc)
	} else {
		err = c.Client.Create(ctx, svc)
	}
	if err != nil {
		return nil, err
	}
	pod, err := c.RunPod(ctx, testenv.PodOptions{
		Namespace: "httpbin", Name: "grpcbin-1", Labels: map[string]string{"app": "grpcbin"},
		Ports: []corev1.ContainerPort{{ContainerPort: 9090}}, Backend: &testenv.GRPCBackend{Cluster: cluster, Port: 9090},
	})
	if err != nil || !export {
		return pod, err
	}
	return pod, c.Client.Create(ctx, &fmv1alpha1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: "httpbin", Name: "grpcbin"}})
}

// StartGRPCClient starts the proxyless grpc-go client in cluster-2.
func (f *Fleet) StartGRPCClient() error {
	conn, err := f.proxylessClient("grpc-client-1", grpcTarget)
	if err != nil {
		return err
	}
	f.grpcConn, f.grpc = conn, testgrpc.NewTestServiceClient(conn)
	return nil
}

// ClustersetGRPCTarget is grpcbin by its MCS name.
const ClustersetGRPCTarget = "grpcbin.httpbin.svc.clusterset.local:9090"

// GRPCClient is a proxyless grpc-go client of grpcbin in cluster-2 that
// dials xds:///target: its calls (as GRPCCalls counts them) and how to
// close it.
func (f *Fleet) GRPCClient(name, target string) (func(context.Context, int) map[string]int, func(), error) {
	conn, err := f.proxylessClient(name, target)
	if err != nil {
		return nil, nil, err
	}
	c := testgrpc.NewTestServiceClient(conn)
	return func(ctx context.Context, n int) map[string]int { return grpcCalls(ctx, c, n) }, func() { _ = conn.Close() }, nil
}

// proxylessClient is a connected proxyless grpc-go client, the pod
// <name>.client of cluster-2, dialing xds:///target.
func (f *Fleet) proxylessClient(name, target string) (*grpc.ClientConn, error) {
	bootstrap := fmt.Sprintf(`{
		"xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
		"node": {"id": %q, "metadata": {"role": "grpc", "namespace": "client", "cluster": "cluster-2"}}
	}`, f.Planes["cluster-2"].XDSAddress, name+".client")
	builder, err := xds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient("xds:///"+target, grpc.WithResolvers(builder), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	conn.Connect()
	return conn, nil
}

// GRPCCalls makes n calls from the proxyless client and counts the
// answering cluster, or the status code of a failed call.
func (f *Fleet) GRPCCalls(ctx context.Context, n int) map[string]int {
	return grpcCalls(ctx, f.grpc, n)
}

// WithinGRPCCalls is WithinGRPC for the calls of another client.
func WithinGRPCCalls(ctx context.Context, timeout time.Duration, n int, calls func(context.Context, int) map[string]int, ok func(map[string]int) bool) (map[string]int, error) {
	return withinGRPC(ctx, timeout, n, calls, ok)
}

// grpcCalls makes n calls and counts the answering cluster, or the
// status code of a failed call.
func grpcCalls(ctx context.Context, c testgrpc.TestServiceClient, n int) map[string]int {
	counts := map[string]int{}
	for range n {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		resp, err := c.UnaryCall(cctx, &testgrpc.SimpleRequest{})
		cancel()
		if err != nil {
			counts[strings.ToUpper(status.Code(err).String())]++
			continue
		}
		counts[resp.GetHostname()]++
	}
	return counts
}

// WithinGRPC repeats batches of 20 calls until ok holds for one, then
// counts n calls.
func (f *Fleet) WithinGRPC(ctx context.Context, timeout time.Duration, n int, ok func(map[string]int) bool) (map[string]int, error) {
	return withinGRPC(ctx, timeout, n, f.GRPCCalls, ok)
}

// withinGRPC repeats batches of 20 calls until ok holds for one, then
// counts n calls.
func withinGRPC(ctx context.Context, timeout time.Duration, n int, calls func(context.Context, int) map[string]int, ok func(map[string]int) bool) (map[string]int, error) {
	deadline := time.Now().Add(timeout)
	for {
		if last := calls(ctx, 20); ok(last) {
			return calls(ctx, n), nil
		} else if time.Now().After(deadline) {
			return last, fmt.Errorf("not within %s; last 20 calls: %v", timeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// MeshGRPCClient runs a proxyless grpc-go client as the pod ns/name of
// cluster-2 running as the ServiceAccount sa, with the pod's workload
// certificate (MTLS): TLS to its control plane, and mesh mTLS from the
// certificate provider translate.ProxylessCertificateProvider, which its
// bootstrap declares over the identity directory. It dials
// xds:///<target>. grpc-go sends the SNI a remote gateway needs only with
// GRPC_EXPERIMENTAL_XDS_SNI=true in its environment.
func (f *Fleet) MeshGRPCClient(ctx context.Context, ns, name, sa, target string) (testgrpc.TestServiceClient, func(), error) {
	c2 := f.Cluster("cluster-2")
	if err := c2.EnsureNamespace(ctx, ns); err != nil {
		return nil, nil, err
	}
	if _, err := c2.RunPod(ctx, testenv.PodOptions{Namespace: ns, Name: name, ServiceAccountName: sa}); err != nil {
		return nil, nil, err
	}
	o := bootstrap.Options{Cluster: "cluster-2", Namespace: ns, Pod: name, ServiceAccount: sa}
	if _, err := f.identity(ctx, &o); err != nil {
		return nil, nil, err
	}
	config, err := f.meshGRPCBootstrap(o)
	if err != nil {
		return nil, nil, err
	}
	builder, err := xds.NewXDSResolverWithConfigForTesting(config)
	if err != nil {
		return nil, nil, err
	}
	creds, err := xdscreds.NewClientCredentials(xdscreds.ClientOptions{FallbackCreds: insecure.NewCredentials()})
	if err != nil {
		return nil, nil, err
	}
	conn, err := grpc.NewClient("xds:///"+target, grpc.WithResolvers(builder), grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, nil, err
	}
	return testgrpc.NewTestServiceClient(conn), func() { _ = conn.Close() }, nil
}

// meshGRPCBootstrap is the xDS bootstrap of a proxyless gRPC pod with a
// workload certificate (o, after identity): TLS to its cluster's control
// plane with the certificate, the node it is, and the certificate
// provider translate.ProxylessCertificateProvider over its identity
// directory.
func (f *Fleet) meshGRPCBootstrap(o bootstrap.Options) ([]byte, error) {
	file := func(n string) string { return filepath.Join(o.IdentityDir, n) }
	return json.Marshal(map[string]any{
		"xds_servers": []any{map[string]any{
			"server_uri": f.Planes[o.Cluster].XDSAddress, "server_features": []string{"xds_v3"},
			"channel_creds": []any{map[string]any{"type": "tls", "config": map[string]string{
				"ca_certificate_file": file(bootstrap.RootsFile), "certificate_file": file(bootstrap.CertFile), "private_key_file": file(bootstrap.KeyFile),
			}}},
		}},
		"node": map[string]any{"id": o.Pod + "." + o.Namespace, "metadata": map[string]string{
			"role": "grpc", "namespace": o.Namespace, "pod": o.Pod, "serviceAccount": o.ServiceAccount, "cluster": o.Cluster, "identityDir": o.IdentityDir,
		}},
		"certificate_providers": map[string]any{translate.ProxylessCertificateProvider: map[string]any{
			"plugin_name": "file_watcher",
			"config": map[string]string{
				"certificate_file": file(bootstrap.CertFile), "private_key_file": file(bootstrap.KeyFile),
				"ca_certificate_file": file(bootstrap.RootsFile), "refresh_interval": "1s",
			},
		}},
		"server_listener_resource_name_template": "grpc/server?xds.resource.listening_address=%s",
	})
}

// MeshGRPCServer runs a proxyless grpc-go xDS server as the pod ns/name
// of a cluster, running as the ServiceAccount sa with its workload
// certificate, behind the Service ns/service (port 9090, "grpc"); it
// answers with the cluster's name. Its pod is marked as taking mesh mTLS:
// the server serves only that. It returns what stops it.
func (f *Fleet) MeshGRPCServer(ctx context.Context, cluster, ns, name, sa, service string) (func(), error) {
	c := f.Cluster(cluster)
	if err := c.EnsureNamespace(ctx, ns); err != nil {
		return nil, err
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: service},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": name}, Ports: []corev1.ServicePort{{Name: "grpc", Port: 9090, Protocol: corev1.ProtocolTCP}}},
	}
	if err := c.Client.Create(ctx, svc); err != nil {
		return nil, err
	}
	pod, err := c.RunPod(ctx, testenv.PodOptions{
		Namespace: ns, Name: name, ServiceAccountName: sa, Labels: map[string]string{"app": name},
		Annotations: map[string]string{discovery.TakesMTLSAnnotation: "true"},
		Ports:       []corev1.ContainerPort{{Name: "grpc", ContainerPort: 9090}},
	})
	if err != nil {
		return nil, err
	}
	o := bootstrap.Options{Cluster: cluster, Namespace: ns, Pod: name, ServiceAccount: sa}
	if _, err := f.identity(ctx, &o); err != nil {
		return nil, err
	}
	config, err := f.meshGRPCBootstrap(o)
	if err != nil {
		return nil, err
	}
	creds, err := xdscreds.NewServerCredentials(xdscreds.ServerOptions{FallbackCreds: insecure.NewCredentials()})
	if err != nil {
		return nil, err
	}
	srv, err := xds.NewGRPCServer(grpc.Creds(creds), xds.BootstrapContentsForTesting(config))
	if err != nil {
		return nil, err
	}
	testgrpc.RegisterTestServiceServer(srv, &testenv.GRPCBackend{Cluster: cluster})
	lis, err := net.Listen("tcp", net.JoinHostPort(pod.IP, "9090"))
	if err != nil {
		srv.Stop()
		return nil, err
	}
	go func() { _ = srv.Serve(lis) }()
	return srv.Stop, nil
}
