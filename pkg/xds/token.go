package xds

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/metadata"
	authenticationv1 "k8s.io/api/authentication/v1"

	"github.com/fleetmesh/fleetmesh/pkg/bootstrap"
	"github.com/fleetmesh/fleetmesh/pkg/xds/syncz"
)

// The user info keys of a token bound to a pod, as a TokenReview returns
// them.
const (
	podNameExtra = "authentication.kubernetes.io/pod-name"
	podUIDExtra  = "authentication.kubernetes.io/pod-uid"
)

// TokenReviewer asks the API server about a token for bootstrap.TokenAudience (a
// TokenReview).
type TokenReviewer func(ctx context.Context, token string) (authenticationv1.TokenReviewStatus, error)

// errNoCertificate is a TLS client that presented no certificate.
var errNoCertificate = errors.New("the client presented no verified certificate")

// CertificateOrToken authenticates a client by its workload certificate
// when it presents one, else by its stream's bearer token: the fallback
// for pods that cannot get a certificate (clusters without pod
// certificates).
func CertificateOrToken(certificate, token Authenticator) Authenticator {
	return func(ctx context.Context) (Identity, error) {
		id, err := certificate(ctx)
		if errors.Is(err, errNoCertificate) {
			if id, err := token(ctx); err == nil || !errors.Is(err, errNoToken) {
				return id, err
			}
			return Identity{}, errors.New("present a workload certificate, or a ServiceAccount token of audience " + bootstrap.TokenAudience + " bound to the pod (authorization: Bearer)")
		}
		return id, err
	}
}

// errNoToken is a stream without a bearer token.
var errNoToken = errors.New("no bearer token (metadata authorization: Bearer <token>)")

// TokenIdentity authenticates a client by the bearer token of its stream
// (metadata "authorization: Bearer <token>"): a projected ServiceAccount
// token of audience bootstrap.TokenAudience, bound to a pod, as the API server
// says in a TokenReview. The identity is the token's namespace,
// ServiceAccount and pod. Answers are remembered for a minute (a refusal
// for 10 s), by the token's hash; reviews are counted in
// fleetmesh_xds_token_reviews_total.
func TokenIdentity(review TokenReviewer, reg prometheus.Registerer) Authenticator {
	reviews := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fleetmesh_xds_token_reviews_total",
		Help: "TokenReviews of the bearer tokens proxies presented, by result: authenticated, refused (the token or its binding), error (the API server did not answer).",
	}, []string{"result"})
	if reg != nil {
		reg.MustRegister(reviews)
	}
	c := &tokenCache{entries: map[[32]byte]tokenEntry{}}
	return func(ctx context.Context) (Identity, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		values := md.Get("authorization")
		if len(values) == 0 {
			return Identity{}, errNoToken
		}
		token, ok := strings.CutPrefix(values[0], "Bearer ")
		if !ok || token == "" {
			return Identity{}, errors.New("the authorization metadata is not Bearer <token>")
		}
		key := sha256.Sum256([]byte(token))
		if id, err, ok := c.get(key); ok {
			return id, err
		}
		st, err := review(ctx, token)
		if err != nil {
			reviews.WithLabelValues("error").Inc()
			return Identity{}, fmt.Errorf("cannot review the token: %w", err)
		}
		id, err := tokenIdentity(st)
		if err == nil {
			issued, expires := tokenLife(token)
			id.Credential = &syncz.Credential{Kind: syncz.CredentialToken, Identity: st.User.Username, NotBefore: issued, NotAfter: expires}
		}
		if err != nil {
			reviews.WithLabelValues("refused").Inc()
			c.put(key, Identity{}, err, 10*time.Second)
			return Identity{}, err
		}
		reviews.WithLabelValues("authenticated").Inc()
		c.put(key, id, nil, time.Minute)
		return id, nil
	}
}

// tokenIdentity reads the identity of a reviewed token.
func tokenIdentity(st authenticationv1.TokenReviewStatus) (Identity, error) {
	if !st.Authenticated {
		return Identity{}, fmt.Errorf("the API server does not accept the token: %s", st.Error)
	}
	if !slices.Contains(st.Audiences, bootstrap.TokenAudience) {
		return Identity{}, fmt.Errorf("the token is not for audience %s", bootstrap.TokenAudience)
	}
	rest, ok := strings.CutPrefix(st.User.Username, "system:serviceaccount:")
	ns, sa, found := strings.Cut(rest, ":")
	if !ok || !found || ns == "" || sa == "" {
		return Identity{}, fmt.Errorf("the token is %s's, not a ServiceAccount's", st.User.Username)
	}
	pod := st.User.Extra[podNameExtra]
	if len(pod) != 1 || pod[0] == "" || len(st.User.Extra[podUIDExtra]) != 1 {
		return Identity{}, fmt.Errorf("the token of %s/%s is not bound to a pod: use a projected serviceAccountToken volume (audience %s)", ns, sa, bootstrap.TokenAudience)
	}
	return Identity{Namespace: ns, ServiceAccount: sa, Pod: pod[0]}, nil
}

// tokenLife reads the iat and exp claims of a JWT the API server has
// reviewed (its signature is not checked again here); zero times when it
// has none.
func tokenLife(token string) (issued, expires time.Time) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return
	}
	var claims struct {
		Iat int64 `json:"iat"`
		Exp int64 `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil {
		return
	}
	if claims.Iat != 0 {
		issued = time.Unix(claims.Iat, 0)
	}
	if claims.Exp != 0 {
		expires = time.Unix(claims.Exp, 0)
	}
	return
}

// tokenCache remembers reviewed tokens by hash.
type tokenCache struct {
	mu      sync.Mutex
	entries map[[32]byte]tokenEntry
}

type tokenEntry struct {
	id    Identity
	err   error
	until time.Time
}

// maxTokens bounds the cache: a client sending new tokens fills it, and
// then it is emptied of what expired, else of everything.
const maxTokens = 10_000

func (c *tokenCache) get(key [32]byte) (Identity, error, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok || time.Now().After(e.until) {
		return Identity{}, nil, false
	}
	return e.id, e.err, true
}

func (c *tokenCache) put(key [32]byte, id Identity, err error, ttl time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if len(c.entries) >= maxTokens {
		for k, e := range c.entries {
			if now.After(e.until) {
				delete(c.entries, k)
			}
		}
		if len(c.entries) >= maxTokens {
			clear(c.entries)
		}
	}
	c.entries[key] = tokenEntry{id: id, err: err, until: now.Add(ttl)}
}
