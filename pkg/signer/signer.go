// Package signer is fleetmesh's workload certificate signer: it issues the
// certificates of Kubernetes pod certificate requests (KEP-4317) made to
// fleetmesh.io/workload, each naming the pod's ServiceAccount as a SPIFFE
// ID, spiffe://<trust domain>/ns/<namespace>/sa/<service account>. The
// kubelet makes the request for a pod that mounts a podCertificate
// projected volume, with a key it keeps, and proves which pod asks; no
// node agent is needed. The CA is kept in a Secret and its certificates
// are published as a ClusterTrustBundle and a ConfigMap.
package signer

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
	"github.com/fleetmesh/fleetmesh/pkg/internal/recovered"
	"github.com/fleetmesh/fleetmesh/pkg/model"
	"github.com/fleetmesh/fleetmesh/pkg/pki"
)

// Name is the signer name pods ask for in their podCertificate volumes.
const Name = "fleetmesh.io/workload"

// Names of the objects the signer keeps.
const (
	// CASecret, in the controller's namespace, holds the CA (ca.crt, the
	// bundle; ca.key, the newest key).
	CASecret = "fleetmesh-workload-ca"
	// RootsConfigMap, in the controller's namespace, publishes the
	// bundle under roots.pem for clusters or clients that do not read
	// ClusterTrustBundles.
	RootsConfigMap = "fleetmesh-workload-roots"
	// RootsKey is the roots' key in RootsConfigMap.
	RootsKey = "roots.pem"
	// EndorsementsKey in RootsConfigMap holds the CA's endorsements of
	// the CAs that followed it (pki.Endorse): with them, the fleet's
	// other members trust a renewed CA without anyone's word for it.
	EndorsementsKey = "endorsements.pem"
	// TrustDomainKey in RootsConfigMap is the trust domain the signer
	// issues identities in: the federation checks that a fleet has one.
	TrustDomainKey = "trust-domain"
	// TrustBundle is the ClusterTrustBundle linked to the signer.
	TrustBundle = "fleetmesh.io:workload:roots"
	// FleetRootsConfigMap, in the controller's namespace, holds the
	// other members' roots (a key <member>.pem each): the federation
	// writes it.
	FleetRootsConfigMap = "fleetmesh-fleet-roots"
	// FleetTrustBundle is the ClusterTrustBundle of the signer that
	// publishes the other members' roots to this member's pods.
	FleetTrustBundle = "fleetmesh.io:workload:fleet"
)

// Options configure the signer.
type Options struct {
	// Namespace holds the CA Secret and the roots ConfigMap.
	Namespace string
	// TrustDomain is the SPIFFE trust domain of the identities.
	TrustDomain string
	// MaxTTL bounds a certificate's life; a request may ask for less
	// (never under the hour the API requires).
	MaxTTL time.Duration
	// CAValidity is the CA's life; it is renewed with a third left.
	CAValidity time.Duration
	// CAOverlap is how long a renewed CA is published (trusted) before
	// it signs: the time for every pod of the fleet to trust it (the
	// kubelet refreshes trust bundles, the federation carries roots to
	// the other members). 1h when 0.
	CAOverlap time.Duration
	// CACheckEvery is how often the CA and the published roots are
	// checked (and renewed, or repaired); in between, requests are signed
	// with the CA in memory. 10m when 0.
	CACheckEvery time.Duration
	// Tokens is for clusters without pod certificates (before Kubernetes
	// 1.35, or with the API off): pods present ServiceAccount tokens
	// instead, so the signer answers no pod certificate requests and
	// publishes no ClusterTrustBundle. It keeps the CA for the xDS
	// server's certificate and copies the roots ConfigMap into every
	// namespace whose labels match RootsNamespaces, where the pods'
	// projected volumes read it (a ConfigMap projects only from the pod's
	// own namespace).
	Tokens          bool
	RootsNamespaces map[string]string
	// NoPodCertificates, when set, says why the cluster serves no
	// PodCertificateRequests or ClusterTrustBundles though Tokens is off
	// (an older member installed with manifests/member): the signer then
	// keeps the CA and the roots ConfigMap only, for the xDS server, and
	// touches neither API.
	NoPodCertificates string
	// FleetTrust is how the other members' first roots are taken
	// (FleetTrustFirstUse when empty); see DecideFleetTrust.
	FleetTrust FleetTrust
	Log        logr.Logger
}

// Signer issues the workload certificates.
type Signer struct {
	client client.Client
	// reader reads the CA Secret and the published roots from the API
	// server: the signer may get those objects, not list every Secret.
	reader client.Reader
	opts   Options
	now    func() time.Time

	mu      sync.Mutex
	checked time.Time
	// roots are what the signer publishes: its CA's bundle and a staged
	// CA's certificate; endorsements, the proof of its renewals.
	roots, endorsements []byte
	// loaded is the CA as last loaded (under mu, every CACheckEvery),
	// which TLS handshakes read without mu: they never wait on the API
	// server.
	loaded atomic.Pointer[pki.CA]
	// servingMu guards serving, the xDS server's certificate.
	servingMu sync.Mutex
	serving   *tls.Certificate
}

// Rotating the CA by hand: annotate its Secret with RotateAnnotation (any
// new value). The signer stages a new CA at its next check and records
// the value in RotatedAnnotation.
const (
	RotateAnnotation  = "fleetmesh.io/rotate"
	RotatedAnnotation = "fleetmesh.io/rotated"
)

// Replacing a compromised CA: annotate its Secret with
// EmergencyRotateAnnotation (any new value). The signer makes a new CA
// that signs at once and is the only one trusted, and records the value
// in EmergencyRotatedAnnotation. Every certificate of the old CA is
// refused from then on, in this member and, a federation sync later, in
// the fleet: workloads need new certificates (restart them).
const (
	EmergencyRotateAnnotation  = "fleetmesh.io/emergency-rotate"
	EmergencyRotatedAnnotation = "fleetmesh.io/emergency-rotated"
)

// retireKey is the CA Secret's key of when each old CA stops being
// trusted (pki.CAFiles.Retire, as JSON).
const retireKey = "retire-at"

// caRetry is how soon a failed check of the CA is tried again.
const caRetry = 5 * time.Second

// Add registers the signer with the manager: a controller of the pod
// certificate requests made to it. Its replicas need no lock: an issued
// request is written with its resourceVersion, so a second replica's write
// of the same request fails and it finds the request issued.
func Add(mgr ctrl.Manager, o Options) (*Signer, error) {
	if o.TrustDomain == "" {
		o.TrustDomain = "cluster.local"
	}
	if o.MaxTTL == 0 {
		o.MaxTTL = 24 * time.Hour
	}
	if o.CAOverlap == 0 {
		o.CAOverlap = time.Hour
	}
	if o.CACheckEvery == 0 {
		o.CACheckEvery = 10 * time.Minute
	}
	if o.CAValidity == 0 {
		o.CAValidity = 10 * 365 * 24 * time.Hour
	}
	s := &Signer{client: mgr.GetClient(), reader: mgr.GetAPIReader(), opts: o, now: time.Now}
	ours := predicate.NewPredicateFuncs(func(obj client.Object) bool {
		pcr, ok := obj.(*certificatesv1.PodCertificateRequest)
		return ok && pcr.Spec.SignerName == Name
	})
	// The roots are published (and the CA renewed) from the start, not
	// only when a pod first asks: pods trust them before they have a
	// certificate of their own.
	if err := mgr.Add(everyReplica(s.keepCA)); err != nil {
		return nil, err
	}
	if o.NoPodCertificates != "" {
		o.Log.Error(nil, "the signer issues no pod certificates", "why", o.NoPodCertificates)
		return s, nil
	}
	if o.Tokens {
		// A namespace labelled for the mesh gets the roots at once.
		return s, ctrl.NewControllerManagedBy(mgr).
			Named("workload-roots").WithOptions(unelected).
			For(&corev1.Namespace{}, builder.WithPredicates(predicate.NewPredicateFuncs(s.wantsRoots))).
			Complete(reconcile.Func(s.copyRoots))
	}
	fleetRoots := predicate.NewPredicateFuncs(func(obj client.Object) bool {
		return obj.GetNamespace() == o.Namespace && obj.GetName() == FleetRootsConfigMap
	})
	if err := ctrl.NewControllerManagedBy(mgr).
		Named("fleet-roots").WithOptions(unelected).
		For(&corev1.ConfigMap{}, builder.WithPredicates(fleetRoots)).
		Complete(reconcile.Func(s.publishFleetRoots)); err != nil {
		return nil, err
	}
	return s, ctrl.NewControllerManagedBy(mgr).
		Named("workload-signer").WithOptions(unelected).
		For(&certificatesv1.PodCertificateRequest{}, builder.WithPredicates(ours)).
		Complete(s)
}

// The signer runs on every replica, elected or not: each serves TLS with
// the CA it loads, and its writes need no lock (an issued request is
// written with its resourceVersion; the CA is created only where absent).
var unelected = controller.Options{NeedLeaderElection: ptr.To(false)}

// everyReplica is a runnable of every replica, elected or not.
type everyReplica func(context.Context) error

func (f everyReplica) Start(ctx context.Context) error { return f(ctx) }

// NeedLeaderElection is false.
func (everyReplica) NeedLeaderElection() bool { return false }

// ConfigMapCache scopes a cache of ConfigMaps to one of namespace: the
// signer watches its fleet roots (FleetRootsConfigMap) and no other, the
// federation a member's roots (RootsConfigMap).
func ConfigMapCache(namespace, name string) cache.ByObject {
	return cache.ByObject{
		Namespaces: map[string]cache.Config{namespace: {}},
		Field:      fields.OneTermEqualSelector("metadata.name", name),
	}
}

// keepCA checks the CA and the published roots every CACheckEvery.
func (s *Signer) keepCA(ctx context.Context) error {
	for {
		next := s.opts.CACheckEvery
		if _, err := s.ensureCA(ctx); err != nil {
			// Its namespace not made yet, a conflict with another
			// replica: soon again, not in ten minutes.
			s.opts.Log.Error(err, "workload CA")
			next = caRetry
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(next):
		}
	}
}

// Reconcile issues or denies one request, once.
func (s *Signer) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var res ctrl.Result
	err := recovered.Call(func() error {
		var err error
		res, err = s.reconcile(ctx, req)
		return err
	})
	return res, err
}

func (s *Signer) reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	pcr := &certificatesv1.PodCertificateRequest{}
	if err := s.client.Get(ctx, req.NamespacedName, pcr); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if pcr.Spec.SignerName != Name || decided(pcr) {
		return ctrl.Result{}, nil
	}
	ca, err := s.ensureCA(ctx)
	if err != nil {
		return ctrl.Result{}, err
	}
	now := s.now()
	if len(pcr.Spec.UnverifiedUserAnnotations) > 0 {
		return ctrl.Result{}, s.decide(ctx, pcr, certificatesv1.PodCertificateRequestConditionTypeDenied,
			certificatesv1.PodCertificateRequestConditionInvalidUserConfig, "fleetmesh.io/workload takes no unverifiedUserAnnotations", now)
	}
	csr, err := x509.ParseCertificateRequest(pcr.Spec.StubPKCS10Request)
	if err != nil {
		return ctrl.Result{}, s.decide(ctx, pcr, certificatesv1.PodCertificateRequestConditionTypeFailed, "BadRequest", "spec.stubPKCS10Request: "+err.Error(), now)
	}
	ttl := s.opts.MaxTTL
	if m := pcr.Spec.MaxExpirationSeconds; m != nil && time.Duration(*m)*time.Second < ttl {
		ttl = time.Duration(*m) * time.Second
	}
	notBefore := now.Truncate(time.Second)
	notAfter := notBefore.Add(ttl)
	id, err := model.WorkloadID(s.opts.TrustDomain, pcr.Namespace, pcr.Spec.ServiceAccountName)
	if err != nil {
		return ctrl.Result{}, s.decide(ctx, pcr, certificatesv1.PodCertificateRequestConditionTypeFailed, "BadRequest", err.Error(), now)
	}
	// The subject names the pod (and its UID), which the xDS server
	// holds the pod's proxy to.
	tmpl := pki.Workload(id.URL(), notBefore, notAfter)
	tmpl.Subject = pkix.Name{CommonName: pcr.Spec.PodName, SerialNumber: string(pcr.Spec.PodUID)}
	der, err := pki.Sign(tmpl, csr.PublicKey, ca)
	if errors.Is(err, pki.ErrUnsupportedKey) {
		return ctrl.Result{}, s.decide(ctx, pcr, certificatesv1.PodCertificateRequestConditionTypeDenied,
			certificatesv1.PodCertificateRequestConditionUnsupportedKeyType, "use ECDSAP256 (or ECDSAP384, ECDSAP521, ED25519, RSA3072, RSA4096)", now)
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	pcr.Status.CertificateChain = string(pki.PEMCert(der))
	pcr.Status.NotBefore = &metav1.Time{Time: notBefore}
	pcr.Status.NotAfter = &metav1.Time{Time: notAfter}
	// The kubelet asks again half way through.
	pcr.Status.BeginRefreshAt = &metav1.Time{Time: notBefore.Add(ttl / 2)}
	if err := s.decide(ctx, pcr, certificatesv1.PodCertificateRequestConditionTypeIssued, "Issued", "issued for "+id.String(), now); err != nil {
		return ctrl.Result{}, err
	}
	s.opts.Log.V(1).Info("workload certificate issued", "request", req.NamespacedName, "pod", pcr.Spec.PodName, "id", id.String(), "notAfter", notAfter)
	return ctrl.Result{}, nil
}

// decided says whether the request has its answer already.
func decided(pcr *certificatesv1.PodCertificateRequest) bool {
	for _, t := range []string{
		certificatesv1.PodCertificateRequestConditionTypeIssued,
		certificatesv1.PodCertificateRequestConditionTypeDenied,
		certificatesv1.PodCertificateRequestConditionTypeFailed,
	} {
		if meta.IsStatusConditionTrue(pcr.Status.Conditions, t) {
			return true
		}
	}
	return false
}

// decide writes the request's answer; a request another replica answered
// meanwhile is left as it is.
func (s *Signer) decide(ctx context.Context, pcr *certificatesv1.PodCertificateRequest, typ, reason, message string, now time.Time) error {
	meta.SetStatusCondition(&pcr.Status.Conditions, metav1.Condition{
		Type: typ, Status: metav1.ConditionTrue, Reason: reason, Message: message,
		LastTransitionTime: metav1.Time{Time: now}, ObservedGeneration: pcr.Generation,
	})
	err := s.client.Status().Update(ctx, pcr)
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return nil // answered (or gone) meanwhile; a change requeues it
	}
	if err != nil {
		return fmt.Errorf("write %s of PodCertificateRequest %s/%s: %w", typ, pcr.Namespace, pcr.Name, err)
	}
	return nil
}

// ensureCA returns the CA, reading it from its Secret (making or renewing
// it there, and keeping the published roots current) at most every
// CACheckEvery.
func (s *Signer) ensureCA(ctx context.Context) (*pki.CA, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ca := s.loaded.Load(); ca != nil && s.now().Sub(s.checked) < s.opts.CACheckEvery {
		return ca, nil
	}
	ca, err := s.readCA(ctx)
	if err != nil {
		return nil, err
	}
	s.checked = s.now()
	s.loaded.Store(ca)
	return ca, nil
}

func (s *Signer) readCA(ctx context.Context) (*pki.CA, error) {
	key := client.ObjectKey{Namespace: s.opts.Namespace, Name: CASecret}
	secret := &corev1.Secret{}
	err := s.reader.Get(ctx, key, secret)
	switch {
	case apierrors.IsNotFound(err):
		secret = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name, Labels: map[string]string{fmv1alpha1.ManagedByLabel: fmv1alpha1.ManagedByValue}},
			Type:       corev1.SecretTypeOpaque,
		}
	case err != nil:
		return nil, fmt.Errorf("get Secret %s: %w", key, err)
	}
	files := pki.CAFiles{
		Bundle: secret.Data["ca.crt"], Key: secret.Data["ca.key"],
		NextCert: secret.Data["next.crt"], NextKey: secret.Data["next.key"],
	}
	files.NextSince, _ = time.Parse(time.RFC3339, string(secret.Data["next-since"]))
	files.Endorsements = secret.Data[EndorsementsKey]
	if raw := secret.Data[retireKey]; len(raw) > 0 {
		if err := json.Unmarshal(raw, &files.Retire); err != nil {
			s.opts.Log.Info("workload CA: unreadable retirement times; the old CAs are retired a workload certificate's life from now", "key", retireKey, "error", err.Error())
		}
	}
	request := secret.Annotations[RotateAnnotation]
	rotate := request != "" && request != secret.Annotations[RotatedAnnotation]
	emergencyRequest := secret.Annotations[EmergencyRotateAnnotation]
	emergency := emergencyRequest != "" && emergencyRequest != secret.Annotations[EmergencyRotatedAnnotation]
	files, ca, changed, err := pki.StageCA("fleetmesh-workload-ca", files, s.now(), pki.StageOptions{
		Validity: s.opts.CAValidity, Overlap: s.opts.CAOverlap, MaxTTL: s.opts.MaxTTL, Rotate: rotate, Emergency: emergency,
	})
	if err != nil {
		return nil, err
	}
	answer := func(key, value string) {
		if secret.Annotations == nil {
			secret.Annotations = map[string]string{}
		}
		secret.Annotations[key] = value
		changed = true
	}
	switch {
	case emergency:
		// The request is answered: the new CA alone signs and is trusted.
		answer(EmergencyRotatedAnnotation, emergencyRequest)
		if rotate {
			answer(RotatedAnnotation, request)
		}
		s.opts.Log.Info("workload CA replaced at once (emergency): every certificate of the old CA is refused from now on; restart the workloads so that they get new ones")
	case rotate && len(files.NextCert) > 0:
		// The request is answered: a CA is staged.
		answer(RotatedAnnotation, request)
		s.opts.Log.Info("workload CA staged: published now, signing after the overlap", "overlap", s.opts.CAOverlap)
	}
	if changed {
		secret.Data = map[string][]byte{"ca.crt": files.Bundle, "ca.key": files.Key}
		if len(files.NextCert) > 0 {
			secret.Data["next.crt"], secret.Data["next.key"] = files.NextCert, files.NextKey
			secret.Data["next-since"] = []byte(files.NextSince.UTC().Format(time.RFC3339))
		}
		if len(files.Endorsements) > 0 {
			secret.Data[EndorsementsKey] = files.Endorsements
		}
		if len(files.Retire) > 0 {
			raw, err := json.Marshal(files.Retire)
			if err != nil {
				return nil, err
			}
			secret.Data[retireKey] = raw
		}
		if secret.ResourceVersion == "" {
			err = s.client.Create(ctx, secret)
		} else {
			err = s.client.Update(ctx, secret)
		}
		if apierrors.IsAlreadyExists(err) || apierrors.IsConflict(err) {
			return nil, fmt.Errorf("the workload CA changed meanwhile (another replica): %w", err)
		}
		if err != nil {
			return nil, fmt.Errorf("store the workload CA in Secret %s: %w", key, err)
		}
	}
	s.roots, s.endorsements = files.Roots(), files.Endorsements
	return ca, s.publish(ctx, s.roots)
}

// publish writes the roots where workloads read them: the signer's
// ClusterTrustBundle and the roots ConfigMap (with Tokens: the roots
// ConfigMap and its copies in the mesh's namespaces).
func (s *Signer) publish(ctx context.Context, roots []byte) error {
	if !s.opts.Tokens && s.opts.NoPodCertificates == "" {
		if err := s.publishBundle(ctx, TrustBundle, roots); err != nil {
			return err
		}
	}
	if err := s.publishConfigMap(ctx, s.opts.Namespace, roots, s.endorsements); err != nil {
		return err
	}
	if !s.opts.Tokens {
		return nil
	}
	var nss corev1.NamespaceList
	if err := s.client.List(ctx, &nss, client.MatchingLabels(s.opts.RootsNamespaces)); err != nil {
		return fmt.Errorf("list the namespaces that get the workload roots: %w", err)
	}
	var errs []error
	for _, ns := range nss.Items {
		if ns.Name != s.opts.Namespace && ns.DeletionTimestamp == nil {
			errs = append(errs, s.publishConfigMap(ctx, ns.Name, roots, nil))
		}
	}
	return errors.Join(errs...)
}

// publishBundle writes the signer's ClusterTrustBundle name.
func (s *Signer) publishBundle(ctx context.Context, name string, roots []byte) error {
	ctb := &certificatesv1.ClusterTrustBundle{}
	err := s.reader.Get(ctx, client.ObjectKey{Name: name}, ctb)
	switch {
	case apierrors.IsNotFound(err):
		ctb = &certificatesv1.ClusterTrustBundle{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: managedBy()},
			Spec:       certificatesv1.ClusterTrustBundleSpec{SignerName: Name, TrustBundle: string(roots)},
		}
		err = s.client.Create(ctx, ctb)
	case err == nil && ctb.Spec.TrustBundle != string(roots):
		ctb.Spec.TrustBundle = string(roots)
		err = s.client.Update(ctx, ctb)
	}
	if err != nil && !apierrors.IsAlreadyExists(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("publish the workload roots in ClusterTrustBundle %s: %w", name, err)
	}
	return nil
}

func managedBy() map[string]string {
	return map[string]string{fmv1alpha1.ManagedByLabel: fmv1alpha1.ManagedByValue}
}

// publishConfigMap writes the roots as ConfigMap RootsConfigMap of ns,
// under RootsKey. A ConfigMap of that name fleetmesh did not make is
// left alone.
func (s *Signer) publishConfigMap(ctx context.Context, ns string, roots, endorsements []byte) error {
	cm := &corev1.ConfigMap{}
	err := s.reader.Get(ctx, client.ObjectKey{Namespace: ns, Name: RootsConfigMap}, cm)
	data := map[string]string{RootsKey: string(roots), TrustDomainKey: s.opts.TrustDomain}
	if len(endorsements) > 0 {
		data[EndorsementsKey] = string(endorsements)
	}
	switch {
	case apierrors.IsNotFound(err):
		cm = &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: RootsConfigMap, Labels: managedBy()},
			Data:       data,
		}
		err = s.client.Create(ctx, cm)
	case err == nil && cm.Labels[fmv1alpha1.ManagedByLabel] != fmv1alpha1.ManagedByValue:
		return fmt.Errorf("ConfigMap %s/%s is not fleetmesh's (no label %s=%s): its pods cannot read the workload roots until it is renamed or removed",
			ns, RootsConfigMap, fmv1alpha1.ManagedByLabel, fmv1alpha1.ManagedByValue)
	case err == nil && !maps.Equal(cm.Data, data):
		cm.Data = data
		err = s.client.Update(ctx, cm)
	}
	if err != nil && !apierrors.IsAlreadyExists(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("publish the workload roots in ConfigMap %s/%s: %w", ns, RootsConfigMap, err)
	}
	return nil
}

// wantsRoots is a namespace the roots are copied into (Tokens).
func (s *Signer) wantsRoots(obj client.Object) bool {
	for k, v := range s.opts.RootsNamespaces {
		if obj.GetLabels()[k] != v {
			return false
		}
	}
	return obj.GetDeletionTimestamp() == nil
}

// copyRoots writes the roots into one namespace labelled for the mesh.
func (s *Signer) copyRoots(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	return reconcile.Result{}, recovered.Call(func() error {
		ns := &corev1.Namespace{}
		if err := s.client.Get(ctx, client.ObjectKey{Name: req.Name}, ns); err != nil {
			return client.IgnoreNotFound(err)
		}
		if !s.wantsRoots(ns) || ns.Name == s.opts.Namespace {
			return nil
		}
		if _, err := s.ensureCA(ctx); err != nil {
			return err
		}
		s.mu.Lock()
		roots := s.roots
		s.mu.Unlock()
		return s.publishConfigMap(ctx, ns.Name, roots, nil)
	})
}

// ServerTLS is the TLS configuration of a server whose clients are
// workloads (the xDS server): it presents a certificate for id and hosts,
// issued from the workload CA and renewed at half its life, and checks
// client certificates against the workload roots, read afresh for each
// connection: required (tls.RequireAndVerifyClientCert), or checked when
// given (tls.VerifyClientCertIfGiven: clients may authenticate otherwise).
func (s *Signer) ServerTLS(id *url.URL, hosts []string, clientAuth tls.ClientAuthType) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		ClientAuth: clientAuth,
		// Everything a handshake needs is in memory: the CA as the
		// signer's background check last loaded it (every
		// CACheckEvery), and the certificate it issued. During an API
		// server outage proxies still connect.
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			ca := s.loaded.Load()
			if ca == nil {
				return nil, s.Loaded()
			}
			cert, err := s.servingCert(ca, id, hosts)
			if err != nil {
				return nil, err
			}
			roots := x509.NewCertPool()
			for _, c := range ca.Bundle {
				roots.AddCert(c)
			}
			return &tls.Config{
				MinVersion:   tls.VersionTLS12,
				ClientAuth:   clientAuth,
				ClientCAs:    roots,
				Certificates: []tls.Certificate{*cert},
				NextProtos:   []string{"h2"},
			}, nil
		},
	}
}

// Loaded says whether the CA is loaded, which ServerTLS's handshakes
// need.
func (s *Signer) Loaded() error {
	if s.loaded.Load() == nil {
		return errors.New("the workload CA is not loaded yet")
	}
	return nil
}

// servingCert is the server's own certificate, issued again when half of
// it is used or the CA changed.
func (s *Signer) servingCert(ca *pki.CA, id *url.URL, hosts []string) (*tls.Certificate, error) {
	s.servingMu.Lock()
	defer s.servingMu.Unlock()
	now := s.now()
	if c := s.serving; c != nil && pki.Fresh(c.Leaf, now) > 0.5 && c.Leaf.CheckSignatureFrom(ca.Cert) == nil {
		return c, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := pki.Workload(id, now.Add(-5*time.Minute), now.Add(s.opts.MaxTTL))
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := pki.Sign(tmpl, &key.PublicKey, ca)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	s.serving = &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
	return s.serving, nil
}
