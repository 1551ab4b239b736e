package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Envoy is a running Envoy process.
type Envoy struct {
	// Admin is the admin listener, http://127.0.0.1:<port>.
	Admin string
	cmd   *exec.Cmd
	done  chan struct{}
	log   string
}

// StartEnvoy runs the real Envoy with a bootstrap (JSON or YAML). It uses
// a dynamic base id (several Envoys share the test network) and one worker
// thread (round robin is then deterministic). The admin address must be
// the bootstrap's.
func StartEnvoy(name string, bootstrap []byte, adminPort int) (*Envoy, error) {
	dir, err := os.MkdirTemp("", "fleetmesh-envoy-"+name+"-")
	if err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "bootstrap.json")
	if err := os.WriteFile(cfg, bootstrap, 0o600); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "envoy.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(EnvoyBinary(), "-c", cfg, "--use-dynamic-base-id", "--concurrency", "1",
		"--log-level", "warn", "--drain-time-s", "0")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start envoy %s: %w", name, err)
	}
	e := &Envoy{Admin: "http://127.0.0.1:" + strconv.Itoa(adminPort), cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() { _ = cmd.Wait(); logFile.Close(); close(e.done) }()
	return e, nil
}

// FreePort returns a free TCP port on 127.0.0.1.
func FreePort() (int, error) { return freePort() }

// WaitReady waits until Envoy's admin answers /ready with LIVE: it has
// received and applied its first configuration.
func (e *Envoy) WaitReady(ctx context.Context, timeout time.Duration) error {
	return Eventually(ctx, timeout, func(ctx context.Context) (bool, error) {
		select {
		case <-e.done:
			return false, fmt.Errorf("envoy exited: %s", e.Log())
		default:
		}
		body, err := e.Get("/ready")
		return err == nil && strings.TrimSpace(body) == "LIVE", err
	})
}

// Get fetches an admin path.
func (e *Envoy) Get(path string) (string, error) {
	resp, err := http.Get(e.Admin + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return string(body), fmt.Errorf("%s: %s", path, resp.Status)
	}
	return string(body), err
}

// Stat reads one counter or gauge from /stats.
func (e *Envoy) Stat(name string) (int, error) {
	body, err := e.Get("/stats?filter=" + url.QueryEscape("^"+regexp.QuoteMeta(name)+"$"))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(body, "\n") {
		if k, v, ok := strings.Cut(line, ": "); ok && k == name {
			return strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return 0, fmt.Errorf("no stat %s", name)
}

// Log returns the end of Envoy's log.
func (e *Envoy) Log() string {
	data, _ := os.ReadFile(e.log)
	if len(data) > 4000 {
		data = data[len(data)-4000:]
	}
	return string(data)
}

// Stop ends Envoy.
func (e *Envoy) Stop() error {
	if e.cmd.Process == nil {
		return errors.New("envoy not started")
	}
	_ = e.cmd.Process.Kill()
	<-e.done
	return os.RemoveAll(filepath.Dir(e.log))
}
