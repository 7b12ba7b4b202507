# kube-reloader — see README.md.
SHELL := /bin/bash
CLUSTER_DIR ?= $(CURDIR)/.cluster
CARGO ?= cargo

.PHONY: all build test testenv unit integration lint fmt demo cluster-up cluster-down clean

all: build

build:
	$(CARGO) build --release --locked

## Provision the local control plane's binaries (etcd, kube-apiserver, kube-controller-manager).
## Idempotent and cached: only the first run builds Kubernetes (about 6 minutes).
testenv:
	@hack/testenv.sh >/dev/null

## The whole test suite: unit tests, then integration tests against a real control plane.
test: testenv
	$(CARGO) test --locked --all-targets -- --test-threads=6

unit:
	$(CARGO) test --locked --lib --bins

integration: testenv
	$(CARGO) test --locked --test integration -- --test-threads=6

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

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
