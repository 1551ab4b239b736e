package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of every fleetmesh API object.
	GroupVersion = schema.GroupVersion{Group: "fleetmesh.io", Version: "v1alpha1"}

	// SchemeBuilder registers the fleetmesh types with a runtime.Scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the fleetmesh types to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion,
		&Cluster{}, &ClusterList{},
		&ServiceExport{}, &ServiceExportList{},
		&ServiceImport{}, &ServiceImportList{},
		&GlobalTrafficPolicy{}, &GlobalTrafficPolicyList{},
	)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
