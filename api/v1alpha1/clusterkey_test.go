package v1alpha1

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestClusterKey(t *testing.T) {
	tests := []struct {
		name    string
		cluster Cluster
		want    ClusterKey
	}{
		{
			name:    "a cluster without region, zone or group is in the default ones",
			cluster: Cluster{ObjectMeta: metav1.ObjectMeta{Name: "cluster-1"}},
			want:    "default/default/default/cluster-1",
		},
		{
			name: "a cluster's key is region/zone/group/name",
			cluster: Cluster{
				ObjectMeta: metav1.ObjectMeta{Name: "east-a"},
				Spec:       ClusterSpec{Region: "us-east-1", Zone: "us-east-1a", Group: "prod"},
			},
			want: "us-east-1/us-east-1a/prod/east-a",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.cluster.Key()
			if got != tt.want {
				t.Fatalf("Key() = %q, want %q", got, tt.want)
			}
			region, zone, group, name, err := ParseClusterKey(string(got))
			if err != nil {
				t.Fatalf("ParseClusterKey(%q): %v", got, err)
			}
			if back := NewClusterKey(region, zone, group, name); back != got {
				t.Fatalf("round trip gave %q, want %q", back, got)
			}
			if got.Name() != tt.cluster.Name {
				t.Fatalf("Name() = %q, want %q", got.Name(), tt.cluster.Name)
			}
		})
	}
}

func TestParseClusterKeyRefusesMalformedKeys(t *testing.T) {
	for _, key := range []string{"", "cluster-1", "a/b/c", "a/b/c/d/e", "a//c/d", "a/b/c/"} {
		if _, _, _, _, err := ParseClusterKey(key); err == nil {
			t.Errorf("ParseClusterKey(%q) = nil error, want one", key)
		}
	}
}

func TestEffectiveLbTypeOfAPolicyWithoutLbTypeIsLocality(t *testing.T) {
	var none *GlobalTrafficPolicy
	if got := none.EffectiveLbType(); got != LocalityLbType {
		t.Errorf("nil policy: got %q", got)
	}
	if got := (&GlobalTrafficPolicy{}).EffectiveLbType(); got != LocalityLbType {
		t.Errorf("empty policy: got %q", got)
	}
	p := &GlobalTrafficPolicy{Spec: GlobalTrafficPolicySpec{LbType: FailOverLbType}}
	if got := p.EffectiveLbType(); got != FailOverLbType {
		t.Errorf("FailOver policy: got %q", got)
	}
}
