package redirect

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func TestRulesGolden(t *testing.T) {
	withExclusions := DefaultConfig()
	withExclusions.ExcludeInboundPorts = append(withExclusions.ExcludeInboundPorts, 8081, 9090, 8081)
	withExclusions.ExcludeOutboundPorts = append(withExclusions.ExcludeOutboundPorts, 5432)
	withExclusions.ExcludeOutboundCIDRs = []netip.Prefix{netip.MustParsePrefix("10.96.0.0/12"), netip.MustParsePrefix("169.254.169.254/32")}
	withExclusions.ProxyGID = 1337
	outboundOnly := DefaultConfig()
	outboundOnly.CaptureInbound = false
	for name, c := range map[string]Config{
		"default":         DefaultConfig(),
		"with-exclusions": withExclusions,
		"outbound-only":   outboundOnly,
	} {
		t.Run(name, func(t *testing.T) {
			got, err := Rules(c)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", name+".rules")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (go test ./pkg/redirect -update writes it)", err)
			}
			if got != string(want) {
				t.Errorf("rules differ from %s (go test ./pkg/redirect -update rewrites it):\n%s", path, got)
			}
		})
	}
}

func TestRulesRefuseAConfigThatCannotWork(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(*Config)
		field string
	}{
		{"no outbound port", func(c *Config) { c.OutboundPort = 0 }, "outboundPort"},
		{"the proxy as root", func(c *Config) { c.ProxyUID = 0 }, "proxyUID"},
		{"one port for both directions", func(c *Config) { c.InboundPort = c.OutboundPort }, "inboundPort"},
		{"the inbound capture port excluded", func(c *Config) { c.ExcludeInboundPorts = []uint16{c.InboundPort} }, "excludeInboundPorts[0]"},
		{"an IPv6 range", func(c *Config) { c.ExcludeOutboundCIDRs = []netip.Prefix{netip.MustParsePrefix("fd00::/8")} }, "excludeOutboundCIDRs[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.edit(&c)
			if _, err := Rules(c); err == nil || !strings.HasPrefix(err.Error(), tc.field) {
				t.Fatalf("got %v, want an error naming %s", err, tc.field)
			}
		})
	}
}

func TestParseAnnotationValues(t *testing.T) {
	ports, err := ParsePorts(" 80, 443,,8080 ")
	if err != nil || FormatPorts(ports) != "80,443,8080" {
		t.Errorf("ParsePorts: %v %v", ports, err)
	}
	for _, bad := range []string{"http", "0", "70000", "80;443"} {
		if _, err := ParsePorts(bad); err == nil {
			t.Errorf("ParsePorts(%q) accepted it", bad)
		}
	}
	cidrs, err := ParseCIDRs("10.0.0.0/8, 169.254.169.254")
	if err != nil || len(cidrs) != 2 || cidrs[1].String() != "169.254.169.254/32" {
		t.Errorf("ParseCIDRs: %v %v", cidrs, err)
	}
	for _, bad := range []string{"10.0.0.0/33", "example.com", "fd00::/8"} {
		if _, err := ParseCIDRs(bad); err == nil {
			t.Errorf("ParseCIDRs(%q) accepted it", bad)
		}
	}
}
