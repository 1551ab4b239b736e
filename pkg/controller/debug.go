package controller

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/go-logr/logr"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	certutil "k8s.io/client-go/util/cert"

	"github.com/fleetmesh/fleetmesh/pkg/bootstrap"
	"github.com/fleetmesh/fleetmesh/pkg/kubeauth"
	"github.com/fleetmesh/fleetmesh/pkg/pki"
	"github.com/fleetmesh/fleetmesh/pkg/xds"
)

// ProxiesResource is what RBAC grants to read proxies through the debug
// API: get (one proxy's configuration) and list (the proxies of a
// namespace, or of every namespace) on proxies.fleetmesh.io, a resource
// the API server does not serve. A proxy is named after its pod.
const (
	ProxiesGroup    = "fleetmesh.io"
	ProxiesResource = "proxies"
)

// debugTLS is the debug API's TLS configuration: a self-signed
// certificate for the controller's Service names, made at start, and the
// caller's client certificate asked for (not required: a token will do).
// Without authentication the debug API is plain HTTP.
func (o *Options) debugTLS() (*tls.Config, error) {
	if o.DebugAuth == AuthNone {
		return nil, nil
	}
	svc := o.WebhookService
	if svc == "" {
		svc = "fleetmesh-controller"
	}
	dns := append(pki.ServiceHosts(svc, o.Namespace), "localhost")
	var ips []net.IP
	if host, _, err := net.SplitHostPort(o.DebugAddress); err == nil {
		if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
			ips = append(ips, ip)
		}
	}
	certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKey(dns[2], ips, dns)
	if err != nil {
		return nil, fmt.Errorf("the debug API's certificate: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("the debug API's certificate: %w", err)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		// Verified by the authenticator against the cluster's client CA.
		ClientAuth: tls.RequestClientCert,
	}, nil
}

// listenDebug listens on the debug address, with TLS when there is a
// configuration for it.
func listenDebug(addr string, tlsConfig *tls.Config) (net.Listener, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--debug-address %s: %w", addr, err)
	}
	if tlsConfig != nil {
		lis = tls.NewListener(lis, tlsConfig)
	}
	return lis, nil
}

// guardDebug is the debug API's handler, guarded as --debug-auth and
// --metrics-auth say: the probes and /version answer anyone.
func (o *Options) guardDebug(ctx context.Context, cfg *rest.Config, s *xds.Server, log logr.Logger) (http.Handler, error) {
	if o.DebugAuth == AuthNone {
		return s.DebugHandler(nil), nil
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	auth, err := kubeauth.New(ctx, cs, log)
	if err != nil {
		return nil, fmt.Errorf("--debug-auth %s: %w", o.DebugAuth, err)
	}
	metrics := kubeauth.NonResource
	if o.MetricsAuth == AuthNone {
		metrics = kubeauth.Open
	}
	rule := func(path string) kubeauth.Rule {
		switch path {
		case "/healthz", "/readyz", "/version":
			return kubeauth.Open
		case "/metrics":
			return metrics
		}
		if strings.HasPrefix(path, "/debug/pprof") {
			// RBAC get on the nonResourceURL /debug/pprof/*.
			return kubeauth.NonResource
		}
		return kubeauth.Authenticated
	}
	return auth.Guard(rule, s.DebugHandler(proxyAccess{auth})), nil
}

// proxyAccess authorizes reading proxies as RBAC grants proxies.fleetmesh.io.
type proxyAccess struct{ auth *kubeauth.Auth }

func (a proxyAccess) MayRead(r *http.Request, namespace, name string) (bool, error) {
	verb := "get"
	if name == "" {
		verb = "list"
	}
	return a.auth.Allowed(r, verb, ProxiesGroup, ProxiesResource, namespace, name)
}

// tokenReviewer asks the API server cfg reaches about a proxy's token,
// for the audience bootstrap.TokenAudience.
func tokenReviewer(cfg *rest.Config) (xds.TokenReviewer, error) {
	// Reviews have a client of their own: a fleet of proxies reconnecting
	// at once (a restart) is reviewed at this pace, not client-go's
	// default of 5 a second, and never waits behind the controller's
	// other requests.
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = tokenReviewQPS, 2*tokenReviewQPS
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, token string) (authenticationv1.TokenReviewStatus, error) {
		tr, err := cs.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{
			Token: token, Audiences: []string{bootstrap.TokenAudience},
		}}, metav1.CreateOptions{})
		if err != nil {
			return authenticationv1.TokenReviewStatus{}, err
		}
		return tr.Status, nil
	}, nil
}

// tokenReviewQPS is how many TokenReviews a second the xDS server may ask
// for: a thousand proxies reconnecting are let in within five seconds.
const tokenReviewQPS = 200
