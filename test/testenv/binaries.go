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

var (
	binariesMu    sync.Mutex
	binariesBuilt = map[string]string{}
)

// buildBinaries builds ./cmd/... once per version; a version other than
// "" is set as a release build sets it (the Dockerfile's VERSION).
func buildBinaries(version string) (string, error) {
	binariesMu.Lock()
	defer binariesMu.Unlock()
	if dir, ok := binariesBuilt[version]; ok {
		return dir, nil
	}
	dir, err := os.MkdirTemp("", "fleetmesh-bin-")
	if err != nil {
		return "", err
	}
	onExit(func() { _ = os.RemoveAll(dir) })
	args := []string{"build", "-trimpath"}
	if version != "" {
		args = append(args, "-ldflags", "-s -w -X github.com/fleetmesh/fleetmesh/pkg/version.Version="+version)
	}
	cmd := exec.Command("go", append(args, "-o", dir+string(filepath.Separator), "./cmd/...")...)
	cmd.Dir = RepoRoot()
	// Inside the test network nothing can be downloaded: the module cache
	// already holds what the test binary itself was built from.
	// Static, as in the images, which hold no C library.
	cmd.Env = append(os.Environ(), "GOPROXY=off", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/...: %w\n%s", err, out)
	}
	binariesBuilt[version] = dir
	return dir, nil
}

// Binary is the path of one of Binaries, e.g. "fleetmesh-controller".
func Binary(name string) (string, error) {
	dir, err := Binaries()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, name), nil
}

var (
	programsMu sync.Mutex
	programs   = map[string]string{}
)

// ImageProgram builds the program of a test image, ./test/images/<name>
// (static, as in the image), once per test process, and returns its path:
// e.g. "echo", whose grpc-call command is a proxyless gRPC client.
func ImageProgram(name string) (string, error) {
	programsMu.Lock()
	defer programsMu.Unlock()
	if bin, ok := programs[name]; ok {
		return bin, nil
	}
	dir, err := os.MkdirTemp("", "fleetmesh-image-"+name+"-")
	if err != nil {
		return "", err
	}
	onExit(func() { _ = os.RemoveAll(dir) })
	bin := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "./test/images/"+name)
	cmd.Dir = RepoRoot()
	cmd.Env = append(os.Environ(), "GOPROXY=off", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./test/images/%s: %w\n%s", name, err, out)
	}
	programs[name] = bin
	return bin, nil
}
