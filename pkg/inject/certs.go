package inject

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
	"github.com/fleetmesh/fleetmesh/pkg/internal/recovered"
	"github.com/fleetmesh/fleetmesh/pkg/pki"
)

// CertOptions say where the webhook's serving certificate lives and who
// must trust it.
type CertOptions struct {
	// Namespace and SecretName hold the CA and the serving certificate,
	// shared by every replica.
	Namespace  string
	SecretName string
	// ServiceName is the webhook's Service: the certificate names
	// <service>.<namespace>.svc (and its longer forms).
	ServiceName string
	// WebhookConfigName is the MutatingWebhookConfiguration whose
	// caBundle is kept pointing at the CA.
	WebhookConfigName string
	// GuardConfigName is the ValidatingWebhookConfiguration of the same
	// server (the member's check of the federation's writes) whose
	// caBundle is kept too, when it exists.
	GuardConfigName string
	// CertDir receives tls.crt and tls.key for the webhook server.
	CertDir string
	// Validity of the serving certificate; it is renewed when a third of
	// it is left. The CA lives ten times as long.
	Validity time.Duration
	// CheckEvery is how often the certificate is checked.
	CheckEvery time.Duration
	Log        logr.Logger
}

// Secret keys.
const (
	keyCACert = "ca.crt"
	keyCAKey  = "ca.key"
	keyCert   = "tls.crt"
	keyKey    = "tls.key"
)

// CertManager issues the webhook's serving certificate from a CA of its
// own, keeps it in a Secret, writes it where the webhook server reads it,
// patches the caBundle of the webhook configuration, and renews both
// before they expire. No cert-manager needed.
type CertManager struct {
	client client.Client
	opts   CertOptions
	now    func() time.Time
}

// NewCertManager needs a client that reads through to the API server: the
// controller is allowed to get its own Secret and webhook configuration,
// not to list every Secret.
func NewCertManager(c client.Client, o CertOptions) *CertManager {
	if o.Validity == 0 {
		o.Validity = 365 * 24 * time.Hour
	}
	if o.CheckEvery == 0 {
		o.CheckEvery = time.Hour
	}
	return &CertManager{client: c, opts: o, now: time.Now}
}

// NeedLeaderElection is false: every replica serves the webhook and needs
// the files.
func (m *CertManager) NeedLeaderElection() bool { return false }

// Start keeps the certificate fresh until ctx ends.
func (m *CertManager) Start(ctx context.Context) error {
	t := time.NewTicker(m.opts.CheckEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := recovered.Call(func() error { return m.Ensure(ctx) }); err != nil {
				m.opts.Log.Error(err, "webhook certificate")
			}
		}
	}
}

// hosts are the names the serving certificate carries.
func (m *CertManager) hosts() []string {
	return pki.ServiceHosts(m.opts.ServiceName, m.opts.Namespace)
}

// Ensure makes the Secret, the files and the caBundle current, issuing a
// new certificate (and a new CA when it nears its end) where needed.
func (m *CertManager) Ensure(ctx context.Context) error {
	key := client.ObjectKey{Namespace: m.opts.Namespace, Name: m.opts.SecretName}
	secret := &corev1.Secret{}
	err := m.client.Get(ctx, key, secret)
	switch {
	case apierrors.IsNotFound(err):
		secret = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{
			Namespace: key.Namespace, Name: key.Name,
			Labels: map[string]string{fmv1alpha1.ManagedByLabel: fmv1alpha1.ManagedByValue},
		}, Type: corev1.SecretTypeOpaque}
	case err != nil:
		return fmt.Errorf("get Secret %s: %w", key, err)
	}
	data, changed, err := m.renew(secret.Data)
	if err != nil {
		return err
	}
	if changed {
		secret.Data = data
		if secret.ResourceVersion == "" {
			err = m.client.Create(ctx, secret)
		} else {
			err = m.client.Update(ctx, secret)
		}
		if apierrors.IsAlreadyExists(err) || apierrors.IsConflict(err) {
			// Another replica renewed it first: use theirs.
			if err := m.client.Get(ctx, key, secret); err != nil {
				return fmt.Errorf("get Secret %s: %w", key, err)
			}
		} else if err != nil {
			return fmt.Errorf("write Secret %s: %w", key, err)
		}
		m.opts.Log.Info("webhook serving certificate issued", "secret", key.String())
	}
	if err := m.writeFiles(secret.Data); err != nil {
		return err
	}
	return m.patchCABundle(ctx, secret.Data[keyCACert])
}

// renew returns the Secret's data with a valid CA and serving
// certificate, and whether anything changed.
func (m *CertManager) renew(data map[string][]byte) (map[string][]byte, bool, error) {
	now := m.now()
	out := map[string][]byte{}
	for k, v := range data {
		out[k] = v
	}
	ca, caCert, caKey, changed, err := pki.EnsureCA("fleetmesh-webhook-ca", data[keyCACert], data[keyCAKey], now, 10*m.opts.Validity)
	if err != nil {
		return nil, false, err
	}
	if changed {
		out[keyCACert], out[keyCAKey] = caCert, caKey
	}
	leaf := pki.ParseCert(data[keyCert])
	if changed || leaf == nil || pki.Fresh(leaf, now) < 1.0/3 || !slices.Equal(leaf.DNSNames, m.hosts()) || leaf.CheckSignatureFrom(ca.Cert) != nil {
		hosts := m.hosts()
		// Named after <service>.<namespace>.svc.
		cert, key, err := pki.IssueServing(hosts[len(hosts)-2], hosts, now, m.opts.Validity, ca.Cert, ca.Key)
		if err != nil {
			return nil, false, err
		}
		out[keyCert], out[keyKey], changed = pki.PEMCert(cert), pki.PEMKey(key), true
	}
	return out, changed, nil
}

func (m *CertManager) writeFiles(data map[string][]byte) error {
	if m.opts.CertDir == "" {
		return nil
	}
	if err := os.MkdirAll(m.opts.CertDir, 0o700); err != nil {
		return err
	}
	for _, k := range []string{keyKey, keyCert} { // the key first: the watcher reloads on the certificate
		path := filepath.Join(m.opts.CertDir, k)
		if cur, err := os.ReadFile(path); err == nil && bytes.Equal(cur, data[k]) {
			continue
		}
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, data[k], 0o600); err != nil {
			return err
		}
		if err := os.Rename(tmp, path); err != nil {
			return err
		}
	}
	return nil
}

func (m *CertManager) patchCABundle(ctx context.Context, bundle []byte) error {
	for _, w := range []struct {
		kind, name string
		cfg        client.Object
		// optional: a cluster that is not a member has no check of the
		// federation's writes.
		optional bool
	}{
		{"MutatingWebhookConfiguration", m.opts.WebhookConfigName, &admissionregistrationv1.MutatingWebhookConfiguration{}, false},
		{"ValidatingWebhookConfiguration", m.opts.GuardConfigName, &admissionregistrationv1.ValidatingWebhookConfiguration{}, true},
	} {
		if w.name == "" {
			continue
		}
		err := patchBundle(ctx, m.client, w.name, w.cfg, bundle)
		switch {
		case apierrors.IsNotFound(err) && w.optional:
		case apierrors.IsNotFound(err):
			return fmt.Errorf("%s %s does not exist: apply the install manifests", w.kind, w.name)
		case err != nil:
			return fmt.Errorf("%s %s: %w", w.kind, w.name, err)
		}
	}
	return nil
}

// patchBundle reads the webhook configuration name into cfg and sets the
// caBundle of each of its webhooks, patching it when one differs.
func patchBundle(ctx context.Context, c client.Client, name string, cfg client.Object, bundle []byte) error {
	if err := c.Get(ctx, client.ObjectKey{Name: name}, cfg); err != nil {
		return err
	}
	before := cfg.DeepCopyObject().(client.Object)
	var configs []*admissionregistrationv1.WebhookClientConfig
	switch cfg := cfg.(type) {
	case *admissionregistrationv1.MutatingWebhookConfiguration:
		for i := range cfg.Webhooks {
			configs = append(configs, &cfg.Webhooks[i].ClientConfig)
		}
	case *admissionregistrationv1.ValidatingWebhookConfiguration:
		for i := range cfg.Webhooks {
			configs = append(configs, &cfg.Webhooks[i].ClientConfig)
		}
	}
	changed := false
	for _, cc := range configs {
		if !bytes.Equal(cc.CABundle, bundle) {
			cc.CABundle, changed = bundle, true
		}
	}
	if !changed {
		return nil
	}
	if err := c.Patch(ctx, cfg, client.MergeFrom(before)); err != nil {
		return fmt.Errorf("patch the caBundle: %w", err)
	}
	return nil
}
