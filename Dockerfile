# syntax=docker/dockerfile:1
#
# pyoco: one static binary for `pyoco server` and `pyoco worker`.
#   docker build -t pyoco .
#   docker build --build-arg VERSION=v0.6.0 -t pyoco:v0.6.0 .
# compose.yaml builds and runs it; docs/observability.md walks through it.

# Build stage: a static binary (no cgo), no VCS stamping (the context has no .git).
FROM golang:1.26-alpine AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-buildvcs=false
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/root/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/root/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags="-s -w -X github.com/pyoco/pyoco/internal/cli.Version=${VERSION}" \
      -o /out/pyoco ./cmd/pyoco

# Runtime stage: Alpine rather than distroless because flows' `shell` tasks
# need /bin/sh, and compose's healthchecks need an HTTP client (busybox wget).
FROM alpine:3.22
RUN apk add --no-cache ca-certificates tzdata \
 && addgroup -S -g 10001 pyoco \
 && adduser -S -D -H -u 10001 -G pyoco -h /home/pyoco pyoco \
 && mkdir -p /flows /home/pyoco/.pyoco/plugins \
 && chown -R pyoco:pyoco /home/pyoco
COPY --from=build /out/pyoco /usr/local/bin/pyoco
ENV HOME=/home/pyoco \
    PYOCO_ADDR=:8000 \
    PYOCO_FLOWS=/flows \
    PYOCO_METRICS_ADDR=:9464
USER 10001:10001
WORKDIR /home/pyoco
# 8000: the API and /metrics of `pyoco server`; 9464: /metrics of `pyoco worker`.
EXPOSE 8000 9464
ENTRYPOINT ["pyoco"]
CMD ["server"]
