package testenv

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// apiServerPID finds the cluster's kube-apiserver process by its secure
// port.
func (c *Cluster) apiServerPID() (int, error) {
	u, err := url.Parse(c.Config.Host)
	if err != nil {
		return 0, err
	}
	return findProcess("kube-apiserver", "--secure-port="+u.Port())
}

// etcdPID finds the cluster's etcd process by its client URL.
func (c *Cluster) etcdPID() (int, error) {
	etcd := c.env.ControlPlane.Etcd
	if etcd == nil || etcd.URL == nil {
		return 0, fmt.Errorf("%s: etcd is not started", c.Name)
	}
	return findProcess("etcd", "--listen-client-urls="+etcd.URL.String())
}

// findProcess is the process of the named binary that has arg among its
// arguments.
func findProcess(binary, arg string) (int, error) {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		cmdline, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if len(args) == 0 || filepath.Base(args[0]) != binary {
			continue
		}
		if slices.Contains(args, arg) {
			return strconv.Atoi(filepath.Base(d))
		}
	}
	return 0, fmt.Errorf("no %s with %s", binary, arg)
}

// ControlPlaneCPU is the CPU time the cluster's API server and its etcd
// have used so far, each.
func (c *Cluster) ControlPlaneCPU() (apiServer, etcd time.Duration, err error) {
	pid, err := c.apiServerPID()
	if err != nil {
		return 0, 0, err
	}
	if apiServer, err = processCPU(pid); err != nil {
		return 0, 0, err
	}
	if pid, err = c.etcdPID(); err != nil {
		return 0, 0, err
	}
	etcd, err = processCPU(pid)
	return apiServer, etcd, err
}

// processCPU is the user and system time a process has used, from
// /proc/<pid>/stat (fields 14 and 15, in clock ticks of 1/100 s).
func processCPU(pid int) (time.Duration, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may hold spaces: count after it.
	s := string(stat)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %q", pid, s)
	}
	user, err1 := strconv.ParseInt(fields[11], 10, 64)
	system, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %q", pid, s)
	}
	return time.Duration(user+system) * 10 * time.Millisecond, nil
}
