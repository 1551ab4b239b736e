// Package version carries the fleetmesh version, set at build time with
// -ldflags "-X github.com/fleetmesh/fleetmesh/pkg/version.Version=v0.1.0".
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version is the release version; "dev" for builds from a work tree.
var Version = "dev"

// String describes this build: version, Go version and VCS revision when
// the build recorded one.
func String() string {
	rev := ""
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				rev = " " + s.Value[:12]
			}
		}
	}
	return fmt.Sprintf("fleetmesh %s%s (%s %s/%s)", Version, rev, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
