// Package mcsapi tells whether an API server serves the Kubernetes MCS API
// (multicluster.x-k8s.io) in the version fleetmesh speaks, v1beta1: the
// federation and discovery read and write it only where it is, and say
// what to install where it is not.
package mcsapi

import (
	"context"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/discovery"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
)

// Served reports whether the API server serves the MCS API's
// ServiceExports and ServiceImports in v1beta1; when it does not, why
// says what it serves instead and what to install.
func Served(d discovery.DiscoveryInterface) (ok bool, why string, err error) {
	has := func(gv string) (bool, error) {
		list, err := d.ServerResourcesForGroupVersion(gv)
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		n := 0
		for _, r := range list.APIResources {
			if r.Name == mcsv1beta1.ServiceExportPluralName || r.Name == mcsv1beta1.ServiceImportPluralName {
				n++
			}
		}
		return n == 2, nil
	}
	ok, err = has(mcsv1beta1.GroupVersion.String())
	if ok || err != nil {
		return ok, "", err
	}
	old, err := has(mcsv1beta1.GroupName + "/v1alpha1")
	if err != nil {
		return false, "", err
	}
	if old {
		return false, "the cluster serves the MCS API in v1alpha1 only: apply manifests/mcs-crd there (the sigs.k8s.io/mcs-api v0.5 CRDs serve v1beta1 and v1alpha1) for its MCS exports to be read and imports written", nil
	}
	return false, "the cluster does not serve the MCS API (multicluster.x-k8s.io/v1beta1): apply manifests/mcs-crd there for MCS ServiceExports to be honoured and ServiceImports written; fleetmesh.io exports and imports work without it", nil
}

// Poll calls appeared once the API server serves the MCS API, checking
// every interval until ctx ends; it returns at once if it is served now.
func Poll(ctx context.Context, d discovery.DiscoveryInterface, interval time.Duration, appeared func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if ok, _, err := Served(d); err == nil && ok {
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
