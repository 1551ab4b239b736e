package xds

import (
	"hash/fnv"
	"io"
	"strconv"

	"github.com/fleetmesh/fleetmesh/pkg/model"
)

// fingerprint hashes everything translation reads of a service, so the
// server translates again only the services whose fingerprint changed.
// The fleet's fingerprint is mixed in: a cluster's gateway or network
// changes every service's endpoints, the trust domain its mTLS clusters.
func fingerprint(svc *model.Service, fleet uint64) uint64 {
	h := fnv.New64a()
	w := func(s string) { _, _ = io.WriteString(h, s); _, _ = h.Write([]byte{0}) }
	n := func(v uint64) { w(strconv.FormatUint(v, 36)) }
	b := func(v bool) {
		if v {
			w("1")
		} else {
			w("0")
		}
	}
	n(fleet)
	w(svc.Namespace)
	w(svc.Name)
	b(svc.Headless)
	for _, vip := range svc.VIPs {
		w(vip)
	}
	w("|")
	for _, c := range svc.ImportedFrom {
		w(c)
	}
	w("|")
	for _, p := range svc.Ports {
		w(p.Name)
		n(uint64(p.Port))
		w(string(p.Protocol))
		for _, e := range p.Endpoints {
			w(e.Cluster)
			w(e.Address)
			n(uint64(e.Port))
			b(e.Ready)
			b(e.Gateway)
			b(e.MTLS)
		}
		w("|")
	}
	if p := svc.Policy; p != nil {
		w(string(p.LbType))
		for _, t := range p.Targets {
			w(t.ClusterKey)
			n(uint64(t.EffectiveWeight()))
			n(uint64(t.Priority))
		}
	}
	w(svc.LoadBalancer)
	w("|")
	if e := svc.Export; e != nil {
		w("export")
		w(e.PathRewrite)
		w(e.LoadBalancer)
		for _, r := range e.Rules {
			n(uint64(r.Port))
			w(r.Path)
			w(string(r.PathType))
		}
	}
	return h.Sum64()
}

// fleetFingerprint hashes the fleet's clusters, the local cluster and the
// trust domain.
func fleetFingerprint(m *model.Mesh) uint64 {
	h := fnv.New64a()
	w := func(s string) { _, _ = io.WriteString(h, s); _, _ = h.Write([]byte{0}) }
	w(m.LocalCluster)
	w(m.TrustDomain)
	for _, c := range m.Clusters {
		w(c.Name)
		w(c.Region)
		w(c.Zone)
		w(c.Group)
		w(c.Network)
		if c.Gateway != nil {
			w(c.Gateway.String())
		}
		w("|")
	}
	return h.Sum64()
}
