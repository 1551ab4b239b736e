// Command echo is the test nodes' web application: an HTTP server that
// answers every request with its MESSAGE (default: the pod's name) and
// the path asked, so a test sees which pod, and so which cluster, served
// it; with BODY set it answers exactly BODY, as the article's pipy
// httpbin does; /header/<name> answers the value of that request header.
// It listens on $PORT (default 8080); with $GRPC_PORT set it
// also serves gRPC's interop TestService there, whose UnaryCall answers
// MESSAGE as the response's hostname.
//
// `echo get URL` is its client: it prints what URL answers and fails on an
// error or a status other than 200, so a pod of this image can call others.
// `echo get -n N [-interval D] URL` calls N times (a new connection each
// time, as curl does) and prints one line per call, exiting 0, `<status> <first line
// of the body>` or `error <why>`, so a test counts who answered.
//
// `echo grpc-call -n N TARGET` makes N UnaryCalls on one channel to TARGET
// (host:port, or xds:///name with the bootstrap in
// $GRPC_XDS_BOOTSTRAP_CONFIG: a proxyless client) and prints one line per
// call, `OK <hostname>` or `error <code>`.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	// xds:/// targets: the proxyless client.
	_ "google.golang.org/grpc/xds"
)

func main() {
	if len(os.Args) > 2 && os.Args[1] == "get" {
		os.Exit(getCommand(os.Args[2:]))
	}
	if len(os.Args) > 2 && os.Args[1] == "grpc-call" {
		os.Exit(grpcCommand(os.Args[2:]))
	}
	msg := os.Getenv("MESSAGE")
	if msg == "" {
		msg, _ = os.Hostname()
	}
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	body, fixed := os.LookupEnv("BODY")
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if name, ok := strings.CutPrefix(r.URL.Path, "/header/"); ok {
			// What the pod was told in a request header (a sidecar
			// tells it its caller's identity).
			_, _ = fmt.Fprintln(w, r.Header.Get(name))
			return
		}
		if fixed {
			_, _ = io.WriteString(w, body)
			return
		}
		_, _ = fmt.Fprintf(w, "%s %s\n", msg, r.URL.Path)
	})
	if gp := os.Getenv("GRPC_PORT"); gp != "" {
		l, err := net.Listen("tcp", ":"+gp)
		if err != nil {
			log.Fatal(err)
		}
		g := grpc.NewServer()
		testgrpc.RegisterTestServiceServer(g, testService{hostname: msg})
		go func() { log.Fatal(g.Serve(l)) }()
	}
	srv := &http.Server{Addr: ":" + port, ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.ListenAndServe())
}

// testService answers UnaryCall with its hostname.
type testService struct {
	testgrpc.UnimplementedTestServiceServer
	hostname string
}

func (s testService) UnaryCall(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	return &testgrpc.SimpleResponse{Hostname: s.hostname}, nil
}

func grpcCommand(args []string) int {
	fs := flag.NewFlagSet("grpc-call", flag.ContinueOnError)
	n := fs.Int("n", 1, "calls to make")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: echo grpc-call [-n N] TARGET")
		return 2
	}
	conn, err := grpc.NewClient(fs.Arg(0), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer conn.Close()
	c := testgrpc.NewTestServiceClient(conn)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for range *n {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{})
		cancel()
		if err != nil {
			fmt.Fprintln(out, "error", strings.ToUpper(status.Code(err).String()))
			continue
		}
		fmt.Fprintln(out, "OK", resp.GetHostname())
	}
	return 0
}

func getCommand(args []string) int {
	fs := flag.NewFlagSet("get", flag.ContinueOnError)
	n := fs.Int("n", 1, "calls to make; when given, one line per call")
	interval := fs.Duration("interval", 0, "pause between calls")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: echo get [-n N] [-interval D] URL")
		return 2
	}
	url := fs.Arg(0)
	lines := false
	fs.Visit(func(f *flag.Flag) { lines = lines || f.Name == "n" })
	if !lines {
		return get(url)
	}
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for i := range *n {
		if i > 0 {
			time.Sleep(*interval)
		}
		fmt.Fprintln(out, call(url))
		if *interval > 0 {
			_ = out.Flush()
		}
	}
	return 0
}

// call makes one GET on a new connection and says how it went in a line.
func call(url string) string {
	cl := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := cl.Get(url)
	if err != nil {
		return "error " + strings.ReplaceAll(err.Error(), "\n", " ")
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	first, _, _ := strings.Cut(string(body), "\n")
	return fmt.Sprintf("%d %s", resp.StatusCode, first)
}

func get(url string) int {
	cl := http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer resp.Body.Close()
	_, _ = io.Copy(os.Stdout, resp.Body)
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(os.Stderr, resp.Status)
		return 1
	}
	return 0
}
