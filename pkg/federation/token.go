package federation

import (
	"context"
	"fmt"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
)

// Defaults of the member token renewal.
const (
	DefaultTokenTTL         = 365 * 24 * time.Hour
	DefaultTokenRenewBefore = 30 * 24 * time.Hour
)

// renewToken replaces a member's ServiceAccount token before it expires:
// when the member's Secret (kubeconfigSecretRef) says which ServiceAccount
// its token is of and when it expires, and that is sooner than
// TokenRenewBefore, the federation asks the member (as that
// ServiceAccount) for a new token and writes it into the Secret. The
// Secret's change reconnects the member with it. Failures are events on
// the Cluster; the old token serves until it expires.
func (f *Federation) renewToken(ctx context.Context, c *fmv1alpha1.Cluster, conn *memberConn) {
	ref := c.Spec.KubeconfigSecretRef
	if ref == nil || conn.client == nil {
		return
	}
	s := &corev1.Secret{}
	if err := f.hub.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, s); err != nil {
		return // the connection reports a missing Secret
	}
	sa, expires := s.Annotations[fmv1alpha1.AnnotationServiceAccount], s.Annotations[fmv1alpha1.AnnotationTokenExpires]
	until, err := time.Parse(time.RFC3339, expires)
	if sa == "" || err != nil || time.Until(until) > f.opts.TokenRenewBefore || time.Since(f.renewedAt[c.Name]) < 10*time.Minute {
		return
	}
	if f.renewedAt == nil {
		f.renewedAt = map[string]time.Time{}
	}
	f.renewedAt[c.Name] = time.Now()
	fail := func(err error) {
		f.opts.Log.Error(err, "renew the member's token", "member", c.Name)
		f.events.Eventf(c, nil, corev1.EventTypeWarning, "TokenRenewalFailed", "RenewToken", "renew the token of %s (it expires %s): %v", sa, expires, err)
	}
	ns, name, _ := strings.Cut(sa, "/")
	token, until, err := RequestToken(ctx, conn.client, ns, name, f.opts.TokenTTL)
	if err != nil {
		fail(fmt.Errorf("ask the member for a token: %w", err))
		return
	}
	key := ref.Key
	if key == "" {
		key = "kubeconfig"
	}
	data, err := WithToken(s.Data[key], token)
	if err != nil {
		fail(err)
		return
	}
	next := s.DeepCopy()
	next.Data[key] = data
	next.Annotations[fmv1alpha1.AnnotationTokenExpires] = until.UTC().Format(time.RFC3339)
	if err := f.hub.Update(ctx, next); err != nil {
		fail(fmt.Errorf("write Secret %s/%s: %w", s.Namespace, s.Name, err))
		return
	}
	f.events.Eventf(c, nil, corev1.EventTypeNormal, "TokenRenewed", "RenewToken", "renewed the token of %s in the member: valid until %s", sa, next.Annotations[fmv1alpha1.AnnotationTokenExpires])
}

// RequestToken asks the cluster c reaches for a token of the
// ServiceAccount namespace/name valid for ttl (TokenRequest), and returns
// it with its expiry.
func RequestToken(ctx context.Context, c client.Client, namespace, name string, ttl time.Duration) (string, time.Time, error) {
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(ttl.Seconds()))}}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	if err := c.SubResource("token").Create(ctx, sa, tr); err != nil {
		return "", time.Time{}, fmt.Errorf("token of ServiceAccount %s/%s: %w", namespace, name, err)
	}
	return tr.Status.Token, tr.Status.ExpirationTimestamp.Time, nil
}

// WithToken returns the kubeconfig with its users replaced by one that
// holds token and nothing else.
func WithToken(kubeconfig []byte, token string) ([]byte, error) {
	kc, err := clientcmd.Load(kubeconfig)
	if err != nil {
		return nil, err
	}
	const user = "fleetmesh-federation"
	kc.AuthInfos = map[string]*clientcmdapi.AuthInfo{user: {Token: token}}
	for _, c := range kc.Contexts {
		c.AuthInfo = user
	}
	return clientcmd.Write(*kc)
}
