package xds

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
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
// ServiceAccount and pod. Reviews are counted in
// fleetmesh_xds_token_reviews_total.
//
// A fleet reconnecting at once (a control plane restart) must not wait on
// reviews, and garbage must not stand in its way:
//   - a token that cannot be one the API server accepts here (not a JWT,
//     not for the audience, expired, bound to no pod) is refused without
//     a review;
//   - a client address may have reviewsPerClient reviews a second (a
//     burst of reviewBurst): one pod sending tokens cannot spend the
//     reviews of all;
//   - an accepted token is remembered until it expires, five minutes at
//     most, apart from the refusals (10 s), which cannot push it out.
//
// (The API server's cached token authenticator, which pkg/kubeauth's
// authenticator uses, keeps every entry for a fixed time in a cache of no
// bound: a flood of distinct tokens would grow it, and an accepted token
// would outlive its own expiry. Hence this cache.)
func TokenIdentity(review TokenReviewer, reg prometheus.Registerer) Authenticator {
	reviews := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fleetmesh_xds_token_reviews_total",
		Help: "Bearer tokens proxies presented, by result: authenticated, refused (by the API server: the token or its binding), malformed (refused without a review: not a pod's token of the audience), throttled (the client address asked too often), error (the API server did not answer).",
	}, []string{"result"})
	if reg != nil {
		reg.MustRegister(reviews)
	}
	accepted := &tokenCache{entries: map[[32]byte]tokenEntry{}, max: maxTokens}
	refused := &tokenCache{entries: map[[32]byte]tokenEntry{}, max: maxRefusals}
	limits := &clientLimits{limiters: map[string]*rate.Limiter{}}
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
		if id, _, ok := accepted.get(key); ok {
			return id, nil
		}
		if _, err, ok := refused.get(key); ok {
			return Identity{}, err
		}
		c, err := readClaims(token)
		if err != nil {
			reviews.WithLabelValues("malformed").Inc()
			refused.put(key, Identity{}, err, refusalTTL)
			return Identity{}, err
		}
		if !limits.allow(ctx) {
			reviews.WithLabelValues("throttled").Inc()
			return Identity{}, errors.New("too many tokens from this address to review; try again in a moment")
		}
		st, err := review(ctx, token)
		if err != nil {
			reviews.WithLabelValues("error").Inc()
			return Identity{}, fmt.Errorf("cannot review the token: %w", err)
		}
		id, err := tokenIdentity(st)
		if err != nil {
			reviews.WithLabelValues("refused").Inc()
			refused.put(key, Identity{}, err, refusalTTL)
			return Identity{}, err
		}
		issued, expires := c.life()
		id.Credential = &syncz.Credential{Kind: syncz.CredentialToken, Identity: st.User.Username, NotBefore: issued, NotAfter: expires}
		reviews.WithLabelValues("authenticated").Inc()
		accepted.put(key, id, nil, min(acceptedTTL, time.Until(expires)))
		return id, nil
	}
}

// How long reviews are remembered, and how many: enough accepted tokens
// for a fleet's proxies, and refusals apart, so a flood of them cannot
// push out the fleet's.
const (
	acceptedTTL = 5 * time.Minute
	refusalTTL  = 10 * time.Second
	maxTokens   = 100_000
	maxRefusals = 10_000
)

// claims are what a token says of itself, read before it is reviewed.
type claims struct {
	Aud        audiences `json:"aud"`
	Iat        int64     `json:"iat"`
	Exp        int64     `json:"exp"`
	Kubernetes struct {
		Pod struct {
			Name string `json:"name"`
		} `json:"pod"`
	} `json:"kubernetes.io"`
}

// audiences is a JWT's aud: one string or a list.
type audiences []string

func (a *audiences) UnmarshalJSON(data []byte) error {
	var one string
	if json.Unmarshal(data, &one) == nil {
		*a = []string{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(data, &many); err != nil {
		return err
	}
	*a = many
	return nil
}

// readClaims reads a token's claims (its signature is the API server's
// to check) and refuses one the API server would not accept as a pod's
// token of bootstrap.TokenAudience, saying why.
func readClaims(token string) (claims, error) {
	var c claims
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return c, errors.New("the token is not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil || json.Unmarshal(payload, &c) != nil {
		return c, errors.New("the token is not a JWT")
	}
	switch {
	case !slices.Contains(c.Aud, bootstrap.TokenAudience):
		return c, fmt.Errorf("the token is not for audience %s", bootstrap.TokenAudience)
	case c.Exp == 0 || time.Unix(c.Exp, 0).Before(time.Now()):
		return c, errors.New("the token has expired")
	case c.Kubernetes.Pod.Name == "":
		return c, fmt.Errorf("the token is not bound to a pod: use a projected serviceAccountToken volume (audience %s)", bootstrap.TokenAudience)
	}
	return c, nil
}

// life is when the token was issued and expires (zero when it does not
// say).
func (c claims) life() (issued, expires time.Time) {
	if c.Iat != 0 {
		issued = time.Unix(c.Iat, 0)
	}
	if c.Exp != 0 {
		expires = time.Unix(c.Exp, 0)
	}
	return issued, expires
}

// Reviews a client address may ask for: a pod reconnecting needs one.
const (
	reviewsPerClient = 1
	reviewBurst      = 5
	maxClients       = 10_000
)

// clientLimits are the review budgets of the client addresses.
type clientLimits struct {
	mu       sync.Mutex
	limiters map[string]*rate.Limiter
}

func (l *clientLimits) allow(ctx context.Context) bool {
	addr := ""
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		addr = p.Addr.String()
		if host, _, err := net.SplitHostPort(addr); err == nil {
			addr = host
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	lim := l.limiters[addr]
	if lim == nil {
		if len(l.limiters) >= maxClients {
			// Forget those with a full budget: they are as new.
			for a, other := range l.limiters {
				if other.Tokens() >= reviewBurst {
					delete(l.limiters, a)
				}
			}
		}
		lim = rate.NewLimiter(reviewsPerClient, reviewBurst)
		l.limiters[addr] = lim
	}
	return lim.Allow()
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

// tokenCache remembers reviewed tokens by hash, at most max of them:
// when full, those expired are dropped, else the ones that expire first.
type tokenCache struct {
	mu      sync.Mutex
	entries map[[32]byte]tokenEntry
	max     int
}

type tokenEntry struct {
	id    Identity
	err   error
	until time.Time
}

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
	if ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if len(c.entries) >= c.max {
		for k, e := range c.entries {
			if now.After(e.until) {
				delete(c.entries, k)
			}
		}
	}
	if len(c.entries) >= c.max {
		// Those that expire first go, a tenth at a time.
		untils := make([]time.Time, 0, len(c.entries))
		for _, e := range c.entries {
			untils = append(untils, e.until)
		}
		slices.SortFunc(untils, time.Time.Compare)
		cut := untils[len(untils)/10]
		for k, e := range c.entries {
			if !e.until.After(cut) {
				delete(c.entries, k)
			}
		}
	}
	c.entries[key] = tokenEntry{id: id, err: err, until: now.Add(ttl)}
}
