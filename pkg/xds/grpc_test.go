package xds

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
)

// panicky panics on its first call of each kind.
type panicky struct {
	testgrpc.UnimplementedTestServiceServer
	calls int
}

func (p *panicky) UnaryCall(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	p.calls++
	if p.calls == 1 {
		panic("a bug")
	}
	return &testgrpc.SimpleResponse{Hostname: "still here"}, nil
}

func (p *panicky) FullDuplexCall(testgrpc.TestService_FullDuplexCallServer) error {
	panic("a bug in a stream")
}

func TestAPanicInACallIsAnErrorAndTheServerKeepsServing(t *testing.T) {
	g := NewGRPCServer(GRPCOptions{Log: logr.Discard()})
	testgrpc.RegisterTestServiceServer(g, &panicky{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(LimitAccepts(lis, 10)) }()
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	c := testgrpc.NewTestServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if _, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{}); status.Code(err) != codes.Internal {
		t.Fatalf("the panicking call: %v, want Internal", err)
	}
	stream, err := c.FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); status.Code(err) != codes.Internal {
		t.Fatalf("the panicking stream: %v, want Internal", err)
	}
	resp, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{})
	if err != nil || resp.GetHostname() != "still here" {
		t.Fatalf("the next call: %v %v", resp, err)
	}
}

func TestLimitAcceptsPacesNewConnections(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	limited := LimitAccepts(lis, 2)
	t.Cleanup(func() { _ = limited.Close() })
	accepted := make(chan struct{}, 10)
	go func() {
		for {
			c, err := limited.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
			accepted <- struct{}{}
		}
	}()
	for range 4 {
		c, err := net.Dial("tcp", lis.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	// A burst of 2 goes in at once; the other 2 wait their turn, half a
	// second each: the fourth cannot be in before a second has passed.
	start := time.Now()
	for got := 0; got < 4; got++ {
		select {
		case <-accepted:
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d of 4 connections accepted", got)
		}
	}
	if took := time.Since(start); took < 900*time.Millisecond {
		t.Fatalf("4 connections accepted in %v at 2 a second", took)
	}
}
