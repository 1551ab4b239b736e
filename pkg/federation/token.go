package federation

import (
	"context"
	"fmt"
	"slices"
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

// Defaults of the member token renewal: a day's token, renewed when
// 16 hours are left, so the federation may be down for 16 hours before a
// member must be joined again.
const (
	DefaultTokenTTL         = 24 * time.Hour
	DefaultTokenRenewBefore = 16 * time.Hour
	// MaxTokenTTL is the longest token a member lets the federation ask
	// for (its admission policy): a stolen token cannot outlive it.
	MaxTokenTTL = 24 * time.Hour
)

// TokenSecrets are the Secrets, in the federation ServiceAccount's
// namespace of a member, its tokens are bound to in turn: a new token is
// bound to the one the token in use is not, and deleting a Secret revokes
// the token bound to it at once (the API server checks the bound object
// on every request). Two fixed names let the member's RBAC allow deleting
// these and no other Secret.
var TokenSecrets = [2]string{"fleetmesh-federation-token-a", "fleetmesh-federation-token-b"}

// renewToken replaces a member's ServiceAccount token before it expires:
// when the member's Secret (kubeconfigSecretRef) says which ServiceAccount
// its token is of and when it expires, and that is sooner than
// TokenRenewBefore, the federation asks the member (as that
// ServiceAccount) for a new token bound to the other of TokenSecrets,
// writes it into the Secret, and revokes the old one by deleting the
// Secret it was bound to. The Secret's change reconnects the member with
// the new token. Failures are events on the Cluster; the old token serves
// until it expires.
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
	old := s.Annotations[fmv1alpha1.AnnotationTokenBoundTo]
	token, err := RequestBoundToken(ctx, conn.client, ns, name, f.opts.TokenTTL, old)
	if err != nil {
		fail(fmt.Errorf("ask the member for a token: %w", err))
		return
	}
	key := ref.Key
	if key == "" {
		key = "kubeconfig"
	}
	data, err := WithToken(s.Data[key], token.Token)
	if err != nil {
		fail(err)
		return
	}
	next := s.DeepCopy()
	next.Data[key] = data
	next.Annotations[fmv1alpha1.AnnotationTokenExpires] = token.Expires.UTC().Format(time.RFC3339)
	next.Annotations[fmv1alpha1.AnnotationTokenBoundTo] = token.BoundTo
	if err := f.hub.Update(ctx, next); err != nil {
		fail(fmt.Errorf("write Secret %s/%s: %w", s.Namespace, s.Name, err))
		return
	}
	revoked := ""
	if old != "" {
		// Still as the old token, which this ends.
		if err := RevokeToken(ctx, conn.client, old); err != nil {
			fail(fmt.Errorf("the new token is in use; revoke the old one: %w (it stays valid until %s)", err, expires))
			return
		}
		revoked = "; the old token is revoked (Secret " + old + " deleted)"
	}
	f.events.Eventf(c, nil, corev1.EventTypeNormal, "TokenRenewed", "RenewToken", "renewed the token of %s in the member: valid until %s, bound to Secret %s%s", sa, next.Annotations[fmv1alpha1.AnnotationTokenExpires], token.BoundTo, revoked)
}

// BoundToken is a ServiceAccount token bound to a Secret.
type BoundToken struct {
	Token   string
	Expires time.Time
	// BoundTo is the Secret (namespace/name) whose deletion revokes it.
	BoundTo string
}

// RequestBoundToken asks the cluster c reaches for a token of the
// ServiceAccount namespace/name valid for ttl (TokenRequest), bound to
// the one of TokenSecrets that current (namespace/name: what the token in
// use is bound to, or "") is not, made anew. RevokeToken(current) then
// ends the token in use.
func RequestBoundToken(ctx context.Context, c client.Client, namespace, name string, ttl time.Duration, current string) (BoundToken, error) {
	next := TokenSecrets[0]
	if current == namespace+"/"+TokenSecrets[0] {
		next = TokenSecrets[1]
	}
	boundTo := namespace + "/" + next
	// A Secret of that name binds no token in use: one a renewal left
	// half-way, or the one before last, whose token is ended here.
	if err := RevokeToken(ctx, c, boundTo); err != nil {
		return BoundToken{}, err
	}
	bound := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: namespace, Name: next,
			Labels: map[string]string{fmv1alpha1.ManagedByLabel: fmv1alpha1.ManagedByValue},
			Annotations: map[string]string{
				"fleetmesh.io/purpose": "the token the fleetmesh control plane uses in this cluster, of ServiceAccount " + name + ", is bound to this Secret: deleting it revokes that token",
			},
		},
		Type: corev1.SecretTypeOpaque,
	}
	if err := c.Create(ctx, bound); err != nil {
		return BoundToken{}, fmt.Errorf("create Secret %s to bind the token to: %w", boundTo, err)
	}
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		ExpirationSeconds: ptr.To(int64(ttl.Seconds())),
		BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Secret", APIVersion: "v1", Name: next, UID: bound.UID},
	}}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	if err := c.SubResource("token").Create(ctx, sa, tr); err != nil {
		return BoundToken{}, fmt.Errorf("token of ServiceAccount %s/%s: %w", namespace, name, err)
	}
	return BoundToken{Token: tr.Status.Token, Expires: tr.Status.ExpirationTimestamp.Time, BoundTo: boundTo}, nil
}

// RevokeToken ends the token bound to the Secret boundTo
// (namespace/name, one of TokenSecrets) by deleting it; a Secret already
// gone is no error.
func RevokeToken(ctx context.Context, c client.Client, boundTo string) error {
	ns, name, _ := strings.Cut(boundTo, "/")
	if !slices.Contains(TokenSecrets[:], name) {
		return fmt.Errorf("%q is not a Secret fleetmesh binds tokens to (%s)", boundTo, strings.Join(TokenSecrets[:], ", "))
	}
	if err := c.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("delete Secret %s: %w", boundTo, err)
	}
	return nil
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
