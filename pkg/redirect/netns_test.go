package redirect

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The netns test runs the test binary again as small helpers inside the
// namespaces it creates: servers that say who they are and where the
// connection was headed, a client, and the rule loader.
const helperEnv = "FLEETMESH_REDIRECT_HELPER"

func TestMain(m *testing.M) {
	if h := os.Getenv(helperEnv); h != "" {
		if err := helper(strings.Fields(h)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func helper(args []string) error {
	switch args[0] {
	case "serve": // serve ADDR NAME: answer "NAME <original destination>"
		l, err := net.Listen("tcp", args[1])
		if err != nil {
			return err
		}
		fmt.Println("ready")
		for {
			c, err := l.Accept()
			if err != nil {
				return err
			}
			_, _ = fmt.Fprintf(c, "%s %s\n", args[2], originalDst(c))
			_ = c.Close()
		}
	case "dial": // dial UID ADDR: connect as UID, print the answer
		uid, err := strconv.Atoi(args[1])
		if err != nil {
			return err
		}
		if uid != 0 {
			if err := syscall.Setgid(uid); err != nil {
				return err
			}
			if err := syscall.Setuid(uid); err != nil {
				return err
			}
		}
		c, err := net.DialTimeout("tcp", args[2], 3*time.Second)
		if err != nil {
			return err
		}
		defer func() { _ = c.Close() }()
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		data, err := io.ReadAll(c)
		fmt.Print(string(data))
		return err
	case "apply": // apply RESTORE: load the rules of the JSON config on stdin
		var c Config
		if err := json.NewDecoder(os.Stdin).Decode(&c); err != nil {
			return err
		}
		return Apply(context.Background(), args[1], c)
	}
	return fmt.Errorf("unknown helper %q", args)
}

// originalDst is where a redirected connection was headed
// (SO_ORIGINAL_DST), or its local address when it was not redirected.
func originalDst(c net.Conn) string {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c.LocalAddr().String()
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return c.LocalAddr().String()
	}
	var addr string
	_ = raw.Control(func(fd uintptr) {
		const soOriginalDst = 80
		mreq, err := syscall.GetsockoptIPv6Mreq(int(fd), syscall.SOL_IP, soOriginalDst)
		if err != nil {
			return
		}
		b := mreq.Multiaddr
		ip := netip.AddrFrom4([4]byte{b[4], b[5], b[6], b[7]})
		addr = netip.AddrPortFrom(ip, binary.BigEndian.Uint16(b[2:4])).String()
	})
	if addr == "" {
		return c.LocalAddr().String()
	}
	return addr
}

// netnsFixture is two network namespaces joined by a veth pair: the pod
// (10.250.0.2) and the outside world (10.250.0.1).
type netnsFixture struct {
	t        *testing.T
	pod, out string
	restore  string
}

func newNetnsFixture(t *testing.T) *netnsFixture {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipped: creating network namespaces (ip netns) and loading iptables rules needs root")
	}
	for _, bin := range []string{"ip", "iptables-restore", "iptables-save"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("skipped: %s is not installed (apt-get install iproute2 iptables)", bin)
		}
	}
	id := strconv.Itoa(os.Getpid())
	f := &netnsFixture{t: t, pod: "fm-pod-" + id, out: "fm-out-" + id, restore: "iptables-restore"}
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	for _, ns := range []string{f.pod, f.out} {
		run("ip", "netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
		run("ip", "-n", ns, "link", "set", "lo", "up")
	}
	run("ip", "link", "add", "fmp"+id, "netns", f.pod, "type", "veth", "peer", "name", "fmo"+id, "netns", f.out)
	run("ip", "-n", f.pod, "addr", "add", "10.250.0.2/24", "dev", "fmp"+id)
	run("ip", "-n", f.out, "addr", "add", "10.250.0.1/24", "dev", "fmo"+id)
	run("ip", "-n", f.pod, "link", "set", "fmp"+id, "up")
	run("ip", "-n", f.out, "link", "set", "fmo"+id, "up")
	if out, err := exec.Command("ip", "netns", "exec", f.pod, "iptables-save", "-t", "nat").CombinedOutput(); err != nil {
		t.Skipf("skipped: iptables does not work in a network namespace here: %v: %s", err, out)
	}
	return f
}

// helperCmd runs a helper in namespace ns.
func (f *netnsFixture) helperCmd(ns string, args ...string) *exec.Cmd {
	exe, err := os.Executable()
	if err != nil {
		f.t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", ns, exe)
	cmd.Env = append(os.Environ(), helperEnv+"="+strings.Join(args, " "))
	return cmd
}

// serve starts a server in ns that answers "name <original destination>".
func (f *netnsFixture) serve(ns, addr, name string) {
	f.t.Helper()
	cmd := f.helperCmd(ns, "serve", addr, name)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		f.t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "ready\n" {
		f.t.Fatalf("server %s in %s: %q %v", name, ns, line, err)
	}
}

// dial connects from ns as uid and returns the answer.
func (f *netnsFixture) dial(ns string, uid int, addr string) string {
	f.t.Helper()
	out, err := f.helperCmd(ns, "dial", strconv.Itoa(uid), addr).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("error: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return strings.TrimSpace(string(out))
}

func (f *netnsFixture) apply(c Config) {
	f.t.Helper()
	cmd := f.helperCmd(f.pod, "apply", f.restore)
	data, _ := json.Marshal(c)
	cmd.Stdin = strings.NewReader(string(data))
	if out, err := cmd.CombinedOutput(); err != nil {
		f.t.Fatalf("apply rules: %v: %s", err, out)
	}
}

func TestTheRulesSendThePodsTrafficThroughTheProxyInARealNetworkNamespace(t *testing.T) {
	f := newNetnsFixture(t)
	f.serve(f.out, "10.250.0.1:8080", "outside")
	f.serve(f.out, "10.250.0.1:5432", "outside-db")
	f.serve(f.pod, "0.0.0.0:15001", "outbound-proxy")
	f.serve(f.pod, "0.0.0.0:15006", "inbound-proxy")
	f.serve(f.pod, "0.0.0.0:9090", "app")
	f.serve(f.pod, "0.0.0.0:8081", "app-probe")

	// Before the rules, every connection goes where it is addressed.
	if got := f.dial(f.pod, 0, "10.250.0.1:8080"); got != "outside 10.250.0.1:8080" {
		t.Fatalf("without rules: %q", got)
	}

	c := DefaultConfig()
	c.ExcludeOutboundPorts = append(c.ExcludeOutboundPorts, 5432)
	c.ExcludeInboundPorts = append(c.ExcludeInboundPorts, 8081)
	f.apply(c)
	f.apply(c) // an init container that restarts applies them again

	for _, tc := range []struct {
		name, from string
		uid        int
		to, want   string
	}{
		{"the app's connection out lands on the outbound proxy port, its destination kept", f.pod, 0, "10.250.0.1:8080", "outbound-proxy 10.250.0.1:8080"},
		{"the proxy's own connection (uid 1337) goes out directly", f.pod, DefaultProxyUID, "10.250.0.1:8080", "outside 10.250.0.1:8080"},
		{"an excluded outbound port goes out directly", f.pod, 0, "10.250.0.1:5432", "outside-db 10.250.0.1:5432"},
		{"localhost is not captured", f.pod, 0, "127.0.0.1:9090", "app 127.0.0.1:9090"},
		{"a connection into the pod lands on the inbound proxy port, its destination kept", f.out, 0, "10.250.0.2:9090", "inbound-proxy 10.250.0.2:9090"},
		{"an excluded inbound port reaches the app", f.out, 0, "10.250.0.2:8081", "app-probe 10.250.0.2:8081"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := f.dial(tc.from, tc.uid, tc.to); got != tc.want {
				t.Errorf("from %s as uid %d to %s: got %q, want %q", tc.from, tc.uid, tc.to, got, tc.want)
			}
		})
	}

	saved, err := exec.Command("ip", "netns", "exec", f.pod, "iptables-save", "-t", "nat").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(saved), "-A OUTPUT -p tcp -j FLEETMESH_OUTPUT"); n != 1 {
		t.Errorf("after applying twice, OUTPUT jumps to FLEETMESH_OUTPUT %d times:\n%s", n, saved)
	}
}
