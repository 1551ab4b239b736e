// Package kubeauth authenticates and authorizes HTTP callers the way a
// Kubernetes API server would for itself: a bearer token is checked by a
// TokenReview, a client certificate against the cluster's client CA (the
// ConfigMap kube-system/extension-apiserver-authentication, as aggregated
// API servers read it), and what the caller asks is decided by a
// SubjectAccessReview, so RBAC says who may read what.
package kubeauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apiserver/pkg/apis/apiserver"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/authenticatorfactory"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/authorization/authorizerfactory"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// ClientCAConfigMap is where a cluster publishes the CA of its client
// certificates (namespace kube-system, key client-ca-file).
const ClientCAConfigMap = "extension-apiserver-authentication"

// Rule is how a path is guarded.
type Rule int

const (
	// Open paths answer anyone (probes).
	Open Rule = iota
	// Authenticated paths need a caller; the handler authorizes what it
	// serves to it (Allowed).
	Authenticated
	// NonResource paths need a caller allowed the request's verb on the
	// path, as RBAC's nonResourceURLs grant (e.g. get /metrics).
	NonResource
)

// Auth authenticates and authorizes callers against one cluster.
type Auth struct {
	authn authenticator.Request
	authz authorizer.Authorizer
	log   logr.Logger
}

// New checks callers against the cluster cs reaches. It watches the
// cluster's client CA until ctx ends; where it cannot be read, client
// certificates are not accepted and tokens still are.
func New(ctx context.Context, cs kubernetes.Interface, log logr.Logger) (*Auth, error) {
	ca, err := dynamiccertificates.NewDynamicCAFromConfigMapController("client-ca", metav1.NamespaceSystem, ClientCAConfigMap, "client-ca-file", cs)
	if err != nil {
		return nil, err
	}
	go ca.Run(ctx, 1)
	backoff := &wait.Backoff{Duration: 500 * time.Millisecond, Factor: 1.5, Jitter: 0.2, Steps: 5}
	authn, _, err := authenticatorfactory.DelegatingAuthenticatorConfig{
		Anonymous:                          &apiserver.AnonymousAuthConfig{Enabled: false},
		CacheTTL:                           time.Minute,
		TokenAccessReviewClient:            cs.AuthenticationV1(),
		TokenAccessReviewTimeout:           10 * time.Second,
		WebhookRetryBackoff:                backoff,
		ClientCertificateCAContentProvider: ca,
	}.New()
	if err != nil {
		return nil, fmt.Errorf("the authenticator: %w", err)
	}
	authz, err := authorizerfactory.DelegatingAuthorizerConfig{
		SubjectAccessReviewClient: cs.AuthorizationV1(),
		AllowCacheTTL:             time.Minute,
		DenyCacheTTL:              10 * time.Second,
		WebhookRetryBackoff:       backoff,
	}.New()
	if err != nil {
		return nil, fmt.Errorf("the authorizer: %w", err)
	}
	return &Auth{authn: authn, authz: authz, log: log}, nil
}

type userKey struct{}

// Guard serves next to the callers rule allows for the request's path:
// 401 to a request without valid credentials, 403 to a caller RBAC does
// not allow.
func (a *Auth) Guard(rule func(path string) Rule, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		how := rule(r.URL.Path)
		if how == Open {
			next.ServeHTTP(w, r)
			return
		}
		res, ok, err := a.authn.AuthenticateRequest(r)
		switch {
		case err != nil && !ok:
			// A token the API server refused, or a certificate of
			// another CA: the caller is not known.
			a.log.V(1).Info("refused an unauthenticated debug API request", "path", r.URL.Path, "remote", r.RemoteAddr, "error", err.Error())
			http.Error(w, "Unauthorized: "+err.Error(), http.StatusUnauthorized)
			return
		case !ok:
			http.Error(w, "Unauthorized: present a bearer token or a client certificate of this cluster (as kubectl does; fleetmesh proxy-status does with your kubeconfig)", http.StatusUnauthorized)
			return
		}
		// The caller is known: the token is not needed any further.
		r.Header.Del("Authorization")
		r = r.WithContext(context.WithValue(r.Context(), userKey{}, res.User))
		if how == NonResource {
			verb := strings.ToLower(r.Method)
			allowed, err := a.decide(r.Context(), authorizer.AttributesRecord{User: res.User, Verb: verb, Path: r.URL.Path})
			if err != nil {
				a.log.Error(err, "cannot authorize a debug API request", "path", r.URL.Path, "user", res.User.GetName())
				http.Error(w, "cannot authorize the request: "+err.Error(), http.StatusInternalServerError)
				return
			}
			if !allowed {
				http.Error(w, fmt.Sprintf("Forbidden: user %q may not %s %s (RBAC nonResourceURLs)", res.User.GetName(), verb, r.URL.Path), http.StatusForbidden)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// Allowed reports whether the caller Guard authenticated may do verb on
// the resource (group, resource) named name in namespace; namespace ""
// asks for every namespace, name "" for every object. A request Guard
// did not authenticate is allowed nothing.
func (a *Auth) Allowed(r *http.Request, verb, group, resource, namespace, name string) (bool, error) {
	u, ok := r.Context().Value(userKey{}).(user.Info)
	if !ok {
		return false, errors.New("the request was not authenticated")
	}
	return a.decide(r.Context(), authorizer.AttributesRecord{
		User: u, Verb: verb, APIGroup: group, Resource: resource, Namespace: namespace, Name: name, ResourceRequest: true,
	})
}

// User is the name of the caller Guard authenticated, or "".
func User(r *http.Request) string {
	if u, ok := r.Context().Value(userKey{}).(user.Info); ok {
		return u.GetName()
	}
	return ""
}

func (a *Auth) decide(ctx context.Context, attrs authorizer.Attributes) (bool, error) {
	decision, _, err := a.authz.Authorize(ctx, attrs)
	if err != nil {
		return false, err
	}
	return decision == authorizer.DecisionAllow, nil
}

// Client is an HTTP client presenting cfg's credentials (its client
// certificate, bearer token or exec plugin, as kubectl would) to a
// server guarded by Auth, instead of to the API server. The server's
// certificate is checked against caPEM; with none it is not checked,
// which is only sound where the connection itself reaches the right
// server, as a port-forward through the API server does.
func Client(cfg *rest.Config, caPEM []byte) (*http.Client, error) {
	c := rest.CopyConfig(cfg)
	c.CAFile, c.ServerName = "", ""
	c.CAData = caPEM
	c.Insecure = len(caPEM) == 0
	rt, err := rest.TransportFor(c)
	if err != nil {
		return nil, fmt.Errorf("the credentials of %s: %w", cfg.Host, err)
	}
	return &http.Client{Transport: rt, Timeout: 30 * time.Second}, nil
}
