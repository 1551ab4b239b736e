// Package inject adds fleetmesh's Envoy sidecar to pods: a mutating
// admission webhook (served by fleetmesh-controller) for pods of
// namespaces labelled fleetmesh.io/inject=enabled. Inject is the pure
// part: the pod in, the pod with the sidecar and its init container out.
// The sidecar's bootstrap is written into its arguments, with the pod's
// identity filled in by the kubelet from the downward API, so no agent
// runs beside Envoy. The proxy is a native sidecar (an init container with
// restartPolicy Always, Kubernetes 1.29+); the init container before it
// (fleetmesh-init, pkg/redirect) redirects the pod's traffic to it.
package inject

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/fleetmesh/fleetmesh/pkg/bootstrap"
	"github.com/fleetmesh/fleetmesh/pkg/redirect"
)

// Labels and annotations users set.
const (
	// NamespaceLabel=enabled on a namespace injects its pods.
	NamespaceLabel = "fleetmesh.io/inject"
	// AnnotationInject "false" on a pod opts it out ("true" is the default).
	AnnotationInject = "fleetmesh.io/inject"
	// AnnotationExcludeInboundPorts lists ports that reach the app
	// directly (comma-separated), e.g. a metrics port scraped from outside.
	AnnotationExcludeInboundPorts = "fleetmesh.io/exclude-inbound-ports"
	// AnnotationExcludeOutboundPorts lists ports the app reaches directly.
	AnnotationExcludeOutboundPorts = "fleetmesh.io/exclude-outbound-ports"
	// AnnotationExcludeOutboundIPRanges lists IPv4 CIDRs the app reaches
	// directly.
	AnnotationExcludeOutboundIPRanges = "fleetmesh.io/exclude-outbound-ip-ranges"
	// AnnotationStatus is set on injected pods: the injector's version.
	AnnotationStatus = "fleetmesh.io/injected"
)

// Container names.
const (
	ProxyContainer = "fleetmesh-proxy"
	InitContainer  = "fleetmesh-init"
)

// Config is what the injector puts in pods.
type Config struct {
	// ProxyImage is the Envoy image (its entrypoint runs envoy).
	ProxyImage string
	// InitImage holds fleetmesh-init and iptables.
	InitImage string
	// ImagePullPolicy of both containers; empty is Kubernetes' default.
	ImagePullPolicy corev1.PullPolicy
	// XDSAddress is fleetmesh's ADS server as sidecars reach it, e.g.
	// fleetmesh-controller.fleetmesh-system.svc:15010.
	XDSAddress string
	// ClusterName is this cluster's name (node metadata cluster).
	ClusterName string
	// LogLevel is Envoy's --log-level.
	LogLevel string
	// Concurrency is Envoy's worker threads.
	Concurrency int
	// Resources of the sidecar.
	Resources corev1.ResourceRequirements
	// Version is written into AnnotationStatus.
	Version string
	// Identity, when set, gives the sidecar a workload certificate (a
	// podCertificate volume of the signer IdentitySigner) and makes it
	// speak TLS to the xDS server, which must present ServerID.
	Identity *Identity
	// Unavailable, when set, says why the cluster cannot run an injected
	// proxy (no native sidecars; no workload certificates for one that
	// needs them): pods are then admitted as they are, with a warning and
	// an event saying so.
	Unavailable string
}

// Identity is how injected sidecars authenticate to the xDS server.
type Identity struct {
	// Signer is the signer of the pods' workload certificates.
	Signer string
	// ServerID is the xDS server's SPIFFE ID.
	ServerID string
	// Token gives the sidecar a ServiceAccount token instead (audience
	// bootstrap.TokenAudience, bound to the pod, renewed by the kubelet) and the
	// roots from ConfigMap RootsConfigMap of the pod's namespace: for
	// clusters without pod certificates. The sidecar then checks the
	// server's certificate for the xDS address's host name.
	Token bool
	// RootsConfigMap holds the roots under bootstrap.RootsFile (Token).
	RootsConfigMap string
}

// tokenSeconds is the life of the sidecar's token; the kubelet renews it
// at 80% of that.
const tokenSeconds = 3600

// IdentityDir is where the sidecar finds its workload certificate, its
// key, the roots and the SDS files naming them.
const IdentityDir = "/var/run/fleetmesh/identity"

// Annotations the injector sets on a pod with an identity: the SDS files
// of its identity volume, which its downward-API source writes there.
const (
	AnnotationSDSIdentity = "fleetmesh.io/sds-identity"
	AnnotationSDSRoots    = "fleetmesh.io/sds-roots"
)

// identityVolume is the volume the sidecar's identity is in.
const identityVolume = "fleetmesh-identity"

// DefaultResources are the sidecar's requests and limits unless
// configured.
func DefaultResources() corev1.ResourceRequirements {
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("512Mi")},
	}
}

// Validate names the first setting that cannot work.
func (c *Config) Validate() error {
	switch {
	case c.ProxyImage == "":
		return errors.New("proxy image: must be set")
	case c.InitImage == "":
		return errors.New("init image: must be set")
	case c.XDSAddress == "":
		return errors.New("xDS address: must be set (host:port the sidecars dial)")
	case c.ClusterName == "":
		return errors.New("cluster name: must be set")
	}
	switch c.LogLevel {
	case "trace", "debug", "info", "warning", "warn", "error", "critical", "off":
	default:
		return fmt.Errorf("proxy log level %q: want trace, debug, info, warning, error, critical or off", c.LogLevel)
	}
	_, err := c.bootstrap()
	return err
}

// bootstrap is the sidecar's Envoy bootstrap; $(VAR) references are the
// container's environment, expanded by the kubelet.
func (c *Config) bootstrap() ([]byte, error) {
	o := bootstrap.Options{
		NodeID: "$(POD_NAME).$(POD_NAMESPACE)", Role: "sidecar",
		Namespace: "$(POD_NAMESPACE)", Pod: "$(POD_NAME)", ServiceAccount: "$(SERVICE_ACCOUNT)",
		Cluster: c.ClusterName, XDSAddress: c.XDSAddress,
		AdminAddress: fmt.Sprintf("127.0.0.1:%d", redirect.DefaultAdminPort),
		Delta:        true, Intercept: true, HealthPort: redirect.DefaultHealthPort,
	}
	if c.Identity != nil {
		o.IdentityDir = IdentityDir
		o.XDSServerName, _, _ = strings.Cut(c.XDSAddress, ":")
		o.Token = c.Identity.Token
	}
	return bootstrap.JSON(o)
}

// Skip is why a pod is left as it is; Inject returns it, never an error,
// for a pod it does not inject.
type Skip struct {
	// Reason is a CamelCase event reason.
	Reason string
	// Message says what to change, for an event and an admission warning.
	Message string
	// Warn says the user should hear of it (a bad annotation), rather
	// than a pod that opted out.
	Warn bool
}

// Inject adds the sidecar and the init container to pod, or says why it
// leaves the pod alone. A pod already injected is left as it is, so a
// second pass changes nothing.
func Inject(pod *corev1.Pod, c *Config) *Skip {
	if pod.Spec.HostNetwork {
		return &Skip{Reason: "HostNetwork", Message: "the pod uses the host's network: redirecting its traffic would redirect the node's", Warn: true}
	}
	switch v := pod.Annotations[AnnotationInject]; strings.ToLower(v) {
	case "", "true", "enabled":
	case "false", "disabled":
		return &Skip{Reason: "OptedOut", Message: AnnotationInject + " is " + v}
	default:
		return &Skip{Reason: "InvalidAnnotation", Message: fmt.Sprintf(`annotation %s: %q is not "true" or "false"; the pod is not injected`, AnnotationInject, v), Warn: true}
	}
	if ProxyOf(pod) != nil || hasContainer(pod.Spec.InitContainers, InitContainer) {
		return &Skip{Reason: "AlreadyInjected", Message: "the pod already has the fleetmesh sidecar"}
	}
	if c.Unavailable != "" {
		return &Skip{Reason: "ClusterUnsupported", Message: c.Unavailable, Warn: true}
	}
	rc := redirect.DefaultConfig()
	for _, a := range []struct {
		key string
		set func(string) error
	}{
		{AnnotationExcludeInboundPorts, func(v string) error {
			ports, err := redirect.ParsePorts(v)
			rc.ExcludeInboundPorts = append(rc.ExcludeInboundPorts, ports...)
			return err
		}},
		{AnnotationExcludeOutboundPorts, func(v string) error {
			ports, err := redirect.ParsePorts(v)
			rc.ExcludeOutboundPorts = append(rc.ExcludeOutboundPorts, ports...)
			return err
		}},
		{AnnotationExcludeOutboundIPRanges, func(v string) error {
			cidrs, err := redirect.ParseCIDRs(v)
			rc.ExcludeOutboundCIDRs = cidrs
			return err
		}},
	} {
		if v, ok := pod.Annotations[a.key]; ok {
			if err := a.set(v); err != nil {
				return &Skip{Reason: "InvalidAnnotation", Message: fmt.Sprintf("annotation %s: %v; the pod is not injected", a.key, err), Warn: true}
			}
		}
	}
	if _, err := redirect.Rules(rc); err != nil {
		return &Skip{Reason: "InvalidAnnotation", Message: fmt.Sprintf("the exclusion annotations make no working rule set: %v; the pod is not injected", err), Warn: true}
	}
	boot, err := c.bootstrap()
	if err != nil {
		return &Skip{Reason: "InjectorMisconfigured", Message: err.Error(), Warn: true}
	}

	// The redirection first, then the proxy as a native sidecar (an init
	// container that keeps running): it starts, and is ready, before the
	// app and the pod's own init containers, and a Job's pod completes
	// when its app does.
	proxy := proxyContainer(c, boot)
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	switch {
	case c.Identity != nil && c.Identity.Token:
		pod.Spec.Volumes = append(pod.Spec.Volumes, tokenVolumeOf(c.Identity))
		proxy.VolumeMounts = append(proxy.VolumeMounts, corev1.VolumeMount{Name: identityVolume, MountPath: IdentityDir, ReadOnly: true})
	case c.Identity != nil:
		identity, roots, err := bootstrap.SDSFiles(IdentityDir, c.Identity.ServerID)
		if err != nil {
			return &Skip{Reason: "InjectorMisconfigured", Message: err.Error(), Warn: true}
		}
		pod.Annotations[AnnotationSDSIdentity], pod.Annotations[AnnotationSDSRoots] = string(identity), string(roots)
		pod.Spec.Volumes = append(pod.Spec.Volumes, identityVolumeOf(c.Identity))
		proxy.VolumeMounts = append(proxy.VolumeMounts, corev1.VolumeMount{Name: identityVolume, MountPath: IdentityDir, ReadOnly: true})
	}
	pod.Spec.InitContainers = append([]corev1.Container{initContainer(c, rc), proxy}, pod.Spec.InitContainers...)
	pod.Annotations[AnnotationStatus] = orDefault(c.Version, "true")
	return nil
}

// identityVolumeOf is the sidecar's identity: the kubelet asks the signer
// for the pod's certificate (podCertificate; the key never leaves the
// node), projects the signer's roots (clusterTrustBundle), and writes the
// SDS files from the pod's annotations (downwardAPI). Only the sidecar
// mounts it.
func identityVolumeOf(id *Identity) corev1.Volume {
	annotation := func(key string) *corev1.ObjectFieldSelector {
		return &corev1.ObjectFieldSelector{FieldPath: "metadata.annotations['" + key + "']"}
	}
	return corev1.Volume{Name: identityVolume, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		// Readable by the sidecar's user, the only one that mounts it.
		DefaultMode: ptr.To[int32](0o444),
		Sources: []corev1.VolumeProjection{
			{PodCertificate: &corev1.PodCertificateProjection{
				SignerName: id.Signer, KeyType: "ECDSAP256",
				KeyPath: bootstrap.KeyFile, CertificateChainPath: bootstrap.CertFile,
			}},
			{ClusterTrustBundle: &corev1.ClusterTrustBundleProjection{
				SignerName: ptr.To(id.Signer), LabelSelector: &metav1.LabelSelector{}, Path: bootstrap.RootsFile,
			}},
			{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{
				{Path: bootstrap.IdentitySDSFile, FieldRef: annotation(AnnotationSDSIdentity)},
				{Path: bootstrap.RootsSDSFile, FieldRef: annotation(AnnotationSDSRoots)},
			}}},
		},
	}}}
}

// tokenVolumeOf is the sidecar's identity where pods get no
// certificate: a ServiceAccount token for the xDS server, bound to the
// pod (the kubelet asks for it and renews it), and the roots copied into
// the pod's namespace. Only the sidecar mounts it.
func tokenVolumeOf(id *Identity) corev1.Volume {
	return corev1.Volume{Name: identityVolume, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		DefaultMode: ptr.To[int32](0o444),
		Sources: []corev1.VolumeProjection{
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
				Audience: bootstrap.TokenAudience, ExpirationSeconds: ptr.To[int64](tokenSeconds), Path: bootstrap.TokenFile,
			}},
			{ConfigMap: &corev1.ConfigMapProjection{
				LocalObjectReference: corev1.LocalObjectReference{Name: id.RootsConfigMap},
				Items:                []corev1.KeyToPath{{Key: bootstrap.RootsFile, Path: bootstrap.RootsFile}},
			}},
		},
	}}}
}

// ProxyOf returns the pod's fleetmesh sidecar, or nil.
func ProxyOf(pod *corev1.Pod) *corev1.Container {
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			if cs[i].Name == ProxyContainer {
				return &cs[i]
			}
		}
	}
	return nil
}

func initContainer(c *Config, rc redirect.Config) corev1.Container {
	args := []string{
		fmt.Sprintf("--outbound-port=%d", rc.OutboundPort),
		fmt.Sprintf("--inbound-port=%d", rc.InboundPort),
		fmt.Sprintf("--proxy-uid=%d", rc.ProxyUID),
		"--exclude-inbound-ports=" + redirect.FormatPorts(rc.ExcludeInboundPorts),
		"--exclude-outbound-ports=" + redirect.FormatPorts(rc.ExcludeOutboundPorts),
	}
	if len(rc.ExcludeOutboundCIDRs) > 0 {
		var cidrs []string
		for _, p := range rc.ExcludeOutboundCIDRs {
			cidrs = append(cidrs, p.String())
		}
		args = append(args, "--exclude-outbound-ip-ranges="+strings.Join(cidrs, ","))
	}
	return corev1.Container{
		Name:            InitContainer,
		Image:           c.InitImage,
		ImagePullPolicy: c.ImagePullPolicy,
		Command:         []string{"fleetmesh-init"},
		Args:            args,
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
		},
		SecurityContext: &corev1.SecurityContext{
			// iptables needs root with NET_ADMIN and NET_RAW in the pod's
			// network namespace, nothing more.
			RunAsUser:                ptr.To[int64](0),
			RunAsNonRoot:             ptr.To(false),
			AllowPrivilegeEscalation: ptr.To(false),
			ReadOnlyRootFilesystem:   ptr.To(false),
			Capabilities: &corev1.Capabilities{
				Drop: []corev1.Capability{"ALL"},
				Add:  []corev1.Capability{"NET_ADMIN", "NET_RAW"},
			},
		},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
}

func proxyContainer(c *Config, boot []byte) corev1.Container {
	field := func(path string) *corev1.EnvVarSource {
		return &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}
	}
	concurrency := c.Concurrency
	if concurrency <= 0 {
		concurrency = 2
	}
	health := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
		Path: bootstrap.HealthPath, Port: intstr.FromInt32(redirect.DefaultHealthPort),
	}}}
	startup, ready := health.DeepCopy(), health.DeepCopy()
	// Until Envoy has its first configuration (its xDS fetch gives up
	// after 15 s): the app starts after that.
	startup.PeriodSeconds, startup.FailureThreshold = 1, 120
	ready.PeriodSeconds = 5
	return corev1.Container{
		Name:            ProxyContainer,
		Image:           c.ProxyImage,
		ImagePullPolicy: c.ImagePullPolicy,
		RestartPolicy:   ptr.To(corev1.ContainerRestartPolicyAlways),
		Ports:           []corev1.ContainerPort{{Name: "fm-health", ContainerPort: redirect.DefaultHealthPort}},
		StartupProbe:    startup,
		ReadinessProbe:  ready,
		Command:         []string{"envoy"},
		Args: []string{
			"--config-yaml", string(boot),
			"--log-level", orDefault(c.LogLevel, "info"),
			"--concurrency", fmt.Sprint(concurrency),
			"--drain-time-s", "5",
			// Hot restart needs shared memory the read-only sidecar does
			// not have; Kubernetes restarts containers instead.
			"--disable-hot-restart",
		},
		Env: []corev1.EnvVar{
			{Name: "POD_NAME", ValueFrom: field("metadata.name")},
			{Name: "POD_NAMESPACE", ValueFrom: field("metadata.namespace")},
			{Name: "SERVICE_ACCOUNT", ValueFrom: field("spec.serviceAccountName")},
			{Name: "POD_IP", ValueFrom: field("status.podIP")},
		},
		Resources: c.Resources,
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                ptr.To[int64](int64(redirect.DefaultProxyUID)),
			RunAsGroup:               ptr.To[int64](int64(redirect.DefaultProxyUID)),
			RunAsNonRoot:             ptr.To(true),
			AllowPrivilegeEscalation: ptr.To(false),
			ReadOnlyRootFilesystem:   ptr.To(true),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
}

func hasContainer(cs []corev1.Container, name string) bool {
	return slices.ContainsFunc(cs, func(c corev1.Container) bool { return c.Name == name })
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
