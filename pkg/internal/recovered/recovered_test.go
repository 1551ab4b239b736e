package recovered

import (
	"errors"
	"strings"
	"testing"
)

func TestAPanicBecomesAnErrorWithItsStack(t *testing.T) {
	err := Call(func() error {
		panic("boom")
	})
	if err == nil || !strings.HasPrefix(err.Error(), "panic: boom") || !strings.Contains(err.Error(), "recovered_test.go") {
		t.Fatalf("err = %v, want the panic and a stack naming where it happened", err)
	}
	want := errors.New("plain")
	if got := Call(func() error { return want }); !errors.Is(got, want) {
		t.Errorf("an error passes through as it is: got %v", got)
	}
}
