package e2e

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/fleetmesh/fleetmesh/pkg/xds/syncz"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
	"github.com/fleetmesh/fleetmesh/pkg/bootstrap"
	"github.com/fleetmesh/fleetmesh/test/testenv"
)

// The fleet every test of the package shares, as the article's: cluster-1,
// cluster-2 and cluster-3, each a real API server with a real
// kube-controller-manager, a fleetmesh control plane and a real Envoy
// gateway on 10.244.0.8N:8N. cluster-1 and cluster-2 share the network
// "east" (pod to pod); cluster-3 is on a network of its own (through its
// gateway). Tests use namespaces of their own.
var (
	fleet         *testenv.Fleet
	controlPlanes = map[string]*testenv.ControlPlane{}
	gateways      = map[string]*testenv.Envoy{}
)

// network is each cluster's network in the shared fleet.
var network = map[string]string{"cluster-1": "east", "cluster-2": "east", "cluster-3": ""}

func TestMain(m *testing.M) {
	testenv.Main(m, func() int {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var err error
		fleet, err = testenv.StartFleet(ctx, testenv.FleetOptions{Clusters: []string{"cluster-1", "cluster-2", "cluster-3"}})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer func() { _ = fleet.Stop() }()
		if err := startFleetMesh(ctx); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		code := m.Run()
		// Stop what watches the API servers before they stop: a server
		// with open watches waits a minute for them to end.
		for _, g := range gateways {
			_ = g.Stop()
		}
		cancel()
		for _, cp := range controlPlanes {
			_ = cp.Stop()
		}
		return code
	})
}

// startFleetMesh mirrors the fleet's Clusters into every member (as the
// federation does), and starts each member's control plane and gateway.
func startFleetMesh(ctx context.Context) error {
	for _, c := range fleet.Clusters {
		for _, o := range fleet.Clusters {
			obj := &fmv1alpha1.Cluster{
				ObjectMeta: metav1.ObjectMeta{Name: o.Name},
				Spec:       fmv1alpha1.ClusterSpec{GatewayHost: gatewayIP(o), GatewayPort: gatewayPort(o), Network: network[o.Name], Mirrored: true},
			}
			if err := c.Client.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
				return err
			}
		}
		run, err := c.StartControlPlane(ctx, testenv.ControlPlaneOptions{
			Args:      []string{"--cluster-name=" + c.Name, "--debounce-after=50ms", "--debounce-max=500ms"},
			WaitReady: true,
		})
		if err != nil {
			return err
		}
		controlPlanes[c.Name] = run
		if err := testenv.AddAddress(gatewayIP(c)); err != nil {
			return err
		}
		gw, err := startEnvoy(ctx, bootstrap.Options{
			NodeID: "gateway." + c.Name, Role: "gateway", Namespace: "fleetmesh", Cluster: c.Name, IP: gatewayIP(c),
		}, run)
		if err != nil {
			return err
		}
		gateways[c.Name] = gw
	}
	return nil
}

// proxiesOf is what a control plane's /debug/syncz says of its proxies
// (none if it cannot be read).
func proxiesOf(cp *testenv.ControlPlane) []syncz.ProxyStatus {
	proxies, _ := cp.Proxies()
	return proxies
}

// startEnvoy starts a real Envoy bootstrapped to a control plane and waits
// until it has its first configuration.
func startEnvoy(ctx context.Context, o bootstrap.Options, cp *testenv.ControlPlane) (*testenv.Envoy, error) {
	port, err := testenv.FreePort()
	if err != nil {
		return nil, err
	}
	o.XDSAddress = cp.XDSAddress
	o.AdminAddress = fmt.Sprintf("127.0.0.1:%d", port)
	cfg, err := bootstrap.JSON(o)
	if err != nil {
		return nil, err
	}
	e, err := testenv.StartEnvoy(o.NodeID, cfg, port)
	if err != nil {
		return nil, err
	}
	if err := e.WaitReady(ctx, 30*time.Second); err != nil {
		_ = e.Stop()
		return nil, fmt.Errorf("envoy %s never became ready: %w\n%s", o.NodeID, err, e.Log())
	}
	return e, nil
}
