package model

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Validate reports every way the mesh is inconsistent, each error naming
// the field (services[3].ports[1].name: ...).
func (m *Mesh) Validate() error {
	p := m.Problems()
	errs := []error{p.Mesh}
	for i := range m.Services {
		errs = append(errs, p.Services[m.Services[i].Key()])
	}
	return errors.Join(errs...)
}

// Problems are what Problems found.
type Problems struct {
	// Mesh concerns the whole mesh: nothing of it can be published.
	Mesh error
	// Services are the problems of single services, by key.
	Services map[string]error
}

// Problems reports what is inconsistent, apart: what concerns the whole
// mesh (its clusters, the local cluster, a service listed twice), and
// what concerns one service, by its key, so a bad service can be left out
// while the others are published. Each error names its field.
func (m *Mesh) Problems() Problems {
	var errs []error
	bad := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
	}
	clusters := map[string]*Cluster{}
	keys := map[string]bool{}
	for i := range m.Clusters {
		c := &m.Clusters[i]
		path := fmt.Sprintf("clusters[%d]", i)
		switch {
		case c.Name == "":
			bad(path+".name", "must not be empty")
		case strings.Contains(c.Name, "/"):
			bad(path+".name", "%q must not contain /", c.Name)
		case clusters[c.Name] != nil:
			bad(path+".name", "%q is listed twice", c.Name)
		}
		for field, v := range map[string]string{"region": c.Region, "zone": c.Zone, "group": c.Group} {
			if strings.Contains(v, "/") {
				bad(path+"."+field, "%q must not contain /", v)
			}
		}
		if keys[c.Key()] {
			bad(path, "clusterKey %q is listed twice", c.Key())
		}
		keys[c.Key()] = true
		clusters[c.Name] = c
		if c.Gateway != nil {
			if !isIP(c.Gateway.IP) {
				bad(path+".gateway.ip", "%q is not an IP address", c.Gateway.IP)
			}
			if !validPort(c.Gateway.Port) {
				bad(path+".gateway.port", "%d is not a port (1-65535)", c.Gateway.Port)
			}
		}
	}
	if m.LocalCluster == "" {
		bad("localCluster", "must not be empty")
	} else if clusters[m.LocalCluster] == nil {
		bad("localCluster", "%q is not among clusters", m.LocalCluster)
	}

	services := map[string]bool{}
	perService := map[string]error{}
	for i := range m.Services {
		s := &m.Services[i]
		path := fmt.Sprintf("services[%d]", i)
		if s.Namespace == "" || s.Name == "" || services[s.Key()] {
			if s.Namespace == "" || s.Name == "" {
				bad(path, "namespace and name must not be empty")
			} else {
				bad(path, "service %s is listed twice", s.Key())
			}
			continue
		}
		services[s.Key()] = true
		var svcErrs []error
		bad := func(path, format string, args ...any) {
			svcErrs = append(svcErrs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
		}
		m.validateService(s, path, clusters, bad)
		if len(svcErrs) > 0 {
			perService[s.Key()] = errors.Join(svcErrs...)
		}
	}
	return Problems{Mesh: errors.Join(errs...), Services: perService}
}

// validateService checks one service of the mesh.
func (m *Mesh) validateService(s *Service, path string, clusters map[string]*Cluster, bad func(path, format string, args ...any)) {
	for j, vip := range s.VIPs {
		if !isIP(vip) {
			bad(fmt.Sprintf("%s.vips[%d]", path, j), "%q is not an IP address", vip)
		}
	}
	for j, name := range s.ImportedFrom {
		if clusters[name] == nil {
			bad(fmt.Sprintf("%s.importedFrom[%d]", path, j), "%q is not among clusters", name)
		} else if name == m.LocalCluster {
			bad(fmt.Sprintf("%s.importedFrom[%d]", path, j), "%q is the local cluster", name)
		}
	}
	ports := map[uint32]bool{}
	names := map[string]bool{}
	for j := range s.Ports {
		p := &s.Ports[j]
		ppath := fmt.Sprintf("%s.ports[%d]", path, j)
		if !validPort(p.Port) {
			bad(ppath+".port", "%d is not a port (1-65535)", p.Port)
		}
		if ports[p.Port] {
			bad(ppath+".port", "%d is listed twice", p.Port)
		}
		ports[p.Port] = true
		if p.Name != "" && names[p.Name] {
			bad(ppath+".name", "%q is listed twice", p.Name)
		}
		names[p.Name] = true
		switch p.Protocol {
		case ProtocolHTTP, ProtocolHTTP2, ProtocolGRPC, ProtocolTCP:
		default:
			bad(ppath+".protocol", "%q is not http, http2, grpc or tcp", p.Protocol)
		}
		for k := range p.Endpoints {
			e := &p.Endpoints[k]
			epath := fmt.Sprintf("%s.endpoints[%d]", ppath, k)
			if clusters[e.Cluster] == nil {
				bad(epath+".cluster", "%q is not among clusters", e.Cluster)
			}
			if !isIP(e.Address) {
				bad(epath+".address", "%q is not an IP address", e.Address)
			}
			if !validPort(e.Port) {
				bad(epath+".port", "%d is not a port (1-65535)", e.Port)
			}
			if e.Gateway && e.Cluster == m.LocalCluster {
				bad(epath+".gateway", "the local cluster is not reached through a gateway")
			}
		}
	}
	if s.Policy != nil {
		validatePolicy(s.Policy, path+".policy", bad)
	}
	if s.Export != nil {
		if s.Export.PathRewrite != "" && !strings.HasPrefix(s.Export.PathRewrite, "/") {
			bad(path+".export.pathRewrite", "%q must start with /", s.Export.PathRewrite)
		}
		paths := map[string]bool{}
		for j, r := range s.Export.Rules {
			rpath := fmt.Sprintf("%s.export.rules[%d]", path, j)
			if !ports[r.Port] {
				bad(rpath+".port", "%d is not a port of the service", r.Port)
			}
			if !strings.HasPrefix(r.Path, "/") {
				bad(rpath+".path", "%q must start with /", r.Path)
			}
			if paths[r.Path] {
				bad(rpath+".path", "%q is listed twice", r.Path)
			}
			paths[r.Path] = true
			if r.PathType != "" && r.PathType != PathPrefix && r.PathType != PathExact {
				bad(rpath+".pathType", "%q is not Prefix or Exact", r.PathType)
			}
		}
	}
}

func validatePolicy(p *Policy, path string, bad func(path, format string, args ...any)) {
	switch p.LbType {
	case Locality:
		if len(p.Targets) > 0 {
			bad(path+".targets", "must be empty for Locality")
		}
	case FailOver, ActiveActive:
		if len(p.Targets) == 0 {
			bad(path+".targets", "%s needs at least one target", p.LbType)
		}
	default:
		bad(path+".lbType", "%q is not Locality, FailOver or ActiveActive", p.LbType)
	}
	seen := map[string]bool{}
	for i, t := range p.Targets {
		tpath := fmt.Sprintf("%s.targets[%d]", path, i)
		if parts := strings.Split(t.ClusterKey, "/"); len(parts) != 4 || parts[0] == "" || parts[1] == "" || parts[2] == "" || parts[3] == "" {
			bad(tpath+".clusterKey", "%q is not region/zone/group/name", t.ClusterKey)
		}
		if seen[t.ClusterKey] {
			bad(tpath+".clusterKey", "%q is listed twice", t.ClusterKey)
		}
		seen[t.ClusterKey] = true
		if t.Weight != nil && *t.Weight > MaxWeight {
			bad(tpath+".weight", "%d is more than %d", *t.Weight, MaxWeight)
		}
		if t.Priority != 0 && p.LbType != FailOver {
			bad(tpath+".priority", "is only for FailOver")
		}
		if t.Priority > MaxPriority {
			bad(tpath+".priority", "%d is more than %d", t.Priority, MaxPriority)
		}
	}
}

// Bounds on policy values, as the CRD sets them.
const (
	MaxWeight   = 1000
	MaxPriority = 100
)

func isIP(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

func validPort(p uint32) bool { return p >= 1 && p <= 65535 }
