// Package redirect writes the iptables rules that route a meshed pod's TCP
// traffic through its Envoy sidecar: outbound connections to the sidecar's
// outbound capture port, inbound connections to its inbound capture port,
// except the proxy's own traffic and the ports and ranges excluded. Rules
// is pure (golden-tested); Apply hands them to iptables-restore in the
// pod's network namespace (cmd/fleetmesh-init, the injected init
// container).
package redirect

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"

	"github.com/fleetmesh/fleetmesh/pkg/model"
)

// Default ports and identity of the sidecar, shared with injection. The
// capture ports are the model's, which the sidecar's listeners use.
const (
	DefaultOutboundPort = model.OutboundCapturePort
	DefaultInboundPort  = model.InboundCapturePort
	DefaultProxyUID     = 1337
	// DefaultAdminPort is Envoy's admin listener (on localhost).
	DefaultAdminPort = 15000
	// DefaultXDSPort is fleetmesh's ADS port.
	DefaultXDSPort = 15010
	// DefaultHealthPort is where the sidecar answers kubelet probes.
	DefaultHealthPort = 15021
)

// Config says what to capture.
type Config struct {
	// OutboundPort receives every captured outbound connection.
	OutboundPort uint16
	// InboundPort receives every captured inbound connection.
	InboundPort uint16
	// ProxyUID (and ProxyGID when set) is the sidecar's identity: its own
	// connections are never captured, or they would loop.
	ProxyUID uint32
	ProxyGID uint32
	// ExcludeInboundPorts reach the app directly (e.g. probes, admin).
	ExcludeInboundPorts []uint16
	// ExcludeOutboundPorts leave the pod directly.
	ExcludeOutboundPorts []uint16
	// ExcludeOutboundCIDRs are destinations reached directly.
	ExcludeOutboundCIDRs []netip.Prefix
	// CaptureInbound turns inbound capture on; outbound is always
	// captured.
	CaptureInbound bool
}

// DefaultConfig captures both directions, excluding Envoy's admin and
// health ports inbound and fleetmesh's xDS port outbound.
func DefaultConfig() Config {
	return Config{
		OutboundPort: DefaultOutboundPort, InboundPort: DefaultInboundPort, ProxyUID: DefaultProxyUID,
		ExcludeInboundPorts:  []uint16{DefaultAdminPort, DefaultHealthPort},
		ExcludeOutboundPorts: []uint16{DefaultXDSPort},
		CaptureInbound:       true,
	}
}

// Chains fleetmesh owns in the nat table.
const (
	chainInbound        = "FLEETMESH_INBOUND"
	chainInboundCapture = "FLEETMESH_IN_REDIRECT"
	chainOutput         = "FLEETMESH_OUTPUT"
	chainCapture        = "FLEETMESH_REDIRECT"
)

// Validate names the first field that cannot work.
func (c *Config) Validate() error {
	switch {
	case c.OutboundPort == 0:
		return errors.New("outboundPort: must be set")
	case c.CaptureInbound && c.InboundPort == 0:
		return errors.New("inboundPort: must be set when inbound traffic is captured")
	case c.CaptureInbound && c.InboundPort == c.OutboundPort:
		return fmt.Errorf("inboundPort: %d is also the outbound port", c.InboundPort)
	case c.ProxyUID == 0:
		return errors.New("proxyUID: 0 is root: every root process would bypass the proxy; run the proxy as its own user")
	}
	for i, p := range c.ExcludeOutboundCIDRs {
		if !p.IsValid() || !p.Addr().Is4() {
			return fmt.Errorf("excludeOutboundCIDRs[%d]: %v is not an IPv4 CIDR", i, p)
		}
	}
	for i, p := range c.ExcludeInboundPorts {
		if p == c.InboundPort && c.CaptureInbound {
			return fmt.Errorf("excludeInboundPorts[%d]: %d is the inbound capture port", i, p)
		}
	}
	return nil
}

// Rules returns the nat table in iptables-restore format. The table is
// written whole, so applying it twice (an init container restarting)
// leaves the same rules, not two copies.
func Rules(c Config) (string, error) {
	if err := c.Validate(); err != nil {
		return "", err
	}
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	line("*nat")
	line(":PREROUTING ACCEPT [0:0]")
	line(":INPUT ACCEPT [0:0]")
	line(":OUTPUT ACCEPT [0:0]")
	line(":POSTROUTING ACCEPT [0:0]")
	for _, ch := range []string{chainInbound, chainInboundCapture, chainOutput, chainCapture} {
		line(":%s - [0:0]", ch)
	}

	// Inbound: every TCP connection arriving at the pod goes to the
	// inbound capture port, except the excluded ports.
	if c.CaptureInbound {
		line("-A %s -p tcp -j REDIRECT --to-ports %d", chainInboundCapture, c.InboundPort)
		line("-A PREROUTING -p tcp -j %s", chainInbound)
		for _, p := range sortedPorts(c.ExcludeInboundPorts) {
			line("-A %s -p tcp --dport %d -j RETURN", chainInbound, p)
		}
		line("-A %s -p tcp -j %s", chainInbound, chainInboundCapture)
	}

	// Outbound: the app's TCP connections go to the outbound capture
	// port; the proxy's own, localhost and the excluded ones do not.
	line("-A %s -p tcp -j REDIRECT --to-ports %d", chainCapture, c.OutboundPort)
	line("-A OUTPUT -p tcp -j %s", chainOutput)
	line("-A %s -m owner --uid-owner %d -j RETURN", chainOutput, c.ProxyUID)
	if c.ProxyGID != 0 {
		line("-A %s -m owner --gid-owner %d -j RETURN", chainOutput, c.ProxyGID)
	}
	line("-A %s -d 127.0.0.1/32 -j RETURN", chainOutput)
	for _, p := range sortedPorts(c.ExcludeOutboundPorts) {
		line("-A %s -p tcp --dport %d -j RETURN", chainOutput, p)
	}
	cidrs := slices.Clone(c.ExcludeOutboundCIDRs)
	slices.SortFunc(cidrs, func(a, b netip.Prefix) int { return strings.Compare(a.String(), b.String()) })
	for _, p := range cidrs {
		line("-A %s -d %s -j RETURN", chainOutput, p.Masked())
	}
	line("-A %s -j %s", chainOutput, chainCapture)
	line("COMMIT")
	return b.String(), nil
}

func sortedPorts(ports []uint16) []uint16 {
	out := slices.Clone(ports)
	slices.Sort(out)
	return slices.Compact(out)
}

// ParsePorts reads a comma-separated port list ("80, 443"), as in the
// exclusion annotations; it names the bad entry.
func ParsePorts(s string) ([]uint16, error) {
	var out []uint16
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.ParseUint(f, 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("%q is not a port (1-65535)", f)
		}
		out = append(out, uint16(n))
	}
	return out, nil
}

// ParseCIDRs reads a comma-separated list of IPv4 CIDRs or addresses.
func ParseCIDRs(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			a, aerr := netip.ParseAddr(f)
			if aerr != nil {
				return nil, fmt.Errorf("%q is not a CIDR or an address", f)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if !p.Addr().Is4() {
			return nil, fmt.Errorf("%q: only IPv4 ranges are supported", f)
		}
		out = append(out, p)
	}
	return out, nil
}

// FormatPorts writes ports as ParsePorts reads them.
func FormatPorts(ports []uint16) string {
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = strconv.Itoa(int(p))
	}
	return strings.Join(s, ",")
}

// Apply loads the rules into the current network namespace's nat table
// with iptables-restore (the binary named, e.g. iptables-nft-restore).
func Apply(ctx context.Context, restore string, c Config) error {
	rules, err := Rules(c)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, restore)
	cmd.Stdin = strings.NewReader(rules)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w: %s", restore, err, strings.TrimSpace(out.String()))
	}
	return nil
}
