package testenv

import (
	"archive/tar"
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Image is a container image built here for the test nodes: a
// docker-archive tarball that `ctr images import` loads, so pods run it
// with imagePullPolicy Never or IfNotPresent and no registry.
type Image struct {
	// Ref is the image's name and tag, e.g. ghcr.io/fleetmesh/fleetmesh:v0.1.0.
	Ref string
	// Path is the tarball.
	Path string
}

// imageSpec is what goes into a one-layer image.
type imageSpec struct {
	ref        string
	entrypoint []string
	user       string
	// files maps a path in the image to a file on this machine.
	files map[string]string
	// links maps a path in the image to a symlink target.
	links map[string]string
}

// The images of test/images that every real node loads.
const (
	// PauseImage is the sandbox image.
	PauseImage = "fleetmesh.test/pause:1"
	// EchoImage is an HTTP server answering with its MESSAGE and the path.
	EchoImage = "fleetmesh.test/echo:1"
	// CoreDNSImage is the cluster DNS, CoreDNS built by make node-assets.
	CoreDNSImage = "fleetmesh.test/coredns:1"
)

// The images the MCS conformance suite's pods run, under the names it
// gives them, with what its specs run in them: its servers are sh scripts
// around socat, its request pod runs nslookup, nc and a shell pipeline
// (grep, awk, tr, tail). Both are built from Debian's dash (sh: busybox's
// would run its own nc, which lacks the suite's flags, over the one on
// PATH), busybox-static, socat and netcat-openbsd (make node-packages).
const (
	MCSListenerImage = "alpine/socat:1.7.4.4"
	MCSRequestImage  = "nicolaka/netshoot:v0.15"
)

// busyboxApplets are the commands of busybox the conformance images have.
var busyboxApplets = []string{"echo", "grep", "awk", "tr", "tail", "head", "cat", "sleep", "nslookup", "ls", "ps", "hostname", "env", "date"}

// mcsConformanceImages are the specs of MCSListenerImage and
// MCSRequestImage.
func mcsConformanceImages() ([]imageSpec, error) {
	// As upstream's: alpine/socat's entrypoint is socat; netshoot has
	// none (its pods' args are the whole command line).
	busybox := func(ref string, entrypoint ...string) imageSpec {
		spec := imageSpec{ref: ref, entrypoint: entrypoint, files: map[string]string{"/bin/busybox": "/bin/busybox"}, links: map[string]string{}}
		for _, a := range busyboxApplets {
			spec.links["/bin/"+a] = "busybox"
		}
		return spec
	}
	sh := func(spec *imageSpec) error {
		if err := addELF(spec, "/bin/dash", "/bin/sh"); err != nil {
			return fmt.Errorf("%s: %w", spec.ref, err)
		}
		return nil
	}
	listener, request := busybox(MCSListenerImage, "/usr/bin/socat"), busybox(MCSRequestImage)
	if err := errors.Join(sh(&listener), sh(&request)); err != nil {
		return nil, err
	}
	if err := addELF(&listener, "/usr/bin/socat", "/usr/bin/socat"); err != nil {
		return nil, fmt.Errorf("%s (make node-packages installs socat): %w", MCSListenerImage, err)
	}
	// OpenBSD's nc: the suite runs `nc -4 -v -w 2`, which busybox's lacks.
	if err := addELF(&request, "/bin/nc.openbsd", "/usr/bin/nc"); err != nil {
		return nil, fmt.Errorf("%s (make node-packages installs netcat-openbsd): %w", MCSRequestImage, err)
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		return nil, fmt.Errorf("the MCS conformance images (make node-packages installs busybox-static): %w", err)
	}
	return []imageSpec{listener, request}, nil
}

// writeImage writes spec as a one-layer image tarball at path.
func writeImage(dir string, spec imageSpec) (Image, error) {
	layer, err := imageLayer(spec)
	if err != nil {
		return Image{}, fmt.Errorf("image %s: %w", spec.ref, err)
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layer)), nil
	})
	if err != nil {
		return Image{}, err
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		return Image{}, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return Image{}, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = "amd64", "linux"
	cf.Config = v1.Config{
		Entrypoint: spec.entrypoint,
		User:       spec.user,
		Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"},
		WorkingDir: "/",
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return Image{}, err
	}
	tag, err := name.NewTag(spec.ref)
	if err != nil {
		return Image{}, err
	}
	out := Image{Ref: spec.ref, Path: filepath.Join(dir, strings.NewReplacer("/", "_", ":", "_").Replace(spec.ref)+".tar")}
	if err := tarball.WriteToFile(out.Path, tag, img); err != nil {
		return Image{}, fmt.Errorf("image %s: %w", spec.ref, err)
	}
	return out, nil
}

// imageLayer is the layer of spec: the usual top folders, the files and
// links, and /etc/passwd and /etc/group with root and the distroless
// nonroot user (65532).
func imageLayer(spec imageSpec) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	seen := map[string]bool{}
	addDir := func(dir string) error {
		var parts []string
		for d := strings.Trim(dir, "/"); d != "." && d != ""; d = path.Dir(d) {
			parts = append(parts, d)
		}
		slices.Reverse(parts)
		for _, d := range parts {
			if seen[d] {
				continue
			}
			seen[d] = true
			mode := int64(0o755)
			if d == "tmp" {
				mode = 0o1777
			}
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: mode}); err != nil {
				return err
			}
		}
		return nil
	}
	for _, d := range []string{"bin", "etc", "tmp", "proc", "sys", "dev", "root", "var", "run", "usr/local/bin"} {
		if err := addDir(d); err != nil {
			return nil, err
		}
	}
	addFile := func(name string, data []byte, mode int64) error {
		if err := addDir(path.Dir(name)); err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(name, "/"), Mode: mode, Size: int64(len(data))}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	for _, dst := range slices.Sorted(maps.Keys(spec.files)) {
		data, err := os.ReadFile(spec.files[dst])
		if err != nil {
			return nil, err
		}
		if err := addFile(dst, data, 0o755); err != nil {
			return nil, err
		}
	}
	for _, dst := range slices.Sorted(maps.Keys(spec.links)) {
		if err := addDir(path.Dir(dst)); err != nil {
			return nil, err
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: strings.TrimPrefix(dst, "/"), Linkname: spec.links[dst], Mode: 0o777}); err != nil {
			return nil, err
		}
	}
	if err := addFile("/etc/passwd", []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"), 0o644); err != nil {
		return nil, err
	}
	if err := addFile("/etc/group", []byte("root:x:0:\nnonroot:x:65532:\n"), 0o644); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// dockerStage is what the tests take from a stage of the Dockerfile: where
// it copies the built binaries, its entrypoint and its user. The images
// built here follow it, so they cannot drift from what `make images`
// builds; only the base layers (distroless, Debian) differ.
type dockerStage struct {
	binaries   []string
	binDir     string
	entrypoint []string
	user       string
}

// readDockerStage parses the stage named target of the Dockerfile.
func readDockerStage(dockerfile, target string) (dockerStage, error) {
	data, err := os.ReadFile(dockerfile)
	if err != nil {
		return dockerStage{}, err
	}
	var st dockerStage
	in := false
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "FROM":
			in = len(f) == 4 && strings.EqualFold(f[2], "AS") && f[3] == target
		case "COPY":
			if in && len(f) >= 4 && f[1] == "--from=build" {
				for _, src := range f[2 : len(f)-1] {
					st.binaries = append(st.binaries, path.Base(src))
				}
				st.binDir = strings.TrimSuffix(f[len(f)-1], "/")
			}
		case "ENTRYPOINT":
			if in {
				if err := json.Unmarshal([]byte(strings.TrimSpace(strings.TrimPrefix(sc.Text(), f[0]))), &st.entrypoint); err != nil {
					return st, fmt.Errorf("%s: ENTRYPOINT of %s: %w", dockerfile, target, err)
				}
			}
		case "USER":
			if in {
				st.user = f[1]
			}
		}
	}
	if len(st.binaries) == 0 || len(st.entrypoint) == 0 {
		return st, fmt.Errorf("%s: no stage %q with COPY --from=build and ENTRYPOINT", dockerfile, target)
	}
	return st, nil
}

// ImageRefs are the references the manifests give fleetmesh's images.
type ImageRefs struct {
	// Controller is the fleetmesh image (fleetmesh-controller and the
	// CLI). Its tag is the version the binaries are built as, and the init
	// image is built under the name the controller injects by default:
	// <registry>/fleetmesh-init:<tag>.
	Controller string
	// Proxy is the sidecar's and gateway's Envoy image, built from
	// bin/envoy and the libraries it links (e.g.
	// docker.io/envoyproxy/envoy:v1.40.0).
	Proxy string
}

// InitImageFor is the init image a controller of the image ref injects by
// default.
func InitImageFor(ref string) string {
	slash := strings.LastIndex(ref, "/")
	_, tag, _ := strings.Cut(ref[slash+1:], ":")
	return ref[:slash+1] + "fleetmesh-init:" + tag
}

// NodeImages builds, once per process, the images every test node loads:
// the pause, echo and CoreDNS images, the MCS conformance suite's, and
// fleetmesh's images under the references refs gives, built from the
// Dockerfile's stages and the binaries of Binaries.
func NodeImages(refs ImageRefs) ([]Image, error) {
	imagesMu.Lock()
	defer imagesMu.Unlock()
	key := refs.Controller + " " + refs.Proxy
	if imgs, ok := imagesBuilt[key]; ok {
		return imgs, nil
	}
	var specs []imageSpec
	for ref, prog := range map[string]string{PauseImage: "pause", EchoImage: "echo"} {
		bin, err := ImageProgram(prog)
		if err != nil {
			return nil, err
		}
		specs = append(specs, imageSpec{ref: ref, entrypoint: []string{"/" + prog}, files: map[string]string{"/" + prog: bin}})
	}
	specs = append(specs, imageSpec{ref: CoreDNSImage, entrypoint: []string{"/coredns"}, files: map[string]string{"/coredns": filepath.Join(AssetsDir(), "coredns")}})
	mcs, err := mcsConformanceImages()
	if err != nil {
		return nil, err
	}
	specs = append(specs, mcs...)
	if refs.Controller != "" {
		// A release's binaries carry its version, and the controller
		// injects the init image of that version.
		_, version, _ := strings.Cut(refs.Controller[strings.LastIndex(refs.Controller, "/")+1:], ":")
		bins, err := buildBinaries(version)
		if err != nil {
			return nil, err
		}
		for target, ref := range map[string]string{"fleetmesh": refs.Controller, "fleetmesh-init": InitImageFor(refs.Controller)} {
			st, err := readDockerStage(filepath.Join(RepoRoot(), "Dockerfile"), target)
			if err != nil {
				return nil, err
			}
			spec := imageSpec{ref: ref, entrypoint: st.entrypoint, user: st.user, files: map[string]string{}, links: map[string]string{}}
			for _, b := range st.binaries {
				spec.files[st.binDir+"/"+b] = filepath.Join(bins, b)
			}
			if target == "fleetmesh-init" {
				// What the Dockerfile's `apt-get install iptables` brings.
				if err := addIptables(&spec); err != nil {
					return nil, err
				}
			}
			specs = append(specs, spec)
		}
	}
	if refs.Proxy != "" {
		spec := imageSpec{ref: refs.Proxy, entrypoint: []string{"/usr/local/bin/envoy"}, files: map[string]string{}}
		if err := addELF(&spec, EnvoyBinary(), "/usr/local/bin/envoy"); err != nil {
			return nil, err
		}
		specs = append(specs, spec)
	}
	dir, err := os.MkdirTemp("", "fleetmesh-images-")
	if err != nil {
		return nil, err
	}
	onExit(func() { _ = os.RemoveAll(dir) })
	var imgs []Image
	for _, s := range specs {
		img, err := writeImage(dir, s)
		if err != nil {
			return nil, err
		}
		imgs = append(imgs, img)
	}
	imagesBuilt[key] = imgs
	return imgs, nil
}

var (
	imagesMu    sync.Mutex
	imagesBuilt = map[string][]Image{}
)

// addELF adds a dynamically linked program at dst and the shared
// libraries it loads (as ldd lists them) at their paths.
func addELF(spec *imageSpec, src, dst string) error {
	real, err := filepath.EvalSymlinks(src)
	if err != nil {
		return err
	}
	spec.files[dst] = real
	return addLibraries(spec, real)
}

// addLibraries adds the shared libraries file needs.
func addLibraries(spec *imageSpec, file string) error {
	out, err := exec.Command("ldd", file).Output()
	if err != nil {
		return fmt.Errorf("ldd %s: %w", file, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		var lib string
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			lib = f[2]
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			lib = f[0]
		default:
			continue
		}
		real, err := filepath.EvalSymlinks(lib)
		if err != nil {
			return err
		}
		spec.files[lib] = real
	}
	return nil
}

// addIptables adds this machine's iptables (Debian's, nft and legacy) with
// its extensions, as the Dockerfile's fleetmesh-init stage installs it.
func addIptables(spec *imageSpec) error {
	for _, multi := range []string{"xtables-nft-multi", "xtables-legacy-multi"} {
		if err := addELF(spec, "/usr/sbin/"+multi, "/usr/sbin/"+multi); err != nil {
			return fmt.Errorf("iptables for the init image (apt-get install iptables): %w", err)
		}
	}
	for _, name := range []string{"iptables", "iptables-restore", "iptables-save", "ip6tables", "ip6tables-restore", "ip6tables-save"} {
		spec.links["/usr/sbin/"+name] = "xtables-nft-multi"
		spec.links["/usr/sbin/"+strings.Replace(name, "tables", "tables-nft", 1)] = "xtables-nft-multi"
		spec.links["/usr/sbin/"+strings.Replace(name, "tables", "tables-legacy", 1)] = "xtables-legacy-multi"
	}
	exts, err := filepath.Glob("/usr/lib/x86_64-linux-gnu/xtables/*.so")
	if err != nil {
		return err
	}
	for _, e := range exts {
		spec.files[e] = e
		if err := addLibraries(spec, e); err != nil {
			return err
		}
	}
	for _, etc := range []string{"/etc/protocols", "/etc/services", "/etc/ethertypes"} {
		if _, err := os.Stat(etc); err == nil {
			spec.files[etc] = etc
		}
	}
	return nil
}
