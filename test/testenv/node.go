package testenv

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// A real node runs pods for real: Debian's containerd and runc with the
// CNI bridge plugin, a kubelet and a kube-proxy built from source. Each
// node has a network and a mount namespace of its own, joined to the test
// network by a veth pair:
//
//	test network  nodeRouterIP(i) = 10.250.<i>.1  <-veth->  10.250.<i>.2 = node IP
//	pods of node i                  10.<100+i>.0.0/24, routed via the node IP
//	LoadBalancer IPs of cluster i   10.<100+i>.1.0/24, routed via the node IP
//
// The node's mount namespace has private /run, /var/lib and /var/log and
// private copies of the host-wide sysctls the kubelet writes
// (vm.overcommit_memory, kernel.panic, kernel.panic_on_oops), so nodes
// coexist and leave the machine as they found it. Every process of a node
// (its daemons, the containerd shims, the pods) lives in the cgroup
// fleetmesh-<test pid>/<node>, which Stop, and the wrapper outside the
// test network after a crash, kill and remove.

// Node is one real node of a cluster.
type Node struct {
	// Name is the Node object's name.
	Name string
	// IP is the node's address (its InternalIP).
	IP string
	// PodCIDR is the range its pods' addresses come from.
	PodCIDR string
	// LoadBalancerCIDR is the range the harness gives the cluster's
	// LoadBalancer Services (see serveLoadBalancers): the test network
	// routes it to the node, whose kube-proxy takes it from there.
	LoadBalancerCIDR string

	cluster *Cluster
	dir     string
	holder  *exec.Cmd
	cgroup  string
	daemons []*daemon
	// veth is the test network's end of the node's link.
	veth string
	// featureGates is the kubelet's --feature-gates (FleetOptions.FeatureGates).
	featureGates string
}

// daemon is a process of a node.
type daemon struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

// nodeSysctls are the host-wide sysctls the kubelet sets: each node gets
// a private copy.
var nodeSysctls = []string{"vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops"}

// cgroupControllers are the cgroup v1 hierarchies the kubelet uses.
var cgroupControllers = []string{"cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "systemd"}

// cgroupBase is the cgroup of every node this test process starts.
func cgroupBase() string { return nodeCgroupsOf(os.Getpid()) }

func nodeCgroupsOf(pid int) string { return fmt.Sprintf("fleetmesh-%d", pid) }

// removeNodeCgroups kills whatever the test process pid left in its
// nodes' cgroups and removes them.
func removeNodeCgroups(pid int) {
	if _, err := os.Stat(filepath.Join("/sys/fs/cgroup/pids", nodeCgroupsOf(pid))); err == nil {
		if err := killCgroup(nodeCgroupsOf(pid)); err != nil {
			fmt.Fprintf(os.Stderr, "testenv: %v\n", err)
		}
	}
}

// NodeRouterIP is the test network's address on node i's link.
func nodeRouterIP(i int) string { return fmt.Sprintf("10.250.%d.1", i) }

// startNode starts the real node of cluster c, loads images and waits
// until the Node is Ready.
func (c *Cluster) startNode(ctx context.Context, images []Image, kubeletKubeconfig, proxyKubeconfig string) (*Node, error) {
	n := &Node{
		Name:    c.NodeName,
		IP:      fmt.Sprintf("10.250.%d.2", c.Index),
		PodCIDR: fmt.Sprintf("10.%d.0.0/24", 100+c.Index),
		// Next to the pods: the test network routes 10.<100+i>.0.0/16,
		// everything of the cluster, to its node.
		LoadBalancerCIDR: fmt.Sprintf("10.%d.1.0/24", 100+c.Index),
		cluster:          c,
		dir:              filepath.Join(c.dir, "node"),
		cgroup:           cgroupBase() + "/" + c.NodeName,
		veth:             fmt.Sprintf("fmnode%d", c.Index),
		featureGates:     c.featureGates,
	}
	if c.Index > 150 {
		return nil, fmt.Errorf("node of %s: cluster index %d has no pod range left", c.Name, c.Index)
	}
	if err := n.start(ctx, images, kubeletKubeconfig, proxyKubeconfig); err != nil {
		return n, fmt.Errorf("node %s of %s: %w", n.Name, c.Name, err)
	}
	return n, nil
}

func (n *Node) start(ctx context.Context, images []Image, kubeletKubeconfig, proxyKubeconfig string) error {
	for _, d := range []string{"run/containerd", "var-lib", "var-log", "sysctl", "cni/conf", "cni/data", "containerd", "kubelet", "logs"} {
		if err := os.MkdirAll(filepath.Join(n.dir, d), 0o755); err != nil {
			return err
		}
	}
	for _, s := range nodeSysctls {
		v, err := os.ReadFile(filepath.Join("/proc/sys", s))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(n.dir, "sysctl", filepath.Base(s)), v, 0o644); err != nil {
			return err
		}
	}
	onExitOnce(cgroupBase(), func() { removeNodeCgroups(os.Getpid()) })
	if err := makeCgroup(n.cgroup+"/pods", cgroupControllers); err != nil {
		return err
	}
	if err := makeCgroup(n.cgroup+"/system", []string{"pids", "memory"}); err != nil {
		return err
	}
	// The holder keeps the node's namespaces; every daemon joins them.
	n.holder = n.inCgroup("unshare", "--net", "--mount", "--propagation", "private", "--", "sleep", "infinity")
	if err := n.holder.Start(); err != nil {
		return fmt.Errorf("unshare: %w", err)
	}
	go func() { _ = n.holder.Wait() }()
	// The holder is a shell until it has joined its cgroup and unshare has
	// made the namespaces: wait for them.
	if err := Eventually(ctx, 10*time.Second, func(context.Context) (bool, error) {
		own, _ := os.Readlink("/proc/self/ns/mnt")
		its, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", n.holder.Process.Pid))
		return err == nil && its != own, err
	}); err != nil {
		return fmt.Errorf("the node's namespaces: %w", err)
	}
	if err := n.setUpNamespaces(); err != nil {
		return err
	}
	if err := n.writeConfigs(kubeletKubeconfig); err != nil {
		return err
	}
	sock := filepath.Join(n.dir, "containerd", "containerd.sock")
	if err := n.run("containerd", "containerd", "--config", filepath.Join(n.dir, "containerd.toml")); err != nil {
		return err
	}
	if err := Eventually(ctx, 30*time.Second, func(context.Context) (bool, error) {
		return exec.Command("ctr", "-a", sock, "version").Run() == nil, nil
	}); err != nil {
		return fmt.Errorf("containerd did not start: %w\n%s", err, n.Log("containerd"))
	}
	for _, img := range images {
		if out, err := exec.Command("ctr", "-a", sock, "-n", "k8s.io", "images", "import", img.Path).CombinedOutput(); err != nil {
			return fmt.Errorf("ctr images import %s: %w: %s", img.Ref, err, out)
		}
	}
	kubelet := []string{
		filepath.Join(AssetsDir(), "kubelet"),
		"--config=" + filepath.Join(n.dir, "kubelet.yaml"),
		"--kubeconfig=" + kubeletKubeconfig,
		"--root-dir=/var/lib/kubelet",
		"--node-ip=" + n.IP,
		"--hostname-override=" + n.Name,
		"--node-labels=topology.kubernetes.io/zone=default,topology.kubernetes.io/region=default",
		"--v=2",
	}
	if n.featureGates != "" {
		kubelet = append(kubelet, "--feature-gates="+n.featureGates)
	}
	if err := n.run("kubelet", kubelet...); err != nil {
		return err
	}
	if err := n.run("kube-proxy", filepath.Join(AssetsDir(), "kube-proxy"),
		"--kubeconfig="+proxyKubeconfig,
		"--hostname-override="+n.Name,
		"--proxy-mode=iptables",
		// Pods on one bridge reach each other's Services: the reply must
		// come back through the node to be un-NATed.
		"--masquerade-all=true",
		"--cluster-cidr="+n.PodCIDR,
		// The conntrack table and its timeouts are the host's, not the
		// node's: leave them alone.
		"--conntrack-max-per-core=0",
		"--conntrack-tcp-timeout-established=0",
		"--conntrack-tcp-timeout-close-wait=0",
		"--metrics-bind-address=127.0.0.1:10249",
		"--healthz-bind-address=127.0.0.1:10256",
	); err != nil {
		return err
	}
	err := Eventually(ctx, 60*time.Second, func(ctx context.Context) (bool, error) {
		for _, d := range n.daemons {
			select {
			case <-d.done:
				return false, fmt.Errorf("%s exited:\n%s", d.name, n.Log(d.name))
			default:
			}
		}
		var node corev1.Node
		if err := n.cluster.Client.Get(ctx, types.NamespacedName{Name: n.Name}, &node); err != nil {
			return false, err
		}
		for _, cond := range node.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
				return true, nil
			}
		}
		return false, errors.New("the Node is not Ready")
	})
	if err != nil {
		return fmt.Errorf("%w\nkubelet:\n%s", err, n.Log("kubelet"))
	}
	return nil
}

// setUpNamespaces links the node's network namespace to the test network
// and mounts its private folders.
func (n *Node) setUpNamespaces() error {
	pid := strconv.Itoa(n.holder.Process.Pid)
	router := nodeRouterIP(n.cluster.Index)
	own, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return err
	}
	// Never mount over the host's folders: refuse unless in a namespace
	// of the node's own.
	script := fmt.Sprintf(`set -e
[ "$(readlink /proc/self/ns/mnt)" != %q ] || { echo "not in the node's mount namespace"; exit 1; }
`, own) + fmt.Sprintf(`mount --bind %[1]s/run /run
mount --bind %[1]s/var-lib /var/lib
mount --bind %[1]s/var-log /var/log
`, n.dir)
	for _, s := range nodeSysctls {
		script += fmt.Sprintf("mount --bind %s/sysctl/%s /proc/sys/%s\n", n.dir, filepath.Base(s), s)
	}
	script += fmt.Sprintf(`ip link set lo up
ip addr add %[1]s/24 dev eth0
ip link set eth0 up
ip route add default via %[2]s
ip route add blackhole %[3]s
echo 1 > /proc/sys/net/ipv4/ip_forward
`, n.IP, router, n.LoadBalancerCIDR)
	steps := [][]string{
		{"ip", "link", "add", n.veth, "type", "veth", "peer", "name", "eth0", "netns", pid},
		{"ip", "addr", "add", router + "/24", "dev", n.veth},
		{"ip", "link", "set", n.veth, "up"},
		{"nsenter", "-t", pid, "-n", "-m", "--", "sh", "-c", script},
		{"ip", "route", "replace", n.clusterCIDR(), "via", n.IP},
	}
	for _, s := range steps {
		if out, err := exec.Command(s[0], s[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %w: %s", strings.Join(s, " "), err, out)
		}
	}
	// The test network forwards between nodes (pods of different clusters
	// reach each other only as the tests route them).
	return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644)
}

// writeConfigs writes containerd's, the CNI's and the kubelet's configuration.
func (n *Node) writeConfigs(kubeletKubeconfig string) error {
	ctrd := fmt.Sprintf(`version = 2
root = "%[1]s/containerd/root"
state = "%[1]s/containerd/state"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "%[1]s/containerd/containerd.sock"

[ttrpc]
  address = "%[1]s/containerd/containerd.sock.ttrpc"

[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = %[2]q
    enable_selinux = false
    # The sandbox has no CAP_SYS_RESOURCE: without this every pod fails
    # with "can't get final child's PID from pipe".
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    disable_apparmor = true
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = false
          Root = "%[1]s/containerd/runc"
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "%[1]s/cni/conf"
      max_conf_num = 1
`, n.dir, PauseImage)
	cni := fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": "fleetmesh-test",
  "plugins": [{
    "type": "bridge",
    "bridge": "cni0",
    "isGateway": true,
    "ipMasq": false,
    "hairpinMode": true,
    "ipam": {
      "type": "host-local",
      "dataDir": "%s/cni/data",
      "ranges": [[{"subnet": %q}]],
      "routes": [{"dst": "0.0.0.0/0"}]
    }
  }, {
    "type": "portmap",
    "capabilities": {"portMappings": true}
  }]
}
`, n.dir, n.PodCIDR)
	kubelet := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %[2]s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization:
  mode: AlwaysAllow
cgroupDriver: cgroupfs
cgroupRoot: /%[3]s/pods
cgroupsPerQOS: true
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://%[1]s/containerd/containerd.sock
imageServiceEndpoint: unix://%[1]s/containerd/containerd.sock
podLogsDir: %[1]s/var-log/pods
resolvConf: %[1]s/resolv.conf
clusterDomain: cluster.local
clusterDNS: [%[4]s]
evictionHard:
  memory.available: "1Mi"
  nodefs.available: "1%%"
  imagefs.available: "1%%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
registerNode: true
syncFrequency: 10s
fileCheckFrequency: 20s
nodeStatusUpdateFrequency: 10s
maxPods: 60
`, n.dir, n.IP, n.cgroup, ClusterDNSIP)
	for file, data := range map[string]string{
		"containerd.toml":                ctrd,
		"cni/conf/10-fleetmesh.conflist": cni,
		"kubelet.yaml":                   kubelet,
		"resolv.conf":                    "",
	} {
		if err := os.WriteFile(filepath.Join(n.dir, file), []byte(data), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// inCgroup is a command that runs, from its start, in the node's system
// cgroup.
func (n *Node) inCgroup(args ...string) *exec.Cmd {
	script := fmt.Sprintf(`for c in pids memory; do echo $$ > /sys/fs/cgroup/$c/%s/system/cgroup.procs; done; exec "$@"`, n.cgroup)
	return exec.Command("sh", append([]string{"-c", script, "sh"}, args...)...)
}

// run starts a daemon in the node's namespaces and cgroup.
func (n *Node) run(name string, args ...string) error {
	pid := strconv.Itoa(n.holder.Process.Pid)
	d := &daemon{name: name, done: make(chan struct{}), log: filepath.Join(n.dir, "logs", name+".log")}
	d.cmd = n.inCgroup(append([]string{"nsenter", "-t", pid, "-n", "-m", "--"}, args...)...)
	out, err := os.Create(d.log)
	if err != nil {
		return err
	}
	d.cmd.Stdout, d.cmd.Stderr = out, out
	if err := d.cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("start %s: %w", name, err)
	}
	go func() { _ = d.cmd.Wait(); out.Close(); close(d.done) }()
	n.daemons = append(n.daemons, d)
	return nil
}

// ClusterDNSIP is the kube-dns Service's ClusterIP in a cluster with a
// real node: CoreDNS (coredns.yaml).
const ClusterDNSIP = "10.96.0.10"

//go:embed coredns.yaml
var coreDNSManifest string

// startDNS runs the cluster DNS, CoreDNS as kubeadm installs it, and
// waits until it answers.
func (c *Cluster) startDNS(ctx context.Context) error {
	if out, err := c.Kubectl(strings.NewReader(coreDNSManifest), "apply", "-f", "-"); err != nil {
		return fmt.Errorf("install CoreDNS: %w: %s", err, out)
	}
	err := Eventually(ctx, 60*time.Second, func(ctx context.Context) (bool, error) {
		var d appsv1.Deployment
		if err := c.Client.Get(ctx, types.NamespacedName{Namespace: "kube-system", Name: "coredns"}, &d); err != nil {
			return false, err
		}
		return d.Status.ReadyReplicas == 1, errors.New("CoreDNS is not Ready")
	})
	if err != nil {
		describe, _ := c.Kubectl(nil, "-n", "kube-system", "describe", "pods")
		logs, _ := c.Kubectl(nil, "-n", "kube-system", "logs", "deploy/coredns", "--previous", "--tail", "20")
		describe += "\ncoredns:\n" + logs
		var kubelet string
		if c.Node != nil {
			kubelet = c.Node.Log("kubelet")
		}
		return fmt.Errorf("%w\n%s\nkubelet:\n%s", err, describe, kubelet)
	}
	return nil
}

// Log returns the end of a daemon's log: containerd, kubelet or kube-proxy.
func (n *Node) Log(name string) string {
	data, _ := os.ReadFile(filepath.Join(n.dir, "logs", name+".log"))
	if len(data) > 8000 {
		data = data[len(data)-8000:]
	}
	return string(data)
}

// Stop kills every process of the node (daemons, shims and pods), removes
// its link, routes and cgroups. The node's mounts go with its namespace.
func (n *Node) Stop() error {
	err := killCgroup(n.cgroup)
	_ = exec.Command("ip", "link", "del", n.veth).Run()
	_ = exec.Command("ip", "route", "del", n.clusterCIDR()).Run()
	return err
}

// clusterCIDR holds the node's pod and LoadBalancer ranges.
func (n *Node) clusterCIDR() string { return fmt.Sprintf("10.%d.0.0/16", 100+n.cluster.Index) }

// makeCgroup creates the cgroup rel (and its parents) in each
// hierarchy; cpuset folders get their parent's CPUs and memory nodes.
func makeCgroup(rel string, controllers []string) error {
	for _, ctl := range controllers {
		root := filepath.Join("/sys/fs/cgroup", ctl)
		if _, err := os.Stat(root); err != nil {
			continue
		}
		dir := root
		for _, part := range strings.Split(rel, "/") {
			parent := dir
			dir = filepath.Join(dir, part)
			if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("cgroup %s: %w", dir, err)
			}
			if ctl == "cpuset" {
				for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
					if cur, _ := os.ReadFile(filepath.Join(dir, f)); strings.TrimSpace(string(cur)) != "" {
						continue
					}
					v, err := os.ReadFile(filepath.Join(parent, f))
					if err != nil {
						return err
					}
					if err := os.WriteFile(filepath.Join(dir, f), v, 0o644); err != nil {
						return fmt.Errorf("cgroup %s/%s: %w", dir, f, err)
					}
				}
			}
		}
	}
	return nil
}

// killCgroup kills every process in the cgroup rel and below (by the pids
// hierarchy, where all of them are), then removes rel from every hierarchy.
func killCgroup(rel string) error {
	pidsDir := filepath.Join("/sys/fs/cgroup/pids", rel)
	deadline := time.Now().Add(30 * time.Second)
	for {
		left := 0
		_ = filepath.WalkDir(pidsDir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			data, _ := os.ReadFile(filepath.Join(p, "cgroup.procs"))
			for _, f := range strings.Fields(string(data)) {
				if pid, err := strconv.Atoi(f); err == nil {
					left++
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
			return nil
		})
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s: %d processes survive SIGKILL", rel, left)
		}
		time.Sleep(50 * time.Millisecond)
	}
	var errs []error
	// runc also makes the containers' cgroups in the v2 hierarchy of a
	// hybrid host.
	for _, ctl := range append(cgroupControllers, "unified") {
		root := filepath.Join("/sys/fs/cgroup", ctl, rel)
		var dirs []string
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		slices.Reverse(dirs)
		for _, d := range dirs {
			if err := syscall.Rmdir(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
			}
		}
	}
	return errors.Join(errs...)
}
