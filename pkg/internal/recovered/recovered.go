// Package recovered runs one step of a long-lived loop (a rebuild, a sync,
// a certificate check) so that a panic in it becomes an error, with its
// stack, that the loop logs and retries like any other: a bug met by one
// object must not take down the process that serves every proxy.
package recovered

import (
	"fmt"
	"runtime/debug"
)

// Call runs step and returns its error, or the panic it met as an error.
func Call(step func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v\n%s", r, debug.Stack())
		}
	}()
	return step()
}
