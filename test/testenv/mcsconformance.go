package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// MCSConformance is a run of the Kubernetes MCS API's conformance suite.
type MCSConformance struct {
	// LabelFilter is the run's Ginkgo label filter; empty runs every
	// spec.
	LabelFilter string
	// Report is the report.yaml the suite wrote.
	Report MCSConformanceReport
	// Output is what the suite printed.
	Output string
	// Err is how the suite's process ended.
	Err error
}

// MCSConformanceReport is the report.yaml the MCS conformance suite
// writes.
type MCSConformanceReport struct {
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

// RunMCSConformance runs the MCS conformance suite (bin/mcs-conformance,
// built from test/mcs-conformance by `make mcs-conformance`) as its own
// binary against the clusters of contexts, in kubeconfig, with the Ginkgo
// label filter (empty: every spec). It fails only when the suite could
// not run or wrote no report.
func RunMCSConformance(ctx context.Context, kubeconfig string, contexts []string, labelFilter string) (*MCSConformance, error) {
	bin := filepath.Join(RepoRoot(), "bin", "mcs-conformance")
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("%w: `make mcs-conformance` builds the suite (make test does)", err)
	}
	dir, err := os.MkdirTemp("", "mcs-conformance-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	args := []string{
		"--kubeconfig", kubeconfig, "--contexts", strings.Join(contexts, ","),
		"--project", "fleetmesh", "--url", "https://github.com/fleetmesh/fleetmesh", "-ginkgo.no-color",
	}
	if labelFilter != "" {
		args = append(args, "-ginkgo.label-filter", labelFilter)
	}
	if d, ok := ctx.Deadline(); ok {
		args = append(args, "-test.timeout", time.Until(d).Truncate(time.Second).String())
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	out, runErr := cmd.CombinedOutput()
	run := &MCSConformance{LabelFilter: labelFilter, Output: string(out), Err: runErr}
	data, err := os.ReadFile(filepath.Join(dir, "report.yaml"))
	if err != nil {
		return nil, fmt.Errorf("the suite wrote no report: %w\n%s", errors.Join(runErr, err), out)
	}
	if err := yaml.Unmarshal(data, &run.Report); err != nil {
		return nil, err
	}
	if run.Report.SuiteFailure != "" {
		return nil, fmt.Errorf("the suite could not start: %s\n%s", run.Report.SuiteFailure, out)
	}
	return run, nil
}

// Check logs the report's table, spec by spec, and fails t unless every
// spec the run did not leave out passed.
func (r *MCSConformance) Check(t testing.TB) {
	t.Helper()
	var table strings.Builder
	ran := 0
	for _, g := range r.Report.Groups {
		for _, spec := range g.Tests {
			state := "passed"
			switch {
			case spec.Skipped:
				state = "skipped (" + r.LabelFilter + ")"
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
	t.Logf("MCS conformance, %d of %d specs passed (%d run):\n%s", r.Report.Passed, r.Report.Total, ran, table.String())
	if r.Err != nil || r.Report.Passed != ran || ran == 0 {
		t.Errorf("the suite failed (%v): %d of the %d specs it ran passed; its output:\n%s", r.Err, r.Report.Passed, ran, r.Output)
	}
}
