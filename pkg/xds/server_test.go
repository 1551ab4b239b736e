package xds

import (
	"context"
	"encoding/json"
	"maps"
	"net"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/go-logr/logr"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/fleetmesh/fleetmesh/pkg/model"
	"github.com/fleetmesh/fleetmesh/pkg/translate"
	"github.com/fleetmesh/fleetmesh/pkg/xds/syncz"
)

// articleMesh is cluster-2 of the article: httpbin imported from cluster-1
// and cluster-3 (through their gateways) and, when local is set, a local
// pod; the policy is FailOver.
func articleMesh(localReady bool, extra ...model.Endpoint) *model.Mesh {
	eps := []model.Endpoint{
		{Cluster: "cluster-1", Address: "10.244.0.81", Port: 81, Ready: true, Gateway: true},
		{Cluster: "cluster-3", Address: "10.244.0.83", Port: 83, Ready: true, Gateway: true},
		{Cluster: "cluster-2", Address: "10.244.2.11", Port: 8080, Ready: localReady},
	}
	eps = append(eps, extra...)
	return &model.Mesh{
		LocalCluster: "cluster-2",
		Clusters: []model.Cluster{
			{Name: "cluster-1", Gateway: &model.Address{IP: "10.244.0.81", Port: 81}},
			{Name: "cluster-2", Gateway: &model.Address{IP: "10.244.0.82", Port: 82}},
			{Name: "cluster-3", Gateway: &model.Address{IP: "10.244.0.83", Port: 83}},
		},
		Services: []model.Service{
			{
				Namespace: "httpbin", Name: "httpbin",
				Ports:        []model.Port{{Port: 8080, Protocol: model.ProtocolHTTP, Endpoints: eps}},
				ImportedFrom: []string{"cluster-1", "cluster-3"},
				Policy: &model.Policy{LbType: model.FailOver, Targets: []model.Target{
					{ClusterKey: "default/default/default/cluster-1"}, {ClusterKey: "default/default/default/cluster-3"},
				}},
			},
			{
				Namespace: "curl", Name: "curl",
				Ports: []model.Port{{Name: "http", Port: 80, Protocol: model.ProtocolHTTP, Endpoints: []model.Endpoint{
					{Cluster: "cluster-2", Address: "10.244.2.10", Port: 80, Ready: true},
				}}},
			},
		},
	}
}

type harness struct {
	server *Server
	conn   *grpc.ClientConn
}

func startServer(t *testing.T) *harness {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s := NewServer(ctx, Options{ClusterName: "cluster-2", Log: logr.Discard()})
	g := grpc.NewServer()
	s.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &harness{server: s, conn: conn}
}

func node(id, role string, md map[string]any) *corev3.Node {
	fields := map[string]any{"role": role}
	for k, v := range md {
		fields[k] = v
	}
	st, _ := structpb.NewStruct(fields)
	return &corev3.Node{Id: id, Metadata: st}
}

func recvDelta(t *testing.T, stream discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient) *discoveryv3.DeltaDiscoveryResponse {
	t.Helper()
	ch := make(chan *discoveryv3.DeltaDiscoveryResponse, 1)
	errs := make(chan error, 1)
	go func() {
		resp, err := stream.Recv()
		if err != nil {
			errs <- err
			return
		}
		ch <- resp
	}()
	select {
	case resp := <-ch:
		return resp
	case err := <-errs:
		t.Fatalf("delta stream: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no delta response within 10s")
	}
	return nil
}

// TestDeltaSidecarGetsOnlyTheChangedAssignment subscribes like an Envoy
// sidecar over delta ADS, then changes one endpoint: exactly one
// ClusterLoadAssignment comes, and nothing for clusters or listeners.
func TestDeltaSidecarGetsOnlyTheChangedAssignment(t *testing.T) {
	h := startServer(t)
	h.server.Update(withPods(articleMesh(true), map[string]string{"curl/curl-1": "10.244.2.10"}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(h.conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := node("curl-1.curl", "sidecar", map[string]any{"namespace": "curl", "pod": "curl-1"})

	// CDS and LDS, wildcard; then EDS for every cluster, as Envoy does.
	for _, typ := range []string{resource.ClusterType, resource.ListenerType} {
		if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{Node: n, TypeUrl: typ}); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]*discoveryv3.DeltaDiscoveryResponse{}
	for len(got) < 2 {
		resp := recvDelta(t, stream)
		got[resp.GetTypeUrl()] = resp
		if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()}); err != nil {
			t.Fatal(err)
		}
	}
	// Everything received passes Envoy's own validation.
	for typ, resp := range got {
		for _, r := range resp.GetResources() {
			m, err := r.GetResource().UnmarshalNew()
			if err != nil {
				t.Fatalf("%s %s: %v", typ, r.GetName(), err)
			}
			if v, ok := m.(interface{ ValidateAll() error }); !ok || v.ValidateAll() != nil {
				t.Fatalf("%s %s does not validate: %v", typ, r.GetName(), v.ValidateAll())
			}
		}
	}
	var clusterNames []string
	for _, r := range got[resource.ClusterType].GetResources() {
		// EDS clusters only: the inbound one (the curl pod's own port 80)
		// is static.
		if strings.HasPrefix(r.GetName(), "outbound|") {
			clusterNames = append(clusterNames, r.GetName())
		}
	}
	if !contains(namesOf(got[resource.ClusterType].GetResources()), "inbound|80||") {
		t.Fatalf("the sidecar of the curl pod (port 80) has no inbound cluster: %v", namesOf(got[resource.ClusterType].GetResources()))
	}
	if !contains(clusterNames, "outbound|8080||httpbin.httpbin.svc.cluster.local") {
		t.Fatalf("clusters %v lack httpbin's", clusterNames)
	}
	var listenerAddr string
	for _, r := range got[resource.ListenerType].GetResources() {
		if r.GetName() == "outbound|8080" {
			listenerAddr = "found"
		}
	}
	if listenerAddr == "" {
		t.Fatalf("no outbound|8080 listener in %v", got[resource.ListenerType].GetResources())
	}
	if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNamesSubscribe: clusterNames}); err != nil {
		t.Fatal(err)
	}
	eds := recvDelta(t, stream)
	if eds.GetTypeUrl() != resource.EndpointType || len(eds.GetResources()) != len(clusterNames) {
		t.Fatalf("want %d assignments, got %s with %d", len(clusterNames), eds.GetTypeUrl(), len(eds.GetResources()))
	}
	if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resource.EndpointType, ResponseNonce: eds.GetNonce()}); err != nil {
		t.Fatal(err)
	}

	// One endpoint changes: the local pod becomes not ready.
	h.server.Update(withPods(articleMesh(false), map[string]string{"curl/curl-1": "10.244.2.10"}))
	resp := recvDelta(t, stream)
	if resp.GetTypeUrl() != resource.EndpointType || len(resp.GetResources()) != 1 || len(resp.GetRemovedResources()) != 0 {
		t.Fatalf("want exactly one assignment, got %s with %d resources, %d removed", resp.GetTypeUrl(), len(resp.GetResources()), len(resp.GetRemovedResources()))
	}
	cla := &endpointv3.ClusterLoadAssignment{}
	if err := resp.GetResources()[0].GetResource().UnmarshalTo(cla); err != nil {
		t.Fatal(err)
	}
	if cla.GetClusterName() != "outbound|8080||httpbin.httpbin.svc.cluster.local" {
		t.Fatalf("changed assignment is %s", cla.GetClusterName())
	}
	for _, l := range cla.GetEndpoints() {
		if l.GetLocality().GetSubZone() == "cluster-2" {
			t.Fatal("the not-ready local pod is still sent")
		}
	}
	if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resource.EndpointType, ResponseNonce: resp.GetNonce()}); err != nil {
		t.Fatal(err)
	}
	// Nothing else follows: no CDS or LDS push for an endpoint change.
	extra := make(chan *discoveryv3.DeltaDiscoveryResponse, 1)
	go func() {
		if r, err := stream.Recv(); err == nil {
			extra <- r
		}
	}()
	h.server.Update(withPods(articleMesh(false), map[string]string{"curl/curl-1": "10.244.2.10"})) // the same mesh again
	select {
	case r := <-extra:
		t.Fatalf("an unchanged mesh or an endpoint change sent %s with %d resources", r.GetTypeUrl(), len(r.GetResources()))
	case <-time.After(500 * time.Millisecond):
	}

	// syncz shows the sidecar, delta, with everything acknowledged.
	var proxies []syncz.ProxyStatus
	srv := httptest.NewServer(h.server.DebugHandler(nil))
	defer srv.Close()
	getJSON(t, srv.URL+"/debug/syncz", &proxies)
	if len(proxies) != 1 || proxies[0].ID != "curl-1.curl" || !proxies[0].Delta || proxies[0].Role != "sidecar" {
		t.Fatalf("syncz = %+v", proxies)
	}
	for typ, st := range proxies[0].Types {
		if st.State() != "SYNCED" {
			t.Errorf("%s is %s: %+v", typ, st.State(), st)
		}
	}
}

func getJSON(t *testing.T, url string, into any) {
	t.Helper()
	resp, err := httpGet(url)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(resp, into); err != nil {
		t.Fatalf("%s: %v: %s", url, err, resp)
	}
}

func namesOf(rs []*discoveryv3.Resource) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.GetName())
	}
	return out
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// TestNACKKeepsTheLastGoodConfig refuses a version: syncz shows the NACK
// with its error, the server does not push it again, and the next real
// change is sent.
func TestNACKKeepsTheLastGoodConfig(t *testing.T) {
	h := startServer(t)
	h.server.Update(articleMesh(true))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(h.conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	name := "outbound|8080||httpbin.httpbin.svc.cluster.local"
	n := node("client-1", "grpc", map[string]any{"namespace": "client"})
	recv := func() *discoveryv3.DiscoveryResponse {
		t.Helper()
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: n, TypeUrl: resource.EndpointType, ResourceNames: []string{name}}); err != nil {
		t.Fatal(err)
	}
	first := recv()
	// ACK it, then receive the next version and refuse that one.
	if err := stream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNames: []string{name}, VersionInfo: first.GetVersionInfo(), ResponseNonce: first.GetNonce()}); err != nil {
		t.Fatal(err)
	}
	h.server.Update(articleMesh(false))
	second := recv()
	if err := stream.Send(&discoveryv3.DiscoveryRequest{
		TypeUrl: resource.EndpointType, ResourceNames: []string{name},
		VersionInfo: first.GetVersionInfo(), ResponseNonce: second.GetNonce(),
		ErrorDetail: &rpcstatus.Status{Code: 3, Message: "test client refuses this assignment"},
	}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h.server.DebugHandler(nil))
	defer srv.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var proxies []syncz.ProxyStatus
		getJSON(t, srv.URL+"/debug/syncz", &proxies)
		if len(proxies) == 1 {
			st := proxies[0].Types["ClusterLoadAssignment"]
			if st != nil && st.State() == "NACKED" {
				if st.Acked != first.GetVersionInfo() || st.Nacked != second.GetVersionInfo() || !strings.Contains(st.NackError, "refuses this assignment") {
					t.Fatalf("syncz: %+v", st)
				}
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("syncz never showed the NACK: %+v", proxies)
		}
		time.Sleep(20 * time.Millisecond)
	}
	metrics, err := httpGet(srv.URL + "/metrics")
	if err != nil || !strings.Contains(string(metrics), `fleetmesh_xds_nacks_total{type="ClusterLoadAssignment"} 1`) {
		t.Fatalf("metrics lack the NACK: %v\n%s", err, metrics)
	}
	// The refused version is not pushed again; the next change is.
	h.server.Update(articleMesh(false))
	h.server.Update(articleMesh(true, model.Endpoint{Cluster: "cluster-2", Address: "10.244.2.12", Port: 8080, Ready: true}))
	third := recv()
	cla := &endpointv3.ClusterLoadAssignment{}
	if err := third.GetResources()[0].UnmarshalTo(cla); err != nil {
		t.Fatal(err)
	}
	if n := len(cla.GetEndpoints()[0].GetLbEndpoints()); n != 2 {
		t.Fatalf("the push after a NACK is not the newest mesh: local tier has %d endpoints", n)
	}
}

func TestIdentifyReadsTheNodeAndNamesWhatIsWrong(t *testing.T) {
	s := NewServer(context.Background(), Options{ClusterName: "cluster-1", Log: logr.Discard()})
	node := func(md map[string]any) *corev3.Node {
		st, err := structpb.NewStruct(md)
		if err != nil {
			t.Fatal(err)
		}
		return &corev3.Node{Id: "gw-1.fleetmesh-system", Metadata: st}
	}
	p, err := s.Identify(node(map[string]any{"role": "gateway", "listenPort": "8080"}))
	if err != nil || p.ListenPort != 8080 || p.Cluster != "cluster-1" {
		t.Errorf("gateway with listenPort: %+v %v", p, err)
	}
	p, err = s.Identify(node(map[string]any{"role": "sidecar", "interception": "iptables"}))
	if err != nil || !p.Intercept {
		t.Errorf("intercepting sidecar: %+v %v", p, err)
	}
	for md, want := range map[string]map[string]any{
		`metadata.listenPort "http" is not a port`: {"role": "gateway", "listenPort": "http"},
		"metadata.role is missing":                 {"namespace": "x"},
		`metadata.cluster is "cluster-9"`:          {"role": "sidecar", "cluster": "cluster-9"},
	} {
		if _, err := s.Identify(node(want)); err == nil || !strings.Contains(err.Error(), md) {
			t.Errorf("%v: got %v, want %q", want, err, md)
		}
	}
}

// TestNothingIsServedBeforeTheFirstMesh reconnects a delta sidecar that
// holds clusters (initial_resource_versions) to a server that has not
// built its first mesh: it hears nothing (not "every cluster you hold is
// gone") until the mesh is published, and then gets it.
func TestNothingIsServedBeforeTheFirstMesh(t *testing.T) {
	h := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(h.conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	held := "outbound|8080||httpbin.httpbin.svc.cluster.local"
	if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{
		Node:                    node("curl-1.curl", "sidecar", map[string]any{"namespace": "curl", "pod": "curl-1"}),
		TypeUrl:                 resource.ClusterType,
		InitialResourceVersions: map[string]string{held: "an-earlier-replica's-version"},
	}); err != nil {
		t.Fatal(err)
	}
	early := make(chan *discoveryv3.DeltaDiscoveryResponse, 1)
	go func() {
		if resp, err := stream.Recv(); err == nil {
			early <- resp
		}
	}()
	select {
	case resp := <-early:
		t.Fatalf("answered before the first mesh: removed %v, sent %v", resp.GetRemovedResources(), namesOf(resp.GetResources()))
	case <-time.After(500 * time.Millisecond):
	}
	if h.server.Ready() {
		t.Fatal("Ready before the first mesh")
	}
	h.server.Update(withPods(articleMesh(true), map[string]string{"curl/curl-1": "10.244.2.10"}))
	var resp *discoveryv3.DeltaDiscoveryResponse
	select {
	case resp = <-early:
	case <-time.After(10 * time.Second):
		t.Fatal("no response after the first mesh")
	}
	if len(resp.GetRemovedResources()) != 0 || !contains(namesOf(resp.GetResources()), held) {
		t.Fatalf("after the first mesh: removed %v, sent %v", resp.GetRemovedResources(), namesOf(resp.GetResources()))
	}
}

// TestSidecarsOfANamespaceShareTheirOutboundSide: intercepting sidecars of
// one namespace are served one outbound layer (listeners, routes and the
// passthrough cluster, translated and marshalled once); another
// namespace's sidecar gets its own, with its own route names; the layer
// goes when its last sidecar does, and each sidecar keeps its inbound
// side to itself.
func TestSidecarsOfANamespaceShareTheirOutboundSide(t *testing.T) {
	h := startServer(t)
	h.server.Update(withPods(articleMesh(true), map[string]string{"curl/curl-1": "10.244.2.10", "curl/curl-2": "10.244.2.11", "other/web-1": "10.244.2.12"}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	connect := func(ns, pod string) (context.CancelFunc, map[string]bool) {
		sctx, stop := context.WithCancel(ctx)
		stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(h.conn).DeltaAggregatedResources(sctx)
		if err != nil {
			t.Fatal(err)
		}
		n := node(pod+"."+ns, "sidecar", map[string]any{"namespace": ns, "pod": pod, "interception": "iptables"})
		if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{Node: n, TypeUrl: resource.ListenerType}); err != nil {
			t.Fatal(err)
		}
		names := map[string]bool{}
		for _, name := range namesOf(recvDelta(t, stream).GetResources()) {
			names[name] = true
		}
		return stop, names
	}
	layer := func(name string) Resources {
		h.server.cache.mu.Lock()
		defer h.server.cache.mu.Unlock()
		return h.server.cache.layers[name]
	}
	stop1, l1 := connect("curl", "curl-1")
	stop2, l2 := connect("curl", "curl-2")
	stop3, _ := connect("other", "web-1")
	defer stop3()
	if !l1["outbound|8080"] || !l1[translate.VirtualOutboundName] || !l2["outbound|8080"] {
		t.Fatalf("the sidecars' listeners: %v and %v", l1, l2)
	}
	curl, other := layer("sidecar/curl"), layer("sidecar/other")
	if curl == nil || other == nil {
		t.Fatal("no shared layer per namespace")
	}
	if curl[resource.RouteType]["outbound|8080|curl"] == nil || other[resource.RouteType]["outbound|8080|other"] == nil {
		t.Fatalf("route configurations: curl %v, other %v", slices.Collect(maps.Keys(curl[resource.RouteType])), slices.Collect(maps.Keys(other[resource.RouteType])))
	}
	for _, id := range []string{"curl-1.curl", "curl-2.curl"} {
		own := layer(proxyLayer(id))
		if own[resource.ListenerType][translate.VirtualInboundName] == nil || len(own[resource.RouteType]) != 0 || own[resource.ListenerType]["outbound|8080"] != nil {
			t.Fatalf("%s's own layer holds %v", id, own)
		}
	}

	// The layer stays while a sidecar uses it.
	stop1()
	wait := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal(what)
			}
		}
	}
	wait("curl-1's own layer is not dropped", func() bool { return layer(proxyLayer("curl-1.curl")) == nil })
	if layer("sidecar/curl") == nil {
		t.Fatal("the shared layer went with one of its two sidecars")
	}
	stop2()
	wait("the shared layer outlives its last sidecar", func() bool { return layer("sidecar/curl") == nil })
	if layer("sidecar/other") == nil {
		t.Fatal("another namespace's layer went too")
	}
}

// withPods is m with its pods' addresses.
func withPods(m *model.Mesh, pods map[string]string) *model.Mesh {
	m.Pods = pods
	return m
}
