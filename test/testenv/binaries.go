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
func Binaries() (string, error) { return buildBinaries() }

var buildBinaries = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "fleetmesh-bin-")
	if err != nil {
		return "", err
	}
	onExit(func() { _ = os.RemoveAll(dir) })
	cmd := exec.Command("go", "build", "-trimpath", "-o", dir+string(filepath.Separator), "./cmd/...")
	cmd.Dir = RepoRoot()
	// Inside the test network nothing can be downloaded: the module cache
	// already holds what the test binary itself was built from.
	// Static, as in the images, which hold no C library.
	cmd.Env = append(os.Environ(), "GOPROXY=off", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/...: %w\n%s", err, out)
	}
	return dir, nil
})

// Binary is the path of one of Binaries, e.g. "fleetmesh-controller".
func Binary(name string) (string, error) {
	dir, err := Binaries()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, name), nil
}
