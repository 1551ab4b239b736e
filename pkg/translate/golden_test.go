package translate

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	"github.com/fleetmesh/fleetmesh/pkg/model"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// goldenCase is a testdata/<case>.in.yaml file: a mesh and the proxy asking.
type goldenCase struct {
	Proxy model.Proxy `json:"proxy"`
	Mesh  model.Mesh  `json:"mesh"`
}

func loadCase(t testing.TB, path string) goldenCase {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var c goldenCase
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if err := c.Mesh.Validate(); err != nil {
		t.Fatalf("%s: the input mesh is invalid: %v", path, err)
	}
	return c
}

func goldenCases(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "*.in.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden cases: %v", err)
	}
	return files
}

// TestGolden translates every testdata/<case>.in.yaml and compares the
// result with <case>.out.yaml (go test ./pkg/translate -update rewrites
// them). Every emitted resource must pass Envoy's proto validation and
// the set must be consistent.
func TestGolden(t *testing.T) {
	for _, in := range goldenCases(t) {
		name := strings.TrimSuffix(filepath.Base(in), ".in.yaml")
		t.Run(name, func(t *testing.T) {
			c := loadCase(t, in)
			res, err := Translate(&c.Mesh, &c.Proxy)
			if err != nil {
				t.Fatal(err)
			}
			checkResources(t, res)
			got, err := render(res)
			if err != nil {
				t.Fatal(err)
			}
			again, _ := Translate(&c.Mesh, &c.Proxy)
			if second, _ := render(again); !bytes.Equal(got, second) {
				t.Fatal("translating the same input twice gave different output")
			}
			out := strings.TrimSuffix(in, ".in.yaml") + ".out.yaml"
			if *update {
				if err := os.WriteFile(out, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(out)
			if err != nil {
				t.Fatalf("%v (run `make testdata` to create it)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("%s differs from the translation (-want +got; run `make testdata` if the change is meant):\n%s", out, diff)
			}
		})
	}
}

// render writes resources as YAML: protojson, normalised through
// encoding/json (protojson's spacing is deliberately unstable), then YAML
// with sorted keys.
func render(r *Resources) ([]byte, error) {
	doc := map[string]any{}
	add := func(key string, msgs []proto.Message) error {
		if len(msgs) == 0 {
			return nil
		}
		list := make([]any, 0, len(msgs))
		for _, m := range msgs {
			data, err := protojson.Marshal(m)
			if err != nil {
				return err
			}
			var v any
			if err := json.Unmarshal(data, &v); err != nil {
				return err
			}
			list = append(list, v)
		}
		doc[key] = list
		return nil
	}
	for _, part := range []struct {
		key  string
		msgs []proto.Message
	}{
		{"listeners", asMessages(r.Listeners)},
		{"routes", asMessages(r.Routes)},
		{"clusters", asMessages(r.Clusters)},
		{"endpoints", asMessages(r.Endpoints)},
	} {
		if err := add(part.key, part.msgs); err != nil {
			return nil, fmt.Errorf("render %s: %w", part.key, err)
		}
	}
	if len(r.Warnings) > 0 {
		doc["warnings"] = r.Warnings
	}
	return yaml.Marshal(doc)
}

func asMessages[T proto.Message](in []T) []proto.Message {
	out := make([]proto.Message, len(in))
	for i, m := range in {
		out[i] = m
	}
	return out
}
