# kube-reloader — see README.md.
SHELL := /bin/bash
CLUSTER_DIR ?= $(CURDIR)/.cluster
CARGO ?= cargo
# tools/helm-render: Debian's Go and Go packages, in GOPATH mode (installed by `make testenv`).
GO_BIN := /usr/lib/go-1.19/bin
GO := GO111MODULE=off GOPATH=/usr/share/gocode $(GO_BIN)/go
VALUES ?= /dev/null

.PHONY: all build test testenv unit integration tools-test lint fmt chart demo cluster-up cluster-down clean

all: build

build:
	$(CARGO) build --release --locked

## Provision the local control plane's binaries (etcd, kube-apiserver, kube-controller-manager).
## Idempotent and cached: only the first run builds Kubernetes (about 6 minutes).
testenv:
	@hack/testenv.sh >/dev/null

## The whole test suite: unit tests, then integration tests against a real control plane, and
## the chart renderer's own tests.
test: testenv tools-test
	$(CARGO) test --locked --all-targets -- --test-threads=6

tools-test: testenv
	cd tools/helm-render && $(GO) test .

unit:
	$(CARGO) test --locked --lib --bins

integration: testenv
	$(CARGO) test --locked --test integration -- --test-threads=6

lint: testenv
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	@test -z "$$($(GO_BIN)/gofmt -l tools)" || { $(GO_BIN)/gofmt -l tools; echo "gofmt: reformat these"; exit 1; }
	cd tools/helm-render && $(GO) vet .

## Render the Helm chart as `helm template` would: make chart [VALUES=my-values.yaml]
chart: testenv
	@cd tools/helm-render && $(GO) build -o $(CURDIR)/target/helm-render .
	@target/helm-render --name kube-reloader --namespace kube-reloader -f $(VALUES) charts/kube-reloader

fmt:
	$(CARGO) fmt --all

## Start a local control plane in the background; prints the KUBECONFIG to use.
cluster-up: testenv
	@kubeconfig=$$(hack/cluster.sh up "$(CLUSTER_DIR)") && \
	  echo "Control plane up. Use it with:" && echo "  export KUBECONFIG=$$kubeconfig"

cluster-down:
	@hack/cluster.sh down "$(CLUSTER_DIR)" && echo "Control plane stopped."

## The demo: a local control plane, the controller, a ConfigMap change rolled out.
demo: testenv
	$(CARGO) build --locked --bin kube-reloader
	@hack/demo.sh "$(CURDIR)/target/debug/kube-reloader"

clean: cluster-down
	$(CARGO) clean
