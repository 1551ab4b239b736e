package testenv

import (
	"fmt"
	"sort"
	"strings"
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

// Grep returns the lines of text that contain substr, joined: a failing
// test's look at a long dump.
func Grep(text, substr string) string {
	return strings.Join(TableLines(text, substr), "\n")
}
