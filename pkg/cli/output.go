package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/cli-runtime/pkg/printers"
)

// outputFlag is -o table|yaml|json.
type outputFlag struct{ format string }

func (o *outputFlag) bind(cmd *cobra.Command, formats ...string) {
	if len(formats) == 0 {
		formats = []string{"table", "yaml", "json"}
	}
	cmd.Flags().StringVarP(&o.format, "output", "o", formats[0], "output format: "+strings.Join(formats, "|"))
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(formats, cobra.ShellCompDirectiveNoFileComp))
}

// print writes v as JSON or YAML, or calls table for the table format.
func (o *outputFlag) print(out io.Writer, v any, table func(io.Writer)) error {
	switch o.format {
	case "table", "":
		if table == nil {
			return fmt.Errorf("-o table is not available here: use -o json or -o yaml")
		}
		w := printers.GetNewTabWriter(out) // kubectl's columns
		table(w)
		return w.Flush()
	}
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return printRaw(out, o.format, data)
}

// row writes one tab-separated table row.
func row(w io.Writer, cells ...any) {
	for i, c := range cells {
		if i > 0 {
			_, _ = io.WriteString(w, "\t")
		}
		_, _ = fmt.Fprint(w, c)
	}
	_, _ = io.WriteString(w, "\n")
}

// age prints a duration the way kubectl does (its AGE column): 5s,
// 3m10s, 2h, 4d.
func age(since time.Time, now time.Time) string {
	if since.IsZero() {
		return "<never>"
	}
	return duration.HumanDuration(max(now.Sub(since), 0))
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}
