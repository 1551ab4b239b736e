package testenv

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// ManifestImages reads the image references of the member overlay as
// kustomize renders it: the controller's and the gateway's Envoy (the
// sidecar's too, by the controller's default).
func ManifestImages() (ImageRefs, error) {
	cmd := exec.Command(filepath.Join(AssetsDir(), "kubectl"), "kustomize", "manifests/member")
	cmd.Dir = RepoRoot()
	out, err := cmd.Output()
	if err != nil {
		return ImageRefs{}, fmt.Errorf("kubectl kustomize manifests/member: %w", err)
	}
	var refs ImageRefs
	for _, doc := range strings.Split(string(out), "\n---\n") {
		var d appsv1.Deployment
		if err := yaml.Unmarshal([]byte(doc), &d); err != nil || d.Kind != "Deployment" {
			continue
		}
		switch d.Name {
		case "fleetmesh-controller":
			refs.Controller = d.Spec.Template.Spec.Containers[0].Image
		case "fleetmesh-gateway":
			refs.Proxy = d.Spec.Template.Spec.Containers[0].Image
		}
	}
	if refs.Controller == "" || refs.Proxy == "" {
		return refs, errors.New("manifests/member: no fleetmesh-controller or fleetmesh-gateway Deployment")
	}
	return refs, nil
}

// WaitAvailable waits for a Deployment's replicas to be Ready and up to
// date; its error shows the namespace's pods and the Deployment's logs.
func (c *Cluster) WaitAvailable(ctx context.Context, ns, name string, replicas int32) error {
	var d appsv1.Deployment
	err := Eventually(ctx, 3*time.Minute, func(ctx context.Context) (bool, error) {
		if err := c.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &d); err != nil {
			return false, err
		}
		s := d.Status
		return s.ObservedGeneration == d.Generation && s.UpdatedReplicas == replicas && s.ReadyReplicas == replicas && s.Replicas == replicas,
			fmt.Errorf("%d replicas, %d updated, %d Ready", s.Replicas, s.UpdatedReplicas, s.ReadyReplicas)
	})
	if err != nil {
		describe, _ := c.Kubectl(nil, "-n", ns, "describe", "pods")
		var logs string
		if sel := d.Spec.Selector; sel != nil {
			var labels []string
			for k, v := range sel.MatchLabels {
				labels = append(labels, k+"="+v)
			}
			logs, _ = c.Kubectl(nil, "-n", ns, "logs", "--tail=30", "--prefix", "--all-containers", "-l", strings.Join(labels, ","))
		}
		return fmt.Errorf("deployment %s/%s in %s: %w\n%s\nlogs:\n%s", ns, name, c.Name, err, describe, logs)
	}
	return nil
}

// PodReady says whether a pod is Ready and not being deleted.
func PodReady(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil {
		return false
	}
	for _, cond := range p.Status.Conditions {
		if cond.Type == corev1.PodReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

// Memory is the resident memory of what this test process started, KiB.
type Memory struct {
	// ControlPlanes are the processes in the test network: etcd, the API
	// servers, controller managers and schedulers, this process.
	ControlPlanes int
	// Nodes are every real node's processes: containerd, kubelet,
	// kube-proxy, the shims and every pod.
	Nodes int
}

// MemoryInUse adds up the RSS of the test network's processes and of the
// real nodes' cgroups.
func MemoryInUse() Memory {
	own, _ := os.Readlink("/proc/self/ns/net")
	var m Memory
	seen := map[int]bool{}
	_ = filepath.WalkDir(filepath.Join("/sys/fs/cgroup/pids", cgroupBase()), func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		data, _ := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		for _, f := range strings.Fields(string(data)) {
			if pid, err := strconv.Atoi(f); err == nil && !seen[pid] {
				seen[pid] = true
				m.Nodes += rssOf(pid)
			}
		}
		return nil
	})
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil || seen[pid] {
			continue
		}
		if ns, err := os.Readlink(filepath.Join(d, "ns", "net")); err == nil && ns == own {
			m.ControlPlanes += rssOf(pid)
		}
	}
	return m
}

// rssOf is a process's VmRSS, KiB (0 if it is gone).
func rssOf(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			if n, err := strconv.Atoi(strings.Fields(line)[1]); err == nil {
				return n
			}
		}
	}
	return 0
}
