# fleetmesh's images, built from one stage of static binaries:
#   fleetmesh       fleetmesh-controller and the fleetmesh CLI (distroless, non-root)
#   fleetmesh-init  the injected init container: fleetmesh-init and iptables
# make images builds both (docker or podman):
#   docker build --target fleetmesh      -t ghcr.io/fleetmesh/fleetmesh:dev .
#   docker build --target fleetmesh-init -t ghcr.io/fleetmesh/fleetmesh-init:dev .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY api/ api/
COPY cmd/ cmd/
COPY pkg/ pkg/
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/fleetmesh/fleetmesh/pkg/version.Version=${VERSION}" \
      -o /out/ ./cmd/...

FROM debian:12-slim AS fleetmesh-init
# iptables (nft and legacy backends); fleetmesh-init picks iptables-restore.
RUN apt-get update && apt-get install -y --no-install-recommends iptables \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/fleetmesh-init /usr/local/bin/
# Root with NET_ADMIN and NET_RAW only, granted by the injected container's
# securityContext, in the pod's network namespace.
ENTRYPOINT ["/usr/local/bin/fleetmesh-init"]

FROM gcr.io/distroless/static-debian12:nonroot AS fleetmesh
COPY --from=build /out/fleetmesh-controller /out/fleetmesh /usr/local/bin/
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/fleetmesh-controller"]
