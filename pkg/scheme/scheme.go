// Package scheme is the one runtime.Scheme fleetmesh's clients use: the
// Kubernetes types and the fleetmesh API.
package scheme

import (
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
)

// New returns a scheme with the Kubernetes types and the fleetmesh API.
func New() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err) // the types are compiled in: it cannot fail
	}
	if err := fmv1alpha1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}
