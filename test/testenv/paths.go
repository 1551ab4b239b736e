package testenv

import (
	"os"
	"path/filepath"
	"runtime"
)

// RepoRoot returns the root of the fleetmesh checkout this package was built
// from.
func RepoRoot() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		panic("testenv: cannot locate source file")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// AssetsDir is where the kube-apiserver, kube-controller-manager and etcd
// binaries are: $KUBEBUILDER_ASSETS, else bin/k8s of the checkout (built by
// `make envtest-assets`).
func AssetsDir() string {
	if d := os.Getenv("KUBEBUILDER_ASSETS"); d != "" {
		return d
	}
	return filepath.Join(RepoRoot(), "bin", "k8s")
}

// OldAssetsDir is where the kube-apiserver and kube-controller-manager of
// an older Kubernetes minor ("1.33") are: bin/k8s-<minor> beside AssetsDir
// (built by `make envtest-assets-old`).
func OldAssetsDir(minor string) string {
	return filepath.Join(filepath.Dir(AssetsDir()), "k8s-"+minor)
}

// EnvoyBinary is the Envoy to run: $ENVOY_BIN, else bin/envoy of the
// checkout (installed by `make envoy`).
func EnvoyBinary() string {
	if p := os.Getenv("ENVOY_BIN"); p != "" {
		return p
	}
	return filepath.Join(RepoRoot(), "bin", "envoy")
}

// CRDDir is the folder of the generated fleetmesh CRDs.
func CRDDir() string {
	return filepath.Join(RepoRoot(), "manifests", "crd")
}

// MCSCRDDir is the folder of the MCS API's CRDs, as fleetmesh ships them.
func MCSCRDDir() string {
	return filepath.Join(RepoRoot(), "manifests", "mcs-crd")
}
