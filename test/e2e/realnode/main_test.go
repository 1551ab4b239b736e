// Package realnode installs fleetmesh as users do, on clusters whose node
// runs real pods: kubelet, containerd and runc, kube-proxy and
// kube-scheduler, with fleetmesh's images built here from the Dockerfile's
// stages. `kubectl apply -k` of an overlay is the whole install.
package realnode

import (
	"context"
	"fmt"
	"os"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/fleetmesh/fleetmesh/test/testenv"
)

var fleet *testenv.Fleet

// skipReason says why the suite cannot run here (testenv.NoRealNodes).
var skipReason = testenv.NoRealNodes()

func TestMain(m *testing.M) {
	testenv.MainWithRealNodes(m, func() int {
		refs, err := testenv.ManifestImages()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		f, err := testenv.StartFleet(context.Background(), testenv.FleetOptions{
			Clusters:  []string{"cluster-1"},
			RealNodes: true,
			Images:    refs,
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer func() { _ = f.Stop() }()
		fleet = f
		return m.Run()
	})
}

// realFleet is the suite's fleet; without root the test is skipped.
func realFleet(t *testing.T) *testenv.Fleet {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
	return fleet
}

// echoApp is a Deployment of the echo image (container "app", port http
// 8080, with env) and its Service (port 80), both named name and selecting
// app=<name>.
func echoApp(ns, name string, replicas int32, env ...corev1.EnvVar) (*appsv1.Deployment, *corev1.Service) {
	labels := map[string]string{"app": name}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "app", Image: testenv.EchoImage, ImagePullPolicy: corev1.PullNever,
					Env:   env,
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
				}}},
			},
		},
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}},
	}
	return dep, svc
}
