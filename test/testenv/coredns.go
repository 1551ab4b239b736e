package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/miekg/dns"
)

// CoreDNS is a CoreDNS process (bin/k8s/coredns, built from source as
// the API server is) answering on a loopback port from a cluster's API
// server, as the cluster's own CoreDNS would from inside it.
type CoreDNS struct {
	// Addr is where it answers, UDP and TCP (127.0.0.1:port).
	Addr string
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

// Corefile is kubeadm's Corefile for the cluster's CoreDNS run outside
// the cluster: on 127.0.0.1:port, its kubernetes plugin reading the
// cluster through the admin kubeconfig, no upstream (nothing leaves the
// machine), no cache (tests see changes at once).
func (c *Cluster) Corefile(port int) string {
	return fmt.Sprintf(`.:%d {
    bind 127.0.0.1
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig %s %s
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }
}
`, port, c.KubeconfigPath, c.Name)
}

// FreeDNSPort is a loopback port free for both UDP and TCP.
func FreeDNSPort() (int, error) {
	for range 20 {
		port, err := freePort()
		if err != nil {
			return 0, err
		}
		if u, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err == nil {
			u.Close()
			return port, nil
		}
	}
	return 0, errors.New("no loopback port is free for both UDP and TCP")
}

// StartCoreDNS runs CoreDNS with the Corefile, which serves 127.0.0.1 on
// port, and waits until it answers dns-version.cluster.local.
func StartCoreDNS(ctx context.Context, corefile string, port int) (*CoreDNS, error) {
	dir, err := os.MkdirTemp("", "fleetmesh-coredns-")
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "Corefile")
	if err := os.WriteFile(conf, []byte(corefile), 0o644); err != nil {
		return nil, err
	}
	d := &CoreDNS{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), done: make(chan struct{}), log: filepath.Join(dir, "coredns.log")}
	logFile, err := os.Create(d.log)
	if err != nil {
		return nil, err
	}
	d.cmd = exec.Command(filepath.Join(AssetsDir(), "coredns"), "-conf", conf)
	d.cmd.Stdout, d.cmd.Stderr = logFile, logFile
	if err := d.cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start CoreDNS: %w", err)
	}
	go func() { _ = d.cmd.Wait(); logFile.Close(); close(d.done) }()
	err = Eventually(ctx, 30*time.Second, func(ctx context.Context) (bool, error) {
		select {
		case <-d.done:
			return false, errors.New("CoreDNS exited")
		default:
		}
		r, err := d.Query(ctx, "dns-version.cluster.local.", dns.TypeTXT)
		return err == nil && r.Rcode == dns.RcodeSuccess, err
	})
	if err != nil {
		_ = d.Stop()
		return nil, fmt.Errorf("CoreDNS never answered: %w\n%s", err, d.Log())
	}
	return d, nil
}

// Query asks CoreDNS one question (name fully qualified).
func (d *CoreDNS) Query(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	c := &dns.Client{Timeout: 2 * time.Second}
	r, _, err := c.ExchangeContext(ctx, m, d.Addr)
	return r, err
}

// Log is what CoreDNS wrote.
func (d *CoreDNS) Log() string {
	b, _ := os.ReadFile(d.log)
	return string(b)
}

// Stop stops CoreDNS.
func (d *CoreDNS) Stop() error {
	if d.cmd.Process != nil {
		_ = d.cmd.Process.Kill()
	}
	<-d.done
	return nil
}
