// Package capabilities tells what a member's API server offers that
// fleetmesh depends on and older Kubernetes lacks: the MCS API
// (multicluster.x-k8s.io/v1beta1, installed by manifests/mcs-crd), pod
// certificates (PodCertificateRequests, 1.35 and later with the API on)
// and native sidecars (1.29). Each answer says, when the answer is no,
// what it means and what to do; fleetmesh then does without, never
// crashes.
package capabilities

import (
	"context"
	"fmt"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilversion "k8s.io/apimachinery/pkg/util/version"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/discovery"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
)

// serves reports whether the API server serves every resource of one
// group version.
func serves(d discovery.DiscoveryInterface, gv string, resources ...string) (bool, error) {
	list, err := d.ServerResourcesForGroupVersion(gv)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	for _, want := range resources {
		if !slices.ContainsFunc(list.APIResources, func(r metav1.APIResource) bool { return r.Name == want }) {
			return false, nil
		}
	}
	return true, nil
}

// ServesMCS reports whether the API server serves the MCS API's
// ServiceExports and ServiceImports in v1beta1 (one request).
func ServesMCS(d discovery.DiscoveryInterface) (bool, error) {
	return serves(d, mcsv1beta1.GroupVersion.String(), mcsv1beta1.ServiceExportPluralName, mcsv1beta1.ServiceImportPluralName)
}

// MCS is ServesMCS; when it does not, why says what it serves instead
// and what to install.
func MCS(d discovery.DiscoveryInterface) (ok bool, why string, err error) {
	ok, err = ServesMCS(d)
	if ok || err != nil {
		return ok, "", err
	}
	old, err := serves(d, mcsv1beta1.GroupName+"/v1alpha1", mcsv1beta1.ServiceExportPluralName, mcsv1beta1.ServiceImportPluralName)
	if err != nil {
		return false, "", err
	}
	if old {
		return false, "the cluster serves the MCS API in v1alpha1 only: apply manifests/mcs-crd there (the sigs.k8s.io/mcs-api v0.5 CRDs serve v1beta1 and v1alpha1) for its MCS exports to be read and imports written", nil
	}
	return false, "the cluster does not serve the MCS API (multicluster.x-k8s.io/v1beta1): apply manifests/mcs-crd there for MCS ServiceExports to be honoured and ServiceImports written; fleetmesh.io exports and imports work without it", nil
}

// PollMCS calls appeared once the API server serves the MCS API, checking
// every interval until ctx ends; it returns at once if it is served now.
func PollMCS(ctx context.Context, d discovery.DiscoveryInterface, interval time.Duration, appeared func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if ok, err := ServesMCS(d); err == nil && ok {
			appeared()
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// PodCertificates reports whether the API server serves
// PodCertificateRequests (certificates.k8s.io/v1, Kubernetes 1.35 and
// later with the API on): without them pods get no workload certificates,
// and a member's proxies authenticate with ServiceAccount tokens instead.
func PodCertificates(d discovery.DiscoveryInterface) (ok bool, why string, err error) {
	ok, err = serves(d, "certificates.k8s.io/v1", "podcertificaterequests", "clustertrustbundles")
	if ok || err != nil {
		return ok, "", err
	}
	return false, "the cluster does not serve PodCertificateRequests and ClusterTrustBundles (certificates.k8s.io/v1: Kubernetes 1.35 and later, with the API on), so pods get no workload certificates: install fleetmesh there with manifests/member-token (proxies authenticate with ServiceAccount tokens, roots come by ConfigMap)", nil
}

// NativeSidecarsSince is the first Kubernetes minor that runs native
// sidecars (init containers with restartPolicy Always) by default.
const NativeSidecarsSince = 29

// NativeSidecars reports whether a Kubernetes version runs native
// sidecars, which fleetmesh's injected proxy is; a version that cannot
// be read (a development build) is taken to be current.
func NativeSidecars(v *version.Info) (ok bool, why string) {
	parsed, err := utilversion.ParseGeneric(v.GitVersion)
	if err != nil || parsed.Major() == 0 {
		return true, ""
	}
	if parsed.Major() > 1 || parsed.Minor() >= NativeSidecarsSince {
		return true, ""
	}
	return false, fmt.Sprintf("Kubernetes %s has no native sidecars (1.%d and later): fleetmesh's injected proxy is one, so pods are not injected; upgrade the cluster", v.GitVersion, NativeSidecarsSince)
}
