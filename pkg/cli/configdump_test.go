package cli

import (
	"testing"
)

// TestADumpWithAnExtensionTheCLIDoesNotKnowStillReads is a route whose
// retry policy names an extension type this binary has never heard of (a
// newer control plane's): the dump reads, and the route is there.
func TestADumpWithAnExtensionTheCLIDoesNotKnowStillReads(t *testing.T) {
	dump := `{"configs": [{
	  "@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump",
	  "dynamic_route_configs": [{"route_config": {
	    "@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
	    "name": "outbound|8080",
	    "virtual_hosts": [{"name": "httpbin", "domains": ["httpbin"], "routes": [{
	      "match": {"prefix": "/"},
	      "route": {"cluster": "outbound|8080||httpbin.httpbin.svc.cluster.local", "retry_policy": {
	        "retry_on": "reset",
	        "retry_host_predicate": [{"name": "future", "typed_config": {"@type": "type.googleapis.com/example.future.v9.Predicate", "knob": 3}}]
	      }}
	    }]}]
	  }}]
	}]}`
	d, err := ParseConfigDump([]byte(dump))
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Routes) != 1 || d.Routes[0].GetVirtualHosts()[0].GetRoutes()[0].GetRoute().GetCluster() != "outbound|8080||httpbin.httpbin.svc.cluster.local" {
		t.Fatalf("routes read: %v", d.Routes)
	}
}
