package discovery

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestBuildGolden turns testdata/<case>.in.yaml (a cluster's objects) into
// the mesh model and compares it with <case>.out.yaml.
func TestBuildGolden(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.in.yaml"))
	if len(files) == 0 {
		t.Fatal("no cases")
	}
	for _, in := range files {
		t.Run(strings.TrimSuffix(filepath.Base(in), ".in.yaml"), func(t *testing.T) {
			data, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			var objs Objects
			if err := yaml.UnmarshalStrict(data, &objs); err != nil {
				t.Fatal(err)
			}
			mesh := Build(&objs)
			if err := mesh.Validate(); err != nil {
				t.Fatalf("Build made an invalid mesh: %v", err)
			}
			golden := map[string]any{"mesh": mesh}
			if problems := MTLSModeProblems(&objs); len(problems) > 0 {
				golden["mtlsModeProblems"] = problems
			}
			got, err := yaml.Marshal(golden)
			if err != nil {
				t.Fatal(err)
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
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("%s (-want +got):\n%s", out, diff)
			}
		})
	}
}
