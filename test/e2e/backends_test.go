package e2e

import (
	"context"
	"net"
	"strconv"

	"google.golang.org/grpc"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
)

// grpcBackend is a gRPC server that answers UnaryCall with its cluster's
// name ("I am from cluster-1"), standing for a pod of that cluster.
type grpcBackend struct {
	testgrpc.UnimplementedTestServiceServer
	Cluster string
	Port    int
	srv     *grpc.Server
}

func (b *grpcBackend) UnaryCall(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	return &testgrpc.SimpleResponse{Hostname: b.Cluster, ServerId: "I am from " + b.Cluster}, nil
}

func (b *grpcBackend) Start(ip string) error {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(b.Port)))
	if err != nil {
		return err
	}
	b.srv = grpc.NewServer()
	testgrpc.RegisterTestServiceServer(b.srv, b)
	go func() { _ = b.srv.Serve(l) }()
	return nil
}

func (b *grpcBackend) Stop() error {
	if b.srv != nil {
		b.srv.Stop()
		b.srv = nil
	}
	return nil
}
