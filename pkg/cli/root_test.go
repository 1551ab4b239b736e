package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestVersionPrintsTheBuild(t *testing.T) {
	var out bytes.Buffer
	if err := Execute(context.Background(), &out, []string{"version"}); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "fleetmesh dev") {
		t.Fatalf("version printed %q", out.String())
	}
}

func TestAnUnknownCommandIsAnError(t *testing.T) {
	var out bytes.Buffer
	err := Execute(context.Background(), &out, []string{"frobnicate"})
	if err == nil || !strings.Contains(err.Error(), `unknown command "frobnicate"`) {
		t.Fatalf("got %v", err)
	}
}

func TestCompletionScriptsAreGenerated(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish", "powershell"} {
		var out bytes.Buffer
		if err := Execute(context.Background(), &out, []string{"completion", shell}); err != nil || !strings.Contains(out.String(), "fleetmesh") {
			t.Errorf("completion %s: %v (%d bytes)", shell, err, out.Len())
		}
	}
}
