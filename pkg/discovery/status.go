package discovery

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
	"github.com/fleetmesh/fleetmesh/pkg/internal/batchqueue"
	"github.com/fleetmesh/fleetmesh/pkg/model"
)

// Status is what a rebuild learnt of the objects the mesh came from, to
// be written on them: each import's conditions and each policy's status,
// and the services' problems to record as events, by namespace/name.
type Status struct {
	Imports  map[string][]metav1.Condition
	Policies map[string]fmv1alpha1.GlobalTrafficPolicyStatus
	Warnings map[string]Warning
}

// Warning is a service's problem, recorded as a Warning event on Object
// (its Service, else its ServiceImport) once for as long as it lasts.
type Warning struct {
	Object  client.Object
	Reason  string
	Message string
}

// decideStatus is the status of the imports and policies mesh was built
// from: an import is Ready unless its service is inconsistent (why is
// inconsistent[key]), and in Conflict where part of it is left out for
// clashing with the cluster's own Service; a policy lists the targets
// that match no exporting cluster.
func decideStatus(cluster string, imports []fmv1alpha1.ServiceImport, policies []fmv1alpha1.GlobalTrafficPolicy, mesh *model.Mesh, inconsistent map[string]string) Status {
	leftOut := make(map[string][]string, len(mesh.Services))
	unmatched := make(map[string][]string)
	for i := range mesh.Services {
		svc := &mesh.Services[i]
		if len(svc.LeftOut) > 0 {
			leftOut[svc.Key()] = svc.LeftOut
		}
		if svc.Policy != nil {
			unmatched[svc.Key()] = mesh.UnmatchedTargets(svc)
		}
	}
	st := Status{Imports: make(map[string][]metav1.Condition, len(imports)), Policies: make(map[string]fmv1alpha1.GlobalTrafficPolicyStatus, len(policies))}
	for i := range imports {
		imp := &imports[i]
		key := imp.Namespace + "/" + imp.Name
		ready := metav1.Condition{
			Type: fmv1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Ready",
			Message: "served to the proxies of cluster " + cluster, ObservedGeneration: imp.Generation,
		}
		if why, bad := inconsistent[key]; bad {
			ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, fmv1alpha1.ReasonInconsistent, why
		}
		conflict := metav1.Condition{
			Type: fmv1alpha1.ConditionConflict, Status: metav1.ConditionFalse, Reason: fmv1alpha1.ReasonNoConflict,
			Message: "no port clashes with a Service of this cluster", ObservedGeneration: imp.Generation,
		}
		if l := leftOut[key]; len(l) > 0 {
			conflict.Status, conflict.Reason, conflict.Message = metav1.ConditionTrue, fmv1alpha1.ReasonPortConflict, strings.Join(l, "; ")
		}
		st.Imports[key] = []metav1.Condition{ready, conflict}
	}
	for i := range policies {
		p := &policies[i]
		key := p.Namespace + "/" + p.Name
		ps := fmv1alpha1.GlobalTrafficPolicyStatus{ObservedGeneration: p.Generation}
		targets := unmatched[key]
		for _, t := range targets {
			ps.UnmatchedTargets = append(ps.UnmatchedTargets, fmv1alpha1.ClusterKey(t))
		}
		cond := metav1.Condition{
			Type: fmv1alpha1.ConditionAccepted, Status: metav1.ConditionTrue, Reason: "Accepted",
			Message: "every target exports the service", ObservedGeneration: p.Generation,
		}
		if len(targets) > 0 {
			cond.Reason = fmv1alpha1.ReasonUnknownTargets
			cond.Message = fmt.Sprintf("ignored: %v name no cluster exporting %s", targets, key)
		}
		ps.Conditions = []metav1.Condition{cond}
		st.Policies[key] = ps
	}
	return st
}

// statusWriter writes the status the last rebuild decided, on the leader
// alone: every replica builds and serves the same mesh, one writes what
// it learnt. It reads the objects as they are when it writes, and writes
// only what differs.
type statusWriter struct {
	client  client.Client
	reader  client.Reader
	cluster string
	queue   *batchqueue.Queue[struct{}]
	// events records the warnings (nil: none); recorded are the messages
	// it recorded, by service, pruned as problems go.
	events   events.EventRecorder
	recorded map[string]string

	mu     sync.Mutex
	latest *Status
}

func newStatusWriter(c client.Client, r client.Reader, cluster string, recorder events.EventRecorder, onError func(error)) *statusWriter {
	return &statusWriter{
		client: c, reader: r, cluster: cluster, events: recorder, recorded: map[string]string{},
		queue: batchqueue.New[struct{}](batchqueue.Options{Name: "discovery-status", OnError: onError}),
	}
}

// set hands the writer a rebuild's status.
func (s *statusWriter) set(st Status) {
	s.mu.Lock()
	s.latest = &st
	s.mu.Unlock()
	s.queue.Add(struct{}{})
}

// NeedLeaderElection is true: one replica writes status.
func (s *statusWriter) NeedLeaderElection() bool { return true }

// Start writes status until ctx ends.
func (s *statusWriter) Start(ctx context.Context) error {
	return s.queue.Run(ctx, struct{}{}, func(ctx context.Context, _ []struct{}) error {
		s.mu.Lock()
		st := s.latest
		s.mu.Unlock()
		if st == nil {
			return nil
		}
		s.recordWarnings(st.Warnings)
		return errors.Join(s.writeImports(ctx, st.Imports), s.writePolicies(ctx, st.Policies))
	})
}

func (s *statusWriter) writeImports(ctx context.Context, conds map[string][]metav1.Condition) error {
	var imports fmv1alpha1.ServiceImportList
	if err := s.reader.List(ctx, &imports); err != nil {
		return fmt.Errorf("list ServiceImports in %s: %w", s.cluster, err)
	}
	var errs []error
	for i := range imports.Items {
		imp := &imports.Items[i]
		key := imp.Namespace + "/" + imp.Name
		want, ok := conds[key]
		if !ok {
			continue // not built from yet: the rebuild it causes decides
		}
		next := imp.DeepCopy()
		for _, c := range want {
			meta.SetStatusCondition(&next.Status.Conditions, c)
		}
		if conditionsEqual(imp.Status.Conditions, next.Status.Conditions) {
			continue
		}
		if err := s.client.Status().Patch(ctx, next, client.MergeFrom(imp)); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("write status of ServiceImport %s in %s: %w", key, s.cluster, err))
		}
	}
	return errors.Join(errs...)
}

func (s *statusWriter) writePolicies(ctx context.Context, status map[string]fmv1alpha1.GlobalTrafficPolicyStatus) error {
	var policies fmv1alpha1.GlobalTrafficPolicyList
	if err := s.reader.List(ctx, &policies); err != nil {
		return fmt.Errorf("list GlobalTrafficPolicies in %s: %w", s.cluster, err)
	}
	var errs []error
	for i := range policies.Items {
		p := &policies.Items[i]
		key := p.Namespace + "/" + p.Name
		want, ok := status[key]
		if !ok {
			continue
		}
		next := p.DeepCopy()
		next.Status.ObservedGeneration, next.Status.UnmatchedTargets = want.ObservedGeneration, want.UnmatchedTargets
		for _, c := range want.Conditions {
			meta.SetStatusCondition(&next.Status.Conditions, c)
		}
		if p.Status.ObservedGeneration == next.Status.ObservedGeneration &&
			slices.Equal(p.Status.UnmatchedTargets, next.Status.UnmatchedTargets) &&
			conditionsEqual(p.Status.Conditions, next.Status.Conditions) {
			continue
		}
		if err := s.client.Status().Patch(ctx, next, client.MergeFrom(p)); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("write status of GlobalTrafficPolicy %s in %s: %w", key, s.cluster, err))
		}
	}
	return errors.Join(errs...)
}

func conditionsEqual(a, b []metav1.Condition) bool {
	return slices.EqualFunc(a, b, func(x, y metav1.Condition) bool {
		return x.Type == y.Type && x.Status == y.Status && x.Reason == y.Reason && x.Message == y.Message && x.ObservedGeneration == y.ObservedGeneration
	})
}

// recordWarnings records each warning not recorded yet as a Warning
// event, and forgets those of problems gone.
func (s *statusWriter) recordWarnings(warnings map[string]Warning) {
	for key, w := range warnings {
		if s.recorded[key] == w.Message {
			continue
		}
		s.recorded[key] = w.Message
		if s.events != nil {
			s.events.Eventf(w.Object, nil, corev1.EventTypeWarning, w.Reason, "Discover", "%s", w.Message)
		}
	}
	for key := range s.recorded {
		if _, ok := warnings[key]; !ok {
			delete(s.recorded, key)
		}
	}
}
