//go:build tools

// Package tools pins the commands this throwaway module builds, so that
// `go mod tidy` records every dependency they need.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver/app"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager/app"
)
