package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// insideEnv marks a process that already runs inside the test network.
const insideEnv = "FLEETMESH_TEST_NETWORK"

// netnsFileEnv names the file where the test binary writes its network
// namespace for the wrapper outside it.
const netnsFileEnv = "FLEETMESH_TEST_NETNS_FILE"

// killNetNS kills every process left in the network namespace named in
// the file (e.g. "net:[4026532290]").
func killNetNS(file string) {
	data, err := os.ReadFile(file)
	ns := strings.TrimSpace(string(data))
	if err != nil || ns == "" {
		return
	}
	if own, _ := os.Readlink("/proc/self/ns/net"); own == ns {
		return // never the namespace the wrapper itself lives in
	}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		if link, err := os.Readlink(filepath.Join(d, "ns", "net")); err == nil && link == ns {
			if pid, err := strconv.Atoi(filepath.Base(d)); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
}

// RouterAddress is the test network's own address; its default route points
// at it, so kube-apiserver finds an advertise address and nothing can leave.
const RouterAddress = "10.244.0.1"

// Main runs a test package inside the test network: it re-executes the test
// binary under `unshare` in a new network namespace, brings up loopback with
// RouterAddress and a default route on it, and then calls run (which
// normally starts shared fixtures and calls m.Run). It exits with run's code.
func Main(m *testing.M, run func() int) {
	if run == nil {
		run = m.Run
	}
	os.Exit(RunInTestNetwork(run))
}

// MainWithFleet is Main for a test package that shares one fleet: it
// starts the clusters of opts, stores the fleet in *fleet for the tests,
// runs them and stops the fleet.
func MainWithFleet(m *testing.M, opts FleetOptions, fleet **Fleet) {
	Main(m, func() int {
		f, err := StartFleet(context.Background(), opts)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer func() { _ = f.Stop() }()
		*fleet = f
		return m.Run()
	})
}

// RunInTestNetwork is Main for a program (the demo): it re-executes the
// program in a new network namespace, where it calls run, and returns
// run's exit code.
func RunInTestNetwork(run func() int) int {
	if os.Getenv(insideEnv) != "1" {
		return reexecInNetNS()
	}
	if f := os.Getenv(netnsFileEnv); f != "" {
		if ns, err := os.Readlink("/proc/self/ns/net"); err == nil {
			_ = os.WriteFile(f, []byte(ns), 0o600)
		}
	}
	if err := setupLoopback(); err != nil {
		fmt.Fprintf(os.Stderr, "testenv: set up the test network: %v\n", err)
		return 1
	}
	defer runAtExit()
	// The harness's clients log nothing worth showing; the control planes
	// under test are processes with logs of their own.
	ctrllog.SetLogger(logr.Discard())
	return run()
}

var (
	atExitMu sync.Mutex
	atExit   []func()
	// atExitKeys are the keys of onExitOnce.
	atExitKeys map[string]bool
)

// onExit registers f to run when the program inside the test network
// ends (in reverse order of registration).
func onExit(f func()) {
	atExitMu.Lock()
	defer atExitMu.Unlock()
	atExit = append(atExit, f)
}

// onExitOnce is onExit for a cleanup registered under key only once.
func onExitOnce(key string, f func()) {
	atExitMu.Lock()
	defer atExitMu.Unlock()
	if atExitKeys[key] {
		return
	}
	if atExitKeys == nil {
		atExitKeys = map[string]bool{}
	}
	atExitKeys[key] = true
	atExit = append(atExit, f)
}

func runAtExit() {
	atExitMu.Lock()
	fs := atExit
	atExit = nil
	atExitMu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}

// InTestNetwork reports whether this process runs inside the test network.
func InTestNetwork() bool { return os.Getenv(insideEnv) == "1" }

func reexecInNetNS() int {
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "testenv: find test binary: %v\n", err)
		return 1
	}
	flags := "-n"
	if os.Geteuid() != 0 {
		// A user namespace lends CAP_NET_ADMIN over the new network
		// namespace to an unprivileged user.
		flags = "-rn"
	}
	// The test binary tells which network namespace it made, so that
	// whatever it leaves running there (API servers, Envoys), also after a
	// crash, is ended when it exits.
	nsFile, err := os.CreateTemp("", "fleetmesh-netns-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "testenv: %v\n", err)
		return 1
	}
	nsFile.Close()
	defer os.Remove(nsFile.Name())
	defer killNetNS(nsFile.Name())
	cmd := exec.Command("unshare", append([]string{flags, "--", self}, os.Args[1:]...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), insideEnv+"=1", netnsFileEnv+"="+nsFile.Name())
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "testenv: enter a network namespace with unshare %s: %v\n", flags, err)
		return 1
	}
	// unshare execs the test binary: its real nodes live in the cgroup
	// named after this pid, and whatever a crash left there goes too.
	defer removeNodeCgroups(cmd.Process.Pid)
	// Ctrl-C and termination go to the program inside, which stops its
	// fleet; this wrapper then cleans up whatever is left.
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(signals)
	go func() {
		for sig := range signals {
			_ = cmd.Process.Signal(sig)
		}
	}()
	if err := cmd.Wait(); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return exit.ExitCode()
		}
		fmt.Fprintf(os.Stderr, "testenv: enter a network namespace with unshare %s: %v\n", flags, err)
		return 1
	}
	return 0
}

func setupLoopback() error {
	if err := ip("link", "set", "lo", "up"); err != nil {
		return err
	}
	if err := AddAddress(RouterAddress); err != nil {
		return err
	}
	return ip("route", "replace", "default", "via", RouterAddress, "dev", "lo")
}

// AddAddress puts ip on the test network's loopback, so processes can listen
// on it and reach it. It is a no-op for an address already there. It refuses
// to run outside the test network, where it would change the host.
func AddAddress(addr string) error {
	if !InTestNetwork() {
		return fmt.Errorf("add address %s: not inside the test network (call testenv.Main from TestMain)", addr)
	}
	parsed := net.ParseIP(addr)
	if parsed == nil {
		return fmt.Errorf("add address %q: not an IP address", addr)
	}
	bits := "/32"
	if parsed.To4() == nil {
		bits = "/128"
	}
	err := ip("addr", "add", addr+bits, "dev", "lo")
	if err != nil && (strings.Contains(err.Error(), "File exists") || strings.Contains(err.Error(), "already assigned")) {
		return nil
	}
	return err
}

func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
