package bootstrap

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/structpb"
	certutil "k8s.io/client-go/util/cert"

	"github.com/fleetmesh/fleetmesh/test/testenv"
)

// TestBootstrapLoadsInEnvoy checks the bootstrap with Envoy's proto
// validation (JSON does) and the real Envoy's --mode validate.
func TestBootstrapLoadsInEnvoy(t *testing.T) {
	for name, o := range map[string]Options{
		"sidecar over delta, xDS by IP": {
			NodeID: "curl-1.curl", Role: "sidecar", Namespace: "curl", Pod: "curl-1", ServiceAccount: "curl", Cluster: "cluster-2",
			XDSAddress: "10.244.0.2:15010", AdminAddress: "127.0.0.1:15000", Delta: true,
		},
		"injected sidecar with a health port": {
			NodeID: "curl-1.curl", Role: "sidecar", Namespace: "curl", Pod: "curl-1", Cluster: "cluster-2", Intercept: true,
			XDSAddress: "fleetmesh-controller.fleetmesh-system.svc:15010", AdminAddress: "127.0.0.1:15000", Delta: true, HealthPort: 15021,
		},
		"sidecar with a token instead of a certificate": {
			NodeID: "curl-1.curl", Role: "sidecar", Namespace: "curl", Pod: "curl-1", ServiceAccount: "curl", Cluster: "cluster-2",
			XDSAddress: "fleetmesh-controller.fleetmesh-system.svc:15010", AdminAddress: "127.0.0.1:15000", Delta: true, HealthPort: 15021,
			XDSServerName: "fleetmesh-controller.fleetmesh-system.svc", Token: true,
		},
		"gateway over sotw, xDS by Service name": {
			NodeID: "gw-1.fleetmesh", Role: "gateway", Cluster: "cluster-1", IP: "10.244.0.81",
			XDSAddress: "fleetmesh.fleetmesh-system.svc:15010", AdminAddress: "127.0.0.1:15001",
		},
	} {
		t.Run(name, func(t *testing.T) {
			if o.Token {
				// Envoy reads the roots and the token as it loads.
				o.IdentityDir = t.TempDir()
				roots, _, err := certutil.GenerateSelfSignedCertKey("fleetmesh-controller.fleetmesh-system.svc", nil, nil)
				if err != nil {
					t.Fatal(err)
				}
				for file, data := range map[string][]byte{RootsFile: roots, TokenFile: []byte("a-token")} {
					if err := os.WriteFile(filepath.Join(o.IdentityDir, file), data, 0o600); err != nil {
						t.Fatal(err)
					}
				}
			}
			data, err := JSON(o)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "bootstrap.json")
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(testenv.EnvoyBinary(), "--mode", "validate", "--use-dynamic-base-id", "-c", path).CombinedOutput()
			if err != nil {
				t.Fatalf("Envoy refused the bootstrap: %v\n%s", err, out)
			}
			for _, want := range []string{`"role":"` + o.Role + `"`, `"id":"` + o.NodeID + `"`} {
				if !strings.Contains(string(data), want) {
					t.Errorf("bootstrap lacks %s", want)
				}
			}
		})
	}
}

func TestBadOptionsAreRefused(t *testing.T) {
	for name, o := range map[string]Options{
		"no node id":                    {Role: "sidecar", XDSAddress: "127.0.0.1:15010", AdminAddress: "127.0.0.1:15000"},
		"unknown role":                  {NodeID: "x", Role: "grpc", XDSAddress: "127.0.0.1:15010", AdminAddress: "127.0.0.1:15000"},
		"no xds port":                   {NodeID: "x", Role: "sidecar", XDSAddress: "127.0.0.1", AdminAddress: "127.0.0.1:15000"},
		"a token without its directory": {NodeID: "x", Role: "sidecar", XDSAddress: "127.0.0.1:15010", AdminAddress: "127.0.0.1:15000", Token: true, XDSServerName: "x"},
	} {
		if _, err := JSON(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestNodeMetadataIsWrittenAndReadAsOneType(t *testing.T) {
	want := NodeMetadata{
		Role: "gateway", Namespace: "fleetmesh-system", Pod: "gw-1", ServiceAccount: "fleetmesh-gateway", Cluster: "cluster-1",
		IP: "10.0.0.1", AppIP: "127.0.0.1", Interception: InterceptionIPTables, IdentityDir: "/identity", ListenPort: "8080",
	}
	s, err := want.Struct()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReadNodeMetadata(s)
	if err != nil || got != want {
		t.Fatalf("read back %+v, %v; want %+v", got, err, want)
	}
	bad, _ := structpb.NewStruct(map[string]any{"role": "gateway", "listenPort": 8080})
	if _, err := ReadNodeMetadata(bad); err == nil || !strings.Contains(err.Error(), "metadata.listenPort is not a string") {
		t.Errorf("a number for listenPort: %v, want an error naming it", err)
	}
}
