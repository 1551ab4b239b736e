package mcs

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/fleetmesh/fleetmesh/test/testenv"
)

// conformanceReport is the report.yaml the MCS conformance suite writes.
type conformanceReport struct {
	SuiteFailure string
	Passed       int
	Total        int
	Groups       []struct {
		Name  string
		Tests []struct {
			Desc                                string
			Labels                              []string
			Passed, Failed, Skipped, Conformant bool
			Message                             string
		}
	}
}

// conformanceFilter leaves out the specs that run commands in a pod
// (nslookup, nc): the lab's members run no containers.
const conformanceFilter = "!DNS && !Connectivity"

// TestTheMCSConformanceSuite runs the Kubernetes MCS API's conformance
// suite (bin/mcs-conformance, built from test/mcs-conformance) against
// the fleet's two members, as its own binary, with a stand-in kubelet for
// the pods it makes: every spec it runs there must pass. The report's
// table is logged, spec by spec.
func TestTheMCSConformanceSuite(t *testing.T) {
	bin := filepath.Join(testenv.RepoRoot(), "bin", "mcs-conformance")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%v: `make mcs-conformance` builds the suite (make test does)", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	for _, name := range members {
		fleet.Cluster(name).RunPodsOf(ctx, func(ns string) bool { return strings.HasPrefix(ns, "mcs-conformance-") })
	}
	dir := t.TempDir()
	cmd := exec.CommandContext(ctx, bin, "--kubeconfig", fleet.KubeconfigPath, "--contexts", strings.Join(members, ","),
		"--project", "fleetmesh", "--url", "https://github.com/fleetmesh/fleetmesh",
		"-ginkgo.label-filter", conformanceFilter, "-ginkgo.no-color", "-test.timeout", "18m")
	cmd.Dir = dir
	out, runErr := cmd.CombinedOutput()
	data, err := os.ReadFile(filepath.Join(dir, "report.yaml"))
	if err != nil {
		t.Fatalf("the suite wrote no report (%v): %v\n%s", runErr, err, out)
	}
	var report conformanceReport
	if err := yaml.Unmarshal(data, &report); err != nil {
		t.Fatal(err)
	}
	if report.SuiteFailure != "" {
		t.Fatalf("the suite could not start: %s\n%s", report.SuiteFailure, out)
	}
	var table strings.Builder
	ran := 0
	for _, g := range report.Groups {
		for _, spec := range g.Tests {
			state := "passed"
			switch {
			case spec.Skipped:
				state = "skipped (" + conformanceFilter + ")"
			case !spec.Conformant:
				state = "NOT CONFORMANT" + spec.Message
			case spec.Failed:
				state = "FAILED" + spec.Message
			}
			if !spec.Skipped {
				ran++
			}
			fmt.Fprintf(&table, "%-8s %-40s %s: %s\n", g.Name, strings.Join(spec.Labels, ","), spec.Desc, state)
		}
	}
	t.Logf("MCS conformance, %d of %d specs passed (%d run):\n%s", report.Passed, report.Total, ran, table.String())
	if runErr != nil || report.Passed != ran || ran == 0 {
		t.Errorf("the suite failed (%v): %d of the %d specs it ran passed\n%s", runErr, report.Passed, ran, lastLines(string(out), 80))
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
