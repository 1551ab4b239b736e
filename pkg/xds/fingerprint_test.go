package xds

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/fleetmesh/fleetmesh/pkg/model"
)

// Fields of the model the fingerprints leave out, each with why: the
// shared layers are not translated from them. A field added to the model
// is in neither list until someone decides, and the test below fails.
var (
	notInServiceFingerprint = map[string]string{
		"Export.Callers": "callers shape the serving side (sidecars' inbound, gateways, proxyless servers), translated for every proxy at each update",
		"LeftOut":        "what discovery left out is reported, not translated",
	}
	notInFleetFingerprint = map[string]string{
		"Services":              "each service has a fingerprint of its own",
		"Pods":                  "pod addresses are read by each proxy's own translation",
		"GatewayNamespace":      "the gateways' identity is read by the serving side only",
		"GatewayServiceAccount": "the gateways' identity is read by the serving side only",
		"MTLSModes":             "modes are read by the serving side only",
	}
)

// TestEveryFieldTranslationReadsChangesAFingerprint changes every field
// of a service (of every port, endpoint, target and rule) and of the
// mesh, one at a time: each one the shared translation reads changes the
// fingerprint, so no change is served stale; the rest are listed above
// with why.
func TestEveryFieldTranslationReadsChangesAFingerprint(t *testing.T) {
	weight := uint32(3)
	svc := model.Service{
		Namespace: "shop", Name: "web", Headless: true, VIPs: []string{"10.96.0.1"},
		Ports: []model.Port{{Name: "http", Port: 80, Protocol: model.ProtocolHTTP, Endpoints: []model.Endpoint{
			{Cluster: "cluster-1", Address: "10.244.1.1", Port: 8080, Ready: true, Gateway: true, MTLS: true},
		}}},
		ImportedFrom: []string{"cluster-2"},
		Policy:       &model.Policy{LbType: model.FailOver, Targets: []model.Target{{ClusterKey: "a/b/c/cluster-2", Weight: &weight, Priority: 2}}},
		Export: &model.Export{
			Rules: []model.ExportRule{{Port: 80, Path: "/web", PathType: model.PathPrefix}}, PathRewrite: "/", LoadBalancer: "x", Callers: []string{"a/b"},
		},
		LoadBalancer: "y", LeftOut: []string{"z"},
	}
	eachLeaf(t, "", reflect.ValueOf(svc), func(path string, change func(reflect.Value)) {
		changed := clone(t, svc)
		change(reflect.ValueOf(&changed).Elem())
		differs := fingerprint(&svc, 0) != fingerprint(&changed, 0)
		_, left := notInServiceFingerprint[path]
		switch {
		case !differs && !left:
			t.Errorf("service field %s: changing it leaves the fingerprint as it was, so a change to it would be served stale: hash it in fingerprint, or list it in notInServiceFingerprint with why", path)
		case differs && left:
			t.Errorf("service field %s is listed as left out of the fingerprint, but changes it", path)
		}
	})

	mesh := model.Mesh{
		LocalCluster: "cluster-1", TrustDomain: "td",
		Clusters:         []model.Cluster{{Name: "cluster-1", Region: "r", Zone: "z", Group: "g", Network: "n", Gateway: &model.Address{IP: "10.0.0.1", Port: 80}}},
		Services:         []model.Service{svc},
		Pods:             map[string]string{"a/b": "10.0.0.2"},
		GatewayNamespace: "gw", GatewayServiceAccount: "gw",
		MTLSModes: map[string]model.MTLSMode{"a": model.MTLSStrict},
	}
	eachLeaf(t, "", reflect.ValueOf(mesh), func(path string, change func(reflect.Value)) {
		for left := range notInFleetFingerprint {
			if path == left || strings.HasPrefix(path, left+".") || strings.HasPrefix(path, left+"[") {
				return
			}
		}
		changed := clone(t, mesh)
		change(reflect.ValueOf(&changed).Elem())
		if fleetFingerprint(&mesh) == fleetFingerprint(&changed) {
			t.Errorf("mesh field %s: changing it leaves the fleet's fingerprint as it was", path)
		}
	})
	for left := range notInFleetFingerprint {
		if _, ok := reflect.TypeOf(mesh).FieldByName(left); !ok {
			t.Errorf("%s is listed as left out of the fleet's fingerprint, but the mesh has no such field", left)
		}
	}
}

// clone copies a model value whole.
func clone[T any](t *testing.T, v T) T {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out T
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// eachLeaf calls f with the path of every leaf field of v (slices and
// maps by their first element, pointers through) and a function that
// changes that field in a value of v's type.
func eachLeaf(t *testing.T, path string, v reflect.Value, f func(path string, change func(reflect.Value))) {
	t.Helper()
	at := func(root reflect.Value) reflect.Value { return walk(root, path) }
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			name := v.Type().Field(i).Name
			eachLeaf(t, join(path, name), v.Field(i), f)
		}
	case reflect.Pointer:
		if v.IsNil() {
			t.Fatalf("%s is nil in the sample: give it a value", path)
		}
		eachLeaf(t, path, v.Elem(), f)
	case reflect.Slice:
		if v.Len() == 0 {
			t.Fatalf("%s is empty in the sample: give it an element", path)
		}
		if v.Type().Elem().Kind() == reflect.String {
			f(path, func(root reflect.Value) { s := at(root).Index(0); s.SetString(s.String() + "x") })
			return
		}
		eachLeaf(t, path+"[0]", v.Index(0), f)
	case reflect.Map:
		if v.Len() == 0 {
			t.Fatalf("%s is empty in the sample: give it an entry", path)
		}
		f(path, func(root reflect.Value) {
			m := at(root)
			m.SetMapIndex(reflect.ValueOf("another").Convert(m.Type().Key()), m.MapIndex(m.MapKeys()[0]))
		})
	case reflect.String:
		f(path, func(root reflect.Value) { s := at(root); s.SetString(s.String() + "x") })
	case reflect.Bool:
		f(path, func(root reflect.Value) { b := at(root); b.SetBool(!b.Bool()) })
	case reflect.Uint32, reflect.Uint64, reflect.Uint:
		f(path, func(root reflect.Value) { n := at(root); n.SetUint(n.Uint() + 1) })
	default:
		t.Fatalf("%s: a %s field; teach eachLeaf to change it", path, v.Kind())
	}
}

// walk follows path (Field, Field[0], pointers through) from root.
func walk(root reflect.Value, path string) reflect.Value {
	v := root
	for _, part := range splitPath(path) {
		for v.Kind() == reflect.Pointer {
			v = v.Elem()
		}
		if part == "[0]" {
			v = v.Index(0)
			continue
		}
		v = v.FieldByName(part)
	}
	for v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	return v
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// splitPath splits "Ports[0].Endpoints[0].Address" into Ports, [0],
// Endpoints, [0], Address.
func splitPath(path string) []string {
	return strings.FieldsFunc(strings.ReplaceAll(path, "[0]", ".[0]"), func(r rune) bool { return r == '.' })
}
