package xds

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/fleetmesh/fleetmesh/pkg/model"
	"github.com/fleetmesh/fleetmesh/pkg/xds/syncz"
)

// Identity is who a client proved to be: the namespace and ServiceAccount
// of its workload certificate's SPIFFE ID and, when the certificate binds
// one, its pod.
type Identity struct {
	Namespace      string
	ServiceAccount string
	Pod            string
	// Credential is what the client presented, for the debug API.
	Credential *syncz.Credential
}

// same reports whether two identities are one workload's, whatever
// credential each came with (a renewed certificate is the same identity).
func (id Identity) same(o Identity) bool {
	return id.Namespace == o.Namespace && id.ServiceAccount == o.ServiceAccount && id.Pod == o.Pod
}

func (id Identity) String() string {
	s := "ns/" + id.Namespace + "/sa/" + id.ServiceAccount
	if id.Pod != "" {
		s += " (pod " + id.Pod + ")"
	}
	return s
}

// Authenticator says who the client of a stream is, from its context (the
// connection's TLS state), or why it cannot be let in.
type Authenticator func(ctx context.Context) (Identity, error)

// CertificateIdentity authenticates a client by the workload certificate
// it presented on the TLS connection (verified against the workload roots
// by the TLS handshake): its SPIFFE ID
// spiffe://<trustDomain>/ns/<namespace>/sa/<service account>, and its
// pod, which fleetmesh's signer writes as the certificate's subject common
// name.
func CertificateIdentity(trustDomain string) Authenticator {
	return func(ctx context.Context) (Identity, error) {
		p, ok := peer.FromContext(ctx)
		if !ok {
			return Identity{}, errors.New("no peer")
		}
		info, ok := p.AuthInfo.(credentials.TLSInfo)
		if !ok {
			return Identity{}, errors.New("the connection is not TLS")
		}
		leaf := verifiedLeaf(info.State)
		if leaf == nil {
			return Identity{}, errNoCertificate
		}
		return identityOf(leaf, trustDomain)
	}
}

func verifiedLeaf(st tls.ConnectionState) *x509.Certificate {
	if len(st.VerifiedChains) == 0 || len(st.VerifiedChains[0]) == 0 {
		return nil
	}
	return st.VerifiedChains[0][0]
}

// identityOf reads a workload certificate's identity.
func identityOf(leaf *x509.Certificate, trustDomain string) (Identity, error) {
	if len(leaf.URIs) != 1 {
		return Identity{}, fmt.Errorf("the certificate has %d URI names; a workload certificate has one SPIFFE ID", len(leaf.URIs))
	}
	u := leaf.URIs[0]
	ns, sa, err := model.ParseWorkloadID(u, trustDomain)
	if err != nil {
		return Identity{}, fmt.Errorf("the certificate names %w", err)
	}
	cred := &syncz.Credential{Kind: syncz.CredentialCertificate, Identity: u.String(), NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter}
	if leaf.SerialNumber != nil {
		cred.Serial = leaf.SerialNumber.Text(16)
	}
	return Identity{Namespace: ns, ServiceAccount: sa, Pod: leaf.Subject.CommonName, Credential: cred}, nil
}

// identityKey carries a stream's Identity in its context.
type identityKey struct{}

// credentialOf is the credential of the authenticated stream whose
// context is ctx, or nil.
func credentialOf(ctx context.Context) *syncz.Credential {
	id, _ := ctx.Value(identityKey{}).(Identity)
	return id.Credential
}

// authorize checks a proxy's node against the identity of its stream:
// the node's namespace, serviceAccount and pod must be the credential's,
// and its id <pod>.<namespace>, whatever its role, so a node's state is
// its pod's alone and a pod cannot take another's node id or open more of
// its own. A credential that binds no pod is refused. A gateway is the
// control plane's own: its namespace and ServiceAccount.
func (s *Server) authorize(id Identity, p model.Proxy) error {
	if id.Pod == "" {
		return status.Errorf(codes.PermissionDenied, "node %s: the credential of %s binds no pod; every proxy's node is bound to its pod", p.ID, id)
	}
	var mismatch []string
	if p.Namespace != id.Namespace {
		mismatch = append(mismatch, fmt.Sprintf("metadata.namespace is %q, the credential's %q", p.Namespace, id.Namespace))
	}
	if p.ServiceAccount != id.ServiceAccount {
		mismatch = append(mismatch, fmt.Sprintf("metadata.serviceAccount is %q, the credential's %q", p.ServiceAccount, id.ServiceAccount))
	}
	if p.Pod != id.Pod {
		mismatch = append(mismatch, fmt.Sprintf("metadata.pod is %q, the credential's %q", p.Pod, id.Pod))
	}
	if p.ID != id.Pod+"."+id.Namespace {
		mismatch = append(mismatch, fmt.Sprintf("node.id is %q; a %s of pod %s/%s is %s.%s", p.ID, p.Role, id.Namespace, id.Pod, id.Pod, id.Namespace))
	}
	if p.Role == model.RoleGateway {
		if ns := s.opts.GatewayNamespace; ns != "" && id.Namespace != ns {
			mismatch = append(mismatch, fmt.Sprintf("a gateway runs in namespace %s, not %s", ns, id.Namespace))
		}
		if sa := s.opts.GatewayServiceAccount; sa != "" && id.ServiceAccount != sa {
			mismatch = append(mismatch, fmt.Sprintf("a gateway runs as ServiceAccount %s, not %s", sa, id.ServiceAccount))
		}
	}
	if len(mismatch) > 0 {
		return status.Errorf(codes.PermissionDenied, "node %s is not what %s may be: %s", p.ID, id, strings.Join(mismatch, "; "))
	}
	return nil
}

// MaxStreamsPerNode bounds the streams one node may hold at once: an
// Envoy holds one ADS stream (two across a hot restart), a proxyless pod
// one per xDS client it runs.
const MaxStreamsPerNode = 8

// owners records which identity holds each node id, so a node's state is
// never shared across identities: a second identity claiming a node id in
// use is refused.
type owners struct {
	mu    sync.Mutex
	nodes map[string]*owner
}

type owner struct {
	id      Identity
	streams int
}

func (o *owners) claim(nodeID string, id Identity) (release func(), err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.nodes == nil {
		o.nodes = map[string]*owner{}
	}
	cur := o.nodes[nodeID]
	if cur != nil && !cur.id.same(id) {
		return nil, status.Errorf(codes.PermissionDenied, "node %s is connected as %s; %s may not take it", nodeID, cur.id, id)
	}
	if cur != nil && cur.streams >= MaxStreamsPerNode {
		return nil, status.Errorf(codes.ResourceExhausted, "node %s holds %d streams already, the most one node may", nodeID, cur.streams)
	}
	if cur == nil {
		cur = &owner{id: id}
		o.nodes[nodeID] = cur
	}
	cur.streams++
	return func() {
		o.mu.Lock()
		defer o.mu.Unlock()
		if cur.streams--; cur.streams == 0 {
			delete(o.nodes, nodeID)
		}
	}, nil
}

// authenticate is the stream interceptor that lets in only authenticated
// clients whose every request's node is the one their stream began with,
// and is what their identity may be.
func (s *Server) authenticate(auth Authenticator) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		id, err := auth(ss.Context())
		if err != nil {
			s.metrics.refused.WithLabelValues("unauthenticated").Inc()
			return status.Errorf(codes.Unauthenticated, "%s: %v", info.FullMethod, err)
		}
		w := &authStream{ServerStream: ss, ctx: context.WithValue(ss.Context(), identityKey{}, id), server: s, id: id, release: func() {}}
		// (release is set once the stream claims its node: called late.)
		defer func() { w.release() }()
		err = handler(srv, w)
		// The xDS server ends a stream whose receive failed without
		// saying why: the client is told here.
		if w.denied != nil {
			return w.denied
		}
		return err
	}
}

// authStream checks each request's node against its stream's identity.
type authStream struct {
	grpc.ServerStream
	// ctx carries the identity to the xDS server's callbacks.
	ctx     context.Context
	server  *Server
	id      Identity
	first   *corev3.Node
	release func()
	// denied is why the stream was refused, if it was.
	denied error
}

func (w *authStream) Context() context.Context { return w.ctx }

func (w *authStream) RecvMsg(m any) error {
	if err := w.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if err := w.check(m); err != nil {
		w.denied = err
		return err
	}
	return nil
}

// check checks one request's node.
func (w *authStream) check(m any) error {
	var node *corev3.Node
	switch r := m.(type) {
	case *discoveryv3.DiscoveryRequest:
		node = r.GetNode()
	case *discoveryv3.DeltaDiscoveryRequest:
		node = r.GetNode()
	}
	if node == nil {
		if w.first == nil {
			return w.deny(status.Error(codes.InvalidArgument, "the first request of a stream must carry its node"))
		}
		return nil
	}
	if w.first != nil {
		if !proto.Equal(node, w.first) {
			return w.deny(status.Errorf(codes.PermissionDenied, "a stream may not change its node (it began as %s, now says %s)", w.first.GetId(), node.GetId()))
		}
		return nil
	}
	p, err := w.server.Identify(node)
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	if err := w.server.authorize(w.id, p); err != nil {
		w.server.opts.Log.Info("refusing proxy", "node", p.ID, "identity", w.id.String(), "error", err.Error())
		return w.deny(err)
	}
	release, err := w.server.owners.claim(p.ID, w.id)
	if err != nil {
		return w.deny(err)
	}
	w.first, w.release = proto.Clone(node).(*corev3.Node), release
	return nil
}

// deny counts a stream refused for what it asked, and returns why.
func (w *authStream) deny(err error) error {
	w.server.metrics.refused.WithLabelValues("denied").Inc()
	return err
}
