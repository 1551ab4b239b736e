// Package scheme is the one runtime.Scheme fleetmesh's clients use: the
// Kubernetes types, the fleetmesh API and the Kubernetes MCS API
// (multicluster.x-k8s.io/v1beta1).
package scheme

import (
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
)

// New returns a scheme with the Kubernetes types, the fleetmesh API and
// the MCS API.
func New() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err) // the types are compiled in: it cannot fail
	}
	if err := fmv1alpha1.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := mcsv1beta1.Install(s); err != nil {
		panic(err)
	}
	return s
}
