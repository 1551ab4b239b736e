package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of every fleetmesh API object.
	GroupVersion = schema.GroupVersion{Group: "fleetmesh.io", Version: "v1alpha1"}

	// SchemeBuilder registers the fleetmesh types with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the fleetmesh types to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
