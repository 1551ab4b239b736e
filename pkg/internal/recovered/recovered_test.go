package recovered

import (
	"errors"
	"strings"
	"testing"
)

func TestAPanicBecomesAnErrorWithItsStack(t *testing.T) {
	err := Call(func() error {
		var m map[string]int
		m["boom"]++ // a nil map write panics
		return nil
	})
	if err == nil || !strings.HasPrefix(err.Error(), "panic: assignment to entry in nil map") || !strings.Contains(err.Error(), "recovered_test.go") {
		t.Fatalf("err = %v, want the panic and a stack naming where it happened", err)
	}
	want := errors.New("plain")
	if got := Call(func() error { return want }); got != want {
		t.Errorf("an error passes through as it is: got %v", got)
	}
}
