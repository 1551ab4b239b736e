package testenv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fleetmesh/fleetmesh/pkg/kubeauth"
	"github.com/fleetmesh/fleetmesh/pkg/xds/syncz"
)

// ControlPlane is a running fleetmesh-controller process: the built
// binary, as it ships.
type ControlPlane struct {
	// XDSAddress and DebugAddress are where it serves (host:port).
	XDSAddress, DebugAddress string

	// debug reads the debug API as the cluster's admin.
	debug *debugClient

	cmd  *exec.Cmd
	done chan struct{}
	dir  string
	log  string
}

// ControlPlaneOptions says how to run a control plane.
type ControlPlaneOptions struct {
	// Args are fleetmesh-controller's arguments. --kubeconfig (the
	// cluster's admin kubeconfig) and --xds-address and --debug-address
	// (free ports on 127.0.0.1) are added unless Args has them, and
	// --xds-insecure-plaintext unless Args has --xds-tls or
	// --xds-address=0.
	Args []string
	// Env is added to the process's environment.
	Env []string
	// WaitReady waits for /readyz (a mesh published) instead of /healthz.
	WaitReady bool
}

// StartControlPlane runs the built fleetmesh-controller against the
// cluster's API server and waits until its debug API answers.
func (c *Cluster) StartControlPlane(ctx context.Context, o ControlPlaneOptions) (*ControlPlane, error) {
	bin, err := Binary("fleetmesh-controller")
	if err != nil {
		return nil, err
	}
	args := o.Args
	has := func(flag string) (string, bool) {
		for _, a := range args {
			if v, ok := strings.CutPrefix(a, "--"+flag+"="); ok {
				return v, true
			}
		}
		return "", false
	}
	if _, ok := has("kubeconfig"); !ok {
		args = append(args, "--kubeconfig="+c.KubeconfigPath)
	}
	cp := &ControlPlane{done: make(chan struct{})}
	// The debug API is HTTPS and authenticated unless told otherwise.
	auth, _ := has("debug-auth")
	if cp.debug, err = c.newDebugClient(auth != "none"); err != nil {
		return nil, err
	}
	for _, a := range []struct {
		flag string
		addr *string
	}{{"xds-address", &cp.XDSAddress}, {"debug-address", &cp.DebugAddress}} {
		if v, ok := has(a.flag); ok {
			*a.addr = v
			continue
		}
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		*a.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		args = append(args, "--"+a.flag+"="+*a.addr)
	}
	if host, port, err := net.SplitHostPort(cp.DebugAddress); err == nil && host == "" {
		cp.DebugAddress = net.JoinHostPort("127.0.0.1", port)
	}
	// The controller serves no plaintext ADS unless told: most tests'
	// proxies speak it on loopback, so they are told, unless the test
	// asks for TLS or for no ADS.
	set := func(flag string) bool {
		_, ok := has(flag)
		return ok || slices.Contains(args, "--"+flag)
	}
	if !set("xds-tls") && !set("xds-insecure-plaintext") && cp.XDSAddress != "0" {
		args = append(args, "--xds-insecure-plaintext")
	}
	if cp.dir, err = os.MkdirTemp("", "fleetmesh-controller-"+c.Name+"-"); err != nil {
		return nil, err
	}
	cp.log = filepath.Join(cp.dir, "controller.log")
	logFile, err := os.Create(cp.log)
	if err != nil {
		return nil, err
	}
	cp.cmd = exec.Command(bin, args...)
	cp.cmd.Env = append(os.Environ(), o.Env...)
	cp.cmd.Stdout, cp.cmd.Stderr = logFile, logFile
	if err := cp.cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start fleetmesh-controller for %s: %w", c.Name, err)
	}
	go func() { _ = cp.cmd.Wait(); logFile.Close(); close(cp.done) }()
	path := "/healthz"
	if o.WaitReady {
		path = "/readyz"
	}
	err = Eventually(ctx, 60*time.Second, func(context.Context) (bool, error) {
		select {
		case <-cp.done:
			return false, errors.New("fleetmesh-controller exited")
		default:
		}
		_, err := cp.Get(path)
		return err == nil, err
	})
	if err != nil {
		log := cp.Log() // before Stop removes it
		_ = cp.Stop()
		return nil, fmt.Errorf("fleetmesh-controller %s of %s never answered %s: %w\n%s", strings.Join(args, " "), c.Name, path, err, log)
	}
	return cp, nil
}

// Get fetches a path of the debug API.
func (cp *ControlPlane) Get(path string) (string, error) { return cp.debug.get(cp.DebugAddress, path) }

// debugClient reads a control plane's debug API: over HTTPS with the
// cluster admin's credentials (its self-signed certificate unchecked),
// or over plain HTTP (--debug-auth=none).
type debugClient struct {
	scheme string
	client *http.Client
}

func (c *Cluster) newDebugClient(authenticated bool) (*debugClient, error) {
	if !authenticated {
		return &debugClient{scheme: "http", client: &http.Client{Timeout: 30 * time.Second}}, nil
	}
	hc, err := kubeauth.Client(c.Config, nil)
	if err != nil {
		return nil, err
	}
	return &debugClient{scheme: "https", client: hc}, nil
}

// get fetches a path of the debug API at address.
func (d *debugClient) get(address, path string) (string, error) {
	resp, err := d.client.Get(d.scheme + "://" + address + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return string(body), fmt.Errorf("%s: %s: %s", path, resp.Status, strings.TrimSpace(string(body)))
	}
	return string(body), err
}

// Proxies is /debug/syncz: every connected proxy and its sync state.
func (cp *ControlPlane) Proxies() ([]syncz.ProxyStatus, error) {
	return cp.debug.syncz(cp.DebugAddress)
}

// Syncz reads /debug/syncz, as the cluster's admin, of the controller
// whose debug API is at address (e.g. a controller pod's IP:15014,
// HTTPS as the manifests run it).
func (c *Cluster) Syncz(address string) ([]syncz.ProxyStatus, error) {
	d, err := c.newDebugClient(true)
	if err != nil {
		return nil, err
	}
	return d.syncz(address)
}

func (d *debugClient) syncz(address string) ([]syncz.ProxyStatus, error) {
	body, err := d.get(address, "/debug/syncz")
	if err != nil {
		return nil, err
	}
	var out []syncz.ProxyStatus
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		return nil, fmt.Errorf("/debug/syncz: %w", err)
	}
	return out, nil
}

// Exited reports whether the process has ended.
func (cp *ControlPlane) Exited() bool {
	select {
	case <-cp.done:
		return true
	default:
		return false
	}
}

// Log returns the end of the process's log.
func (cp *ControlPlane) Log() string {
	data, _ := os.ReadFile(cp.log)
	if len(data) > 6000 {
		data = data[len(data)-6000:]
	}
	return string(data)
}

// Stop ends the process as the kubelet would (SIGTERM, then SIGKILL
// after 10 s) and removes its files.
func (cp *ControlPlane) Stop() error {
	if cp.cmd.Process != nil {
		_ = cp.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-cp.done:
		case <-time.After(10 * time.Second):
			_ = cp.cmd.Process.Kill()
			<-cp.done
		}
	}
	return os.RemoveAll(cp.dir)
}

// RSSKiB is the control plane process's resident memory (VmRSS), in KiB.
func (cp *ControlPlane) RSSKiB() (int, error) {
	if n := rssOf(cp.cmd.Process.Pid); n > 0 {
		return n, nil
	}
	return 0, fmt.Errorf("no VmRSS for the control plane (pid %d): has it exited?", cp.cmd.Process.Pid)
}
