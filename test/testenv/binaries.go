package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
)

// Binaries builds fleetmesh's shipped binaries (./cmd/...) as the
// Dockerfile does (static, trimmed paths), once per test process, and returns the folder that holds them.
// Tests run what ships, not the packages behind it.
func Binaries() (string, error) { return buildBinaries("") }

// buildBinaries builds ./cmd/... once per version; a version other than
// "" is set as a release build sets it (the Dockerfile's VERSION).
func buildBinaries(version string) (string, error) {
	if version == "" {
		return goBuild("cmd", "", "./cmd/...")
	}
	return goBuild("cmd@"+version, "", "-ldflags", "-s -w -X github.com/fleetmesh/fleetmesh/pkg/version.Version="+version, "./cmd/...")
}

// Binary is the path of one of Binaries, e.g. "fleetmesh-controller".
func Binary(name string) (string, error) {
	dir, err := Binaries()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, name), nil
}

// ImageProgram builds the program of a test image, ./test/images/<name>
// (static, as in the image), once per test process, and returns its path:
// e.g. "echo", whose grpc-call command is a proxyless gRPC client.
func ImageProgram(name string) (string, error) {
	return goBuild("image/"+name, name, "./test/images/"+name)
}

// A build, done once per test process.
type build struct {
	mu   sync.Mutex
	path string
}

var (
	buildsMu sync.Mutex
	builds   = map[string]*build{}
)

// goBuild runs go build with args once per test process for key, into a
// new folder, and returns the path of out in it (the folder itself when
// out is "", for several packages). The build is static and trimmed, as
// the Dockerfile's, and downloads nothing: inside the test network
// nothing can be, and the module cache already holds what the test
// binary itself was built from. A failed build is tried again on the
// next call.
func goBuild(key, out string, args ...string) (string, error) {
	buildsMu.Lock()
	b := builds[key]
	if b == nil {
		b = &build{}
		builds[key] = b
	}
	buildsMu.Unlock()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.path != "" {
		return b.path, nil
	}
	dir, err := os.MkdirTemp("", "fleetmesh-build-")
	if err != nil {
		return "", err
	}
	onExit(func() { _ = os.RemoveAll(dir) })
	path := filepath.Join(dir, out)
	dest := path
	if out == "" {
		dest = dir + string(filepath.Separator)
	}
	cmd := exec.Command("go", append([]string{"build", "-trimpath", "-o", dest}, args...)...)
	cmd.Dir = RepoRoot()
	cmd.Env = append(os.Environ(), "GOPROXY=off", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", args[len(args)-1], err, out)
	}
	b.path = path
	return path, nil
}
