package capabilities

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/version"
)

func TestNativeSidecarsFromTheVersion(t *testing.T) {
	for v, want := range map[string]bool{
		"v1.28.4": false, "v1.29.0": true, "v1.33.13": true, "v1.37.2": true,
		"v0.0.0-master+$Format:%H$": true, // a development build is current
	} {
		ok, why := NativeSidecars(&version.Info{GitVersion: v})
		if ok != want || (!ok && !strings.Contains(why, v)) {
			t.Errorf("%s: %v %q, want %v", v, ok, why, want)
		}
	}
}
