# kube-reloader — see README.md.
SHELL := /bin/bash
CLUSTER_DIR ?= $(CURDIR)/.cluster
CARGO ?= cargo
VALUES ?= /dev/null

.PHONY: all build image test testenv unit integration validate lint fmt chart demo cluster-up cluster-down clean bench-latency bench-10k

all: build

build:
	$(CARGO) build --release --locked

## The container image without a container engine: the static musl release binary on scratch, as
## the Dockerfile's final stage, assembled by buildah (vfs storage, no RUN step) and written as an
## OCI archive (target/image/kube-reloader-VERSION.oci.tar) and an OCI layout (target/image/oci/).
## Installs the musl target, musl-tools and buildah if missing; cached when nothing changed.
image:
	@hack/image.sh

## Provision the local control plane's binaries (etcd, kube-apiserver, kube-controller-manager),
## the pinned helm and kubectl, and the pinned kubernetes-validate in a virtualenv. Idempotent and
## cached: only the first run builds Kubernetes (about 6 minutes).
testenv:
	@hack/testenv.sh >/dev/null

## The whole test suite: unit tests, then integration tests against a real control plane (the
## tests use the helm and kubectl from hack/testenv.sh, never those on the PATH). The image is
## built first: its tests reuse it, rather than link the release binary while the others run.
test: testenv image
	$(CARGO) test --locked --all-targets -- --test-threads=6

unit:
	$(CARGO) test --locked --lib --bins

integration: testenv image
	$(CARGO) test --locked --test integration -- --test-threads=6

## Only the schema validation (Kubernetes 1.30 to 1.35, strict) of the chart's renderings and
## manifests/, and their Pod Security Standards check; part of `make test` too.
validate: testenv
	$(CARGO) test --locked --test integration -- --test-threads=4 validate::

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

## Render the Helm chart with the pinned helm: make chart [VALUES=my-values.yaml]
chart:
	@bin=$$(hack/testenv.sh) && \
	  "$$bin/helm" template kube-reloader charts/kube-reloader --namespace kube-reloader -f $(VALUES)

fmt:
	$(CARGO) fmt --all

## Start a local control plane in the background; prints the KUBECONFIG to use.
cluster-up: testenv
	@bin=$$(hack/testenv.sh) && kubeconfig=$$(hack/cluster.sh up "$(CLUSTER_DIR)") && \
	  echo "Control plane up. Use it (and the pinned kubectl and helm) with:" && \
	  echo "  export KUBECONFIG=$$kubeconfig PATH=$$bin:\$$PATH"

cluster-down:
	@hack/cluster.sh down "$(CLUSTER_DIR)" && echo "Control plane stopped."

## Latency against the floor client (bench/latency.sh; README "Latency"): 1,000 workloads, or
## 10,000 with 50,000 ConfigMaps and Secrets. Release builds; a fresh control plane each run.
bench-latency: testenv
	$(CARGO) build --release --locked --bin kube-reloader --example latency
	@bin=$$(hack/testenv.sh) && PATH="$$bin:$$PATH" bench/latency.sh

bench-10k: testenv
	$(CARGO) build --release --locked --bin kube-reloader --example latency
	@bin=$$(hack/testenv.sh) && PATH="$$bin:$$PATH" WORKLOADS=10000 CONFIGMAPS=25000 SECRETS=25000 bench/latency.sh

## The demo: a local control plane, the controller, a ConfigMap change rolled out.
demo: testenv
	$(CARGO) build --locked --bin kube-reloader
	@hack/demo.sh "$(CURDIR)/target/debug/kube-reloader"

clean: cluster-down
	$(CARGO) clean
