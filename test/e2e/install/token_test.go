package install

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fmv1alpha1 "github.com/fleetmesh/fleetmesh/api/v1alpha1"
	"github.com/fleetmesh/fleetmesh/pkg/federation"
	"github.com/fleetmesh/fleetmesh/test/testenv"
)

// checkTokensAreRevoked runs once the federation has renewed the members'
// join tokens. Each renewed token is bound to the second of
// federation.TokenSecrets, and the join's (bound to the first) was revoked
// by deleting its Secret. Joining member-1 again binds a new token to the
// first and revokes the renewed one: the member's API server refuses it,
// and the federation carries on with the new one.
func checkTokensAreRevoked(t *testing.T, ctx context.Context, hub *testenv.Cluster) {
	t.Helper()
	stored := func(member string) (*corev1.Secret, string) {
		s := &corev1.Secret{}
		if err := hub.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "fleetmesh-member-" + member}, s); err != nil {
			t.Fatal(err)
		}
		kc, err := clientcmd.Load(s.Data["kubeconfig"])
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range kc.AuthInfos {
			return s, u.Token
		}
		t.Fatalf("Secret %s holds no user", s.Name)
		return nil, ""
	}
	bound := func(m *testenv.Cluster, name string) bool {
		err := m.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &corev1.Secret{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		return err == nil
	}
	for _, name := range []string{"member-1", "member-2"} {
		m := fleet.Cluster(name)
		s, _ := stored(name)
		if got, want := s.Annotations[fmv1alpha1.AnnotationTokenBoundTo], ns+"/"+federation.TokenSecrets[1]; got != want {
			t.Errorf("%s: the renewed token is bound to %q, want %q", name, got, want)
		}
		if bound(m, federation.TokenSecrets[0]) || !bound(m, federation.TokenSecrets[1]) {
			t.Errorf("%s: after renewal, the join token's Secret %s should be gone and the renewed one's %s there", name, federation.TokenSecrets[0], federation.TokenSecrets[1])
		}
	}

	m1 := fleet.Cluster("member-1")
	_, renewed := stored("member-1")
	// Whether the member's API server accepts a token, asked by its
	// admin (a TokenReview), so that the federation's audit trail holds
	// only what the federation did.
	member := func(token string) error {
		tr, err := kubernetes.NewForConfigOrDie(m1.Config).AuthenticationV1().TokenReviews().Create(ctx,
			&authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token}}, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		if !tr.Status.Authenticated {
			return fmt.Errorf("%w: %s", errRefused, tr.Status.Error)
		}
		return nil
	}
	if err := member(renewed); err != nil {
		t.Fatalf("the renewed token is refused before it was replaced: %v", err)
	}
	fleetmesh(t, ctx, "--context", "hub", "cluster", "join", "member-1", "--member-context", "member-1", "--network", "flat", "--gateway-host", "10.244.0.9", "--token-ttl", "2h")
	s, joined := stored("member-1")
	if got, want := s.Annotations[fmv1alpha1.AnnotationTokenBoundTo], ns+"/"+federation.TokenSecrets[0]; got != want || joined == renewed {
		t.Errorf("joined again: the token is bound to %q, want %q (a new token: %v)", got, want, joined != renewed)
	}
	// The API server remembers a token's answer for a few seconds.
	var last error
	err := testenv.Eventually(ctx, 30*time.Second, func(context.Context) (bool, error) {
		last = member(renewed)
		return errors.Is(last, errRefused), nil
	})
	if err != nil {
		t.Errorf("the replaced token still works in member-1: %v", last)
	}
	var state string
	err = testenv.Eventually(ctx, 30*time.Second, func(ctx context.Context) (bool, error) {
		c := &fmv1alpha1.Cluster{}
		if err := hub.Client.Get(ctx, client.ObjectKey{Name: "member-1"}, c); err != nil {
			return false, err
		}
		cond := meta.FindStatusCondition(c.Status.Conditions, fmv1alpha1.ConditionReady)
		works := member(joined)
		state = fmt.Sprintf("Ready %+v; the new token: %v", cond, works)
		return cond != nil && cond.Status == metav1.ConditionTrue && works == nil, nil
	})
	if err != nil {
		t.Fatalf("member-1 is not Ready with its new token: %s", state)
	}
}

// errRefused is a token the API server does not accept.
var errRefused = errors.New("the API server refuses the token")
