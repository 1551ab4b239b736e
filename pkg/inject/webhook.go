package inject

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// Path is where the webhook is served.
const Path = "/inject"

// Webhook is the admission handler: it injects pods as they are created.
type Webhook struct {
	Config   *Config
	Decoder  admission.Decoder
	Recorder events.EventRecorder
	Log      logr.Logger
}

// NewWebhook returns the handler for scheme's Pods.
func NewWebhook(c *Config, scheme *runtime.Scheme, recorder events.EventRecorder, log logr.Logger) *Webhook {
	return &Webhook{Config: c, Decoder: admission.NewDecoder(scheme), Recorder: recorder, Log: log}
}

// Handle injects the pod of a CREATE request. It never refuses a pod: one
// it cannot inject is admitted unchanged, with a warning the client shows
// and an event.
func (w *Webhook) Handle(_ context.Context, req admission.Request) admission.Response {
	pod := &corev1.Pod{}
	if err := w.Decoder.Decode(req, pod); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	if pod.Namespace == "" {
		pod.Namespace = req.Namespace
	}
	if skip := Inject(pod, w.Config); skip != nil {
		w.Log.V(1).Info("pod not injected", "namespace", pod.Namespace, "pod", podName(pod), "reason", skip.Reason, "message", skip.Message)
		resp := admission.Allowed(skip.Message)
		if skip.Warn {
			resp.Warnings = []string{"fleetmesh: " + skip.Message}
			w.event(pod, skip)
		}
		return resp
	}
	data, err := json.Marshal(pod)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	w.Log.V(1).Info("pod injected", "namespace", pod.Namespace, "pod", podName(pod))
	return admission.PatchResponseFromRaw(req.Object.Raw, data)
}

// event records why a pod was left alone: on the pod when it has a name,
// else on what creates it (a ReplicaSet, a Job), where 'kubectl describe'
// shows it.
func (w *Webhook) event(pod *corev1.Pod, skip *Skip) {
	if w.Recorder == nil {
		return
	}
	var obj runtime.Object = pod
	if pod.Name == "" {
		if len(pod.OwnerReferences) == 0 {
			return
		}
		o := pod.OwnerReferences[0]
		u := &metav1.PartialObjectMetadata{
			TypeMeta:   metav1.TypeMeta{APIVersion: o.APIVersion, Kind: o.Kind},
			ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: o.Name, UID: o.UID},
		}
		obj = u
	}
	w.Recorder.Eventf(obj, nil, corev1.EventTypeWarning, "SidecarNotInjected", "Inject", "%s", skip.Message)
}

func podName(pod *corev1.Pod) string {
	if pod.Name != "" {
		return pod.Name
	}
	return pod.GenerateName + "<generated>"
}
