// Package memberguard is a member cluster's check, at admission, of what
// the fleet's federation writes there that the member's
// ValidatingAdmissionPolicies cannot judge alone, because it depends on
// another object: an EndpointSlice the federation writes may join only a
// Service the federation derived (selector-less, ClusterIP or headless,
// labelled app.kubernetes.io/managed-by=fleetmesh). Without it, a
// federation that is taken over could add its addresses to any Service
// of the member (kube-system/kube-dns, say), and kube-proxy would send
// that Service's traffic there.
//
// The member's controller serves it (with --inject, beside the sidecar
// injector) and its webhook configuration matches the federation's
// ServiceAccount only, so nothing else waits on it.
package memberguard

import (
	"context"
	"fmt"
	"net/http"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
)

// Path is where the check is served.
const Path = "/validate-federation"

// Guard is the admission handler.
type Guard struct {
	// Reader reads Services from the API server itself: the Service a
	// slice joins was often created a moment before.
	Reader  client.Reader
	Decoder admission.Decoder
}

// New returns the handler, reading through r.
func New(r client.Reader, scheme *runtime.Scheme) *Guard {
	return &Guard{Reader: r, Decoder: admission.NewDecoder(scheme)}
}

// Handle admits an EndpointSlice that joins no Service or one the
// federation derived, and refuses any other, saying which Service and
// why.
func (g *Guard) Handle(ctx context.Context, req admission.Request) admission.Response {
	if req.Kind.Kind != "EndpointSlice" {
		return admission.Allowed("")
	}
	slice := &discoveryv1.EndpointSlice{}
	if err := g.Decoder.Decode(req, slice); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	name := slice.Labels[discoveryv1.LabelServiceName]
	if name == "" {
		return admission.Allowed("the slice joins no Service")
	}
	svc := &corev1.Service{}
	err := g.Reader.Get(ctx, client.ObjectKey{Namespace: req.Namespace, Name: name}, svc)
	if apierrors.IsNotFound(err) {
		return admission.Denied(fmt.Sprintf("the fleetmesh federation may write EndpointSlices only for Services it derived; Service %s/%s does not exist", req.Namespace, name))
	}
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("get Service %s/%s: %w", req.Namespace, name, err))
	}
	if why := notDerived(svc); why != "" {
		return admission.Denied(fmt.Sprintf("the fleetmesh federation may write EndpointSlices only for Services it derived; Service %s/%s %s", req.Namespace, name, why))
	}
	return admission.Allowed("")
}

// notDerived says why svc is not a Service the federation derived, or ""
// when it is.
func notDerived(svc *corev1.Service) string {
	switch {
	case svc.Labels[fmv1alpha1.ManagedByLabel] != fmv1alpha1.ManagedByValue:
		return "is not labelled " + fmv1alpha1.ManagedByLabel + "=" + fmv1alpha1.ManagedByValue
	case len(svc.Spec.Selector) > 0:
		return "has a selector: its endpoints are its pods'"
	case svc.Spec.Type != "" && svc.Spec.Type != corev1.ServiceTypeClusterIP:
		return "is of type " + string(svc.Spec.Type)
	}
	return ""
}
