package testenv

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
)

// Describe writes counts of calls by where they landed as "a=1 b=2",
// sorted by key.
func Describe(counts map[string]int) string {
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, counts[k]))
	}
	return strings.Join(parts, " ")
}

// DumpedAssignment reads the ClusterLoadAssignment of an EDS cluster out of
// a config dump in Envoy's ConfigDump JSON (the control plane's
// /debug/config_dump or Envoy's own /config_dump?include_eds).
func DumpedAssignment(dump []byte, cluster string) (*endpointv3.ClusterLoadAssignment, error) {
	// Only the endpoints section is decoded: the others carry extension
	// types this package need not link.
	var top struct {
		Configs []json.RawMessage `json:"configs"`
	}
	if err := json.Unmarshal(dump, &top); err != nil {
		return nil, fmt.Errorf("not Envoy's ConfigDump: %w", err)
	}
	eds := &adminv3.EndpointsConfigDump{}
	for _, raw := range top.Configs {
		var head struct {
			Type string `json:"@type"`
		}
		if err := json.Unmarshal(raw, &head); err != nil {
			return nil, fmt.Errorf("not Envoy's ConfigDump: %w", err)
		}
		if head.Type != "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump" {
			continue
		}
		a := &anypb.Any{}
		if err := protojson.Unmarshal(raw, a); err != nil {
			return nil, err
		}
		if err := a.UnmarshalTo(eds); err != nil {
			return nil, err
		}
	}
	for _, e := range eds.GetDynamicEndpointConfigs() {
		cla := &endpointv3.ClusterLoadAssignment{}
		if err := e.GetEndpointConfig().UnmarshalTo(cla); err != nil {
			return nil, err
		}
		if cla.GetClusterName() == cluster {
			return cla, nil
		}
	}
	return nil, fmt.Errorf("no endpoints of %s in the dump", cluster)
}

// TableLines returns the lines of a printed table that contain every one
// of words.
func TableLines(table string, words ...string) []string {
	var out []string
	for _, line := range strings.Split(table, "\n") {
		ok := true
		for _, w := range words {
			ok = ok && strings.Contains(line, w)
		}
		if ok {
			out = append(out, line)
		}
	}
	return out
}
