package xds

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"runtime/debug"
	"time"
	"unique"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/go-logr/logr"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
)

// GRPCOptions shape the gRPC server that carries ADS.
type GRPCOptions struct {
	// MaxConnectionAge closes a connection this long after it opened
	// (GOAWAY, then MaxConnectionAgeGrace for its streams to end), so
	// proxies spread over the replicas again after a rollout; 0 keeps
	// connections forever.
	MaxConnectionAge      time.Duration
	MaxConnectionAgeGrace time.Duration
	// MaxStreamsPerConnection bounds the streams of one connection (a
	// proxy needs one).
	MaxStreamsPerConnection uint32
	// MaxRequestBytes bounds one request a proxy sends (a DiscoveryRequest
	// and the resource names it subscribes to); a larger one ends its
	// stream with ResourceExhausted. 0: DefaultMaxRequestBytes.
	MaxRequestBytes int
	// Creds secure the connections (TLS with client certificates); nil
	// serves plaintext.
	Creds credentials.TransportCredentials
	// Stream runs on every stream after panic recovery (the xDS server's
	// authentication).
	Stream grpc.StreamServerInterceptor
	Log    logr.Logger
}

// DefaultMaxRequestBytes is the largest request a proxy may send by
// default: 4 MiB, some 80,000 subscribed resource names.
const DefaultMaxRequestBytes = 4 << 20

// NewGRPCServer returns the gRPC server for ADS: keepalives that find dead
// proxies, the connection age and stream bounds of o, and a panic in a
// stream's handler logged and answered as an Internal error instead of
// taking the process down.
func NewGRPCServer(o GRPCOptions) *grpc.Server {
	ka := keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}
	if o.MaxConnectionAge > 0 {
		ka.MaxConnectionAge, ka.MaxConnectionAgeGrace = o.MaxConnectionAge, o.MaxConnectionAgeGrace
	}
	streams := o.MaxStreamsPerConnection
	if streams == 0 {
		streams = 100
	}
	interceptors := []grpc.StreamServerInterceptor{recovery.StreamServerInterceptor(recoverPanics(o.Log)), internNames}
	if o.Stream != nil {
		interceptors = append(interceptors, o.Stream)
	}
	opts := []grpc.ServerOption{
		grpc.MaxConcurrentStreams(streams),
		grpc.MaxRecvMsgSize(cmp.Or(o.MaxRequestBytes, DefaultMaxRequestBytes)),
		grpc.KeepaliveParams(ka),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.ChainStreamInterceptor(interceptors...),
		grpc.ChainUnaryInterceptor(recovery.UnaryServerInterceptor(recoverPanics(o.Log))),
		// A connection's buffers, times thousands of proxies: reads,
		// mostly small acknowledgements, use a smaller one (gRPC shares
		// write buffers already).
		grpc.ReadBufferSize(readBufferSize),
	}
	if o.Creds != nil {
		opts = append(opts, grpc.Creds(o.Creds))
	}
	return grpc.NewServer(opts...)
}

// readBufferSize is a connection's read buffer (gRPC's default is 32 KiB).
const readBufferSize = 8 << 10

// internNames makes the resource names of the requests a stream receives
// the same strings for every proxy that asks for them: a thousand
// sidecars subscribing to the same thousand assignments keep one copy of
// each name in their subscriptions, not a thousand.
func internNames(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, interning{ss})
}

type interning struct{ grpc.ServerStream }

func (s interning) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	switch req := m.(type) {
	case *discoveryv3.DeltaDiscoveryRequest:
		intern(req.ResourceNamesSubscribe)
		intern(req.ResourceNamesUnsubscribe)
	case *discoveryv3.DiscoveryRequest:
		intern(req.ResourceNames)
	}
	return nil
}

func intern(names []string) {
	for i, n := range names {
		names[i] = unique.Make(n).Value()
	}
}

// recoverPanics turns a panic in a call into an Internal error on that
// call, logged with its stack: the server keeps serving every other.
func recoverPanics(log logr.Logger) recovery.Option {
	return recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		method, _ := grpc.Method(ctx)
		log.Error(fmt.Errorf("panic: %v", p), "a gRPC call panicked; the server keeps serving", "method", method, "stack", string(debug.Stack()))
		return status.Errorf(codes.Internal, "the control plane failed on %s; it keeps serving", method)
	})
}

// LimitAccepts admits at most perSecond new connections a second (bursts
// of as many), so a fleet of proxies reconnecting at once after a restart
// is let in at a pace the control plane can serve; 0 admits all.
func LimitAccepts(l net.Listener, perSecond int) net.Listener {
	if perSecond <= 0 {
		return l
	}
	return &limitedListener{Listener: l, limiter: rate.NewLimiter(rate.Limit(perSecond), perSecond)}
}

type limitedListener struct {
	net.Listener
	limiter *rate.Limiter
}

func (l *limitedListener) Accept() (net.Conn, error) {
	if err := l.limiter.Wait(context.Background()); err != nil {
		return nil, err
	}
	return l.Listener.Accept()
}
