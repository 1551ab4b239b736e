package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// LbType is how a consumer cluster lets traffic for a service leave it.
//
// +kubebuilder:validation:Enum=Locality;FailOver;ActiveActive
type LbType string

// Global load balancing types of a GlobalTrafficPolicy.
const (
	// LocalityLbType keeps traffic in the consumer's own cluster.
	LocalityLbType LbType = "Locality"
	// FailOverLbType sends traffic to the targets only when the consumer's
	// own endpoints are gone or failing, tier by tier of priority.
	FailOverLbType LbType = "FailOver"
	// ActiveActiveLbType spreads traffic over the consumer's cluster and
	// the targets, by weight.
	ActiveActiveLbType LbType = "ActiveActive"
)

// GlobalTrafficPolicySpec decides, in a consumer cluster, where the traffic
// for the service of the same namespace and name may go.
//
// +kubebuilder:validation:XValidation:rule="self.lbType != 'Locality' || !has(self.targets) || size(self.targets) == 0",message="spec.targets must be empty when spec.lbType is Locality",fieldPath=".targets"
// +kubebuilder:validation:XValidation:rule="self.lbType == 'Locality' || (has(self.targets) && size(self.targets) > 0)",message="spec.targets needs at least one target when spec.lbType is FailOver or ActiveActive",fieldPath=".targets"
// +kubebuilder:validation:XValidation:rule="!has(self.targets) || size(self.targets) == 0 || self.targets.exists(t, !has(t.weight) || t.weight > 0)",message="spec.targets[].weight must not be 0 for every target",fieldPath=".targets"
// +kubebuilder:validation:XValidation:rule="self.lbType == 'FailOver' || !has(self.targets) || self.targets.all(t, !has(t.priority))",message="spec.targets[].priority is only for lbType FailOver",fieldPath=".targets"
type GlobalTrafficPolicySpec struct {
	// LbType is Locality (stay in this cluster), FailOver (use the targets
	// when this cluster's endpoints are gone or failing) or ActiveActive
	// (spread over this cluster and the targets).
	// +kubebuilder:default=Locality
	// +optional
	LbType LbType `json:"lbType,omitempty"`
	// Targets are the other clusters traffic may go to.
	// +kubebuilder:validation:MaxItems=32
	// +listType=map
	// +listMapKey=clusterKey
	// +optional
	Targets []TrafficTarget `json:"targets,omitempty"`
}

// TrafficTarget is a cluster that traffic may go to.
type TrafficTarget struct {
	// ClusterKey of the target cluster. Listing the consumer's own cluster
	// sets its weight.
	ClusterKey ClusterKey `json:"clusterKey"`
	// Weight of the cluster's share under ActiveActive, and among targets
	// of the same priority under FailOver. 0 drops the target.
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000
	// +optional
	Weight *int32 `json:"weight,omitempty"`
	// Priority orders FailOver tiers: targets with priority 1 (the default)
	// are used first when the consumer's own endpoints fail, then 2, and so
	// on.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +optional
	Priority *int32 `json:"priority,omitempty"`
}

// GlobalTrafficPolicyStatus is what the consumer's control plane made of the
// policy.
type GlobalTrafficPolicyStatus struct {
	// ObservedGeneration is the generation last read.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// UnmatchedTargets are targets that name no cluster exporting the
	// service; they are ignored.
	// +kubebuilder:validation:MaxItems=32
	// +listType=set
	// +optional
	UnmatchedTargets []ClusterKey `json:"unmatchedTargets,omitempty"`
	// Conditions: Accepted.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// GlobalTrafficPolicy decides, in the consumer cluster, whether traffic to the
// service of the same namespace and name stays local, fails over to other
// clusters or spreads across them.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=gtp;fmgtp,categories=fleetmesh
// +kubebuilder:printcolumn:name="LB-Type",type=string,JSONPath=`.spec.lbType`
// +kubebuilder:printcolumn:name="Targets",type=string,JSONPath=`.spec.targets`
// +kubebuilder:printcolumn:name="Unmatched",type=string,JSONPath=`.status.unmatchedTargets`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type GlobalTrafficPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +kubebuilder:default={lbType: Locality}
	Spec   GlobalTrafficPolicySpec   `json:"spec,omitempty"`
	Status GlobalTrafficPolicyStatus `json:"status,omitempty"`
}

// EffectiveLbType returns spec.lbType, Locality when it is empty.
func (p *GlobalTrafficPolicy) EffectiveLbType() LbType {
	if p == nil || p.Spec.LbType == "" {
		return LocalityLbType
	}
	return p.Spec.LbType
}

// GlobalTrafficPolicyList is a list of GlobalTrafficPolicies.
//
// +kubebuilder:object:root=true
type GlobalTrafficPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []GlobalTrafficPolicy `json:"items"`
}
