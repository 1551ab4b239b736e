package testenv

import "syscall"

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
