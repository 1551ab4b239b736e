package testenv

import (
	"context"
	"net"
	"strconv"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
)

// GRPCBackend is a gRPC server that answers UnaryCall with its cluster's
// name (in the response's hostname) and its address (in its server id),
// standing for a pod of that cluster.
type GRPCBackend struct {
	testgrpc.UnimplementedTestServiceServer
	Cluster string
	Port    int
	// Fail answers every call UNAVAILABLE: a Ready pod that fails.
	Fail bool

	srv *grpc.Server
	ip  string
}

// UnaryCall answers "I am from <cluster> at <address>".
func (b *GRPCBackend) UnaryCall(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	if b.Fail {
		return nil, status.Error(codes.Unavailable, b.Cluster+" is failing")
	}
	return &testgrpc.SimpleResponse{Hostname: b.Cluster, ServerId: "I am from " + b.Cluster + " at " + b.ip}, nil
}

// Start serves on ip:Port.
func (b *GRPCBackend) Start(ip string) error {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(b.Port)))
	if err != nil {
		return err
	}
	b.ip = ip
	b.srv = grpc.NewServer()
	testgrpc.RegisterTestServiceServer(b.srv, b)
	go func() { _ = b.srv.Serve(l) }()
	return nil
}

// Stop stops serving.
func (b *GRPCBackend) Stop() error {
	if b.srv != nil {
		b.srv.Stop()
		b.srv = nil
	}
	return nil
}
