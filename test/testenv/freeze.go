package testenv

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// apiServerPID finds the cluster's kube-apiserver process by its secure
// port.
func (c *Cluster) apiServerPID() (int, error) {
	u, err := url.Parse(c.Config.Host)
	if err != nil {
		return 0, err
	}
	want := "--secure-port=" + u.Port()
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		cmdline, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if len(args) == 0 || filepath.Base(args[0]) != "kube-apiserver" {
			continue
		}
		for _, a := range args {
			if a == want {
				return strconv.Atoi(filepath.Base(d))
			}
		}
	}
	return 0, fmt.Errorf("no kube-apiserver with %s for %s", want, c.Name)
}

// FreezeAPIServer stops the cluster's API server process (SIGSTOP): every
// request to it hangs, as when a member's control plane is down or cut
// off, while it keeps its data, address and certificates for ThawAPIServer.
func (c *Cluster) FreezeAPIServer() error {
	pid, err := c.apiServerPID()
	if err != nil {
		return err
	}
	return syscall.Kill(pid, syscall.SIGSTOP)
}

// ThawAPIServer resumes a frozen API server (SIGCONT).
func (c *Cluster) ThawAPIServer() error {
	pid, err := c.apiServerPID()
	if err != nil {
		return err
	}
	return syscall.Kill(pid, syscall.SIGCONT)
}
