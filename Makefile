# kube-reloader — see README.md.
SHELL := /bin/bash
CLUSTER_DIR ?= $(CURDIR)/.cluster
CARGO ?= cargo
VALUES ?= /dev/null
# The Kubernetes release of the test control plane: hack/k8s-version.env's default unless given
# (`make test K8S_VERSION=1.34.4`); exported, so hack/testenv.sh and every test see it.
K8S_VERSION ?= $(shell . hack/k8s-version.env && echo $$K8S_VERSION)
export K8S_VERSION
## The core behaviour tests, which CI also runs on the oldest supported release (make core).
CORE_TESTS := reload:: delivery:: kinds:: install:: steady:: environment::

.PHONY: all build image test core testenv unit integration validate lint fmt chart demo cluster-up cluster-down clean bench-latency bench-10k bench-pods

all: build

build:
	$(CARGO) build --release --locked

## The container image without a container engine: the static musl release binary on scratch, as
## the Dockerfile's final stage, assembled by buildah (vfs storage, no RUN step) and written as an
## OCI archive (target/image/kube-reloader-VERSION.oci.tar) and an OCI layout (target/image/oci/).
## Installs the musl target, musl-tools and buildah if missing; cached when nothing changed.
image:
	@hack/image.sh

## Provision the local control plane's binaries (etcd, kube-apiserver, kube-controller-manager,
## kube-scheduler and kubelet of $(K8S_VERSION), built from the Go modules pinned in hack/k8s/),
## the pinned helm and kubectl, the pinned kubernetes-validate in a virtualenv, and the test
## node's containerd, runc, CNI plugins and images (hack/node.sh). Idempotent and cached: only the
## first run of a version builds it.
testenv:
	@hack/testenv.sh >/dev/null
	@hack/node.sh provision >/dev/null

## The whole test suite: unit tests, then integration tests against a real control plane (the
## tests use the helm and kubectl from hack/testenv.sh, never those on the PATH). The image is
## built first: its tests reuse it, rather than link the release binary while the others run.
test: testenv image
	$(CARGO) test --locked --all-targets -- --test-threads=6

## The core behaviour tests only (reload, delivery, kinds, install audit, steady, and the
## environment tests that record what differs between releases):
## make core K8S_VERSION=1.34.4
core: testenv
	$(CARGO) test --locked --test integration -- --test-threads=6 $(CORE_TESTS)

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

## Start a local cluster in the background: the control plane, kube-scheduler and one node that
## runs pods (hack/node.sh); prints the KUBECONFIG to use.
cluster-up: testenv
	@bin=$$(hack/testenv.sh) && kubeconfig=$$(hack/cluster.sh up "$(CLUSTER_DIR)" --node) && \
	  echo "Cluster up (one node, kube-reloader-node). Use it (and the pinned kubectl and helm) with:" && \
	  echo "  export KUBECONFIG=$$kubeconfig PATH=$$bin:\$$PATH"

cluster-down:
	@hack/cluster.sh down "$(CLUSTER_DIR)" && echo "Control plane stopped."

## Latency against the floor client (bench/latency.sh; docs/performance.md "Latency and scale"): 1,000 workloads, or
## 10,000 with 50,000 ConfigMaps and Secrets. Release builds; a fresh control plane each run.
bench-latency: testenv
	$(CARGO) build --release --locked --bin kube-reloader --example latency
	@bin=$$(hack/testenv.sh) && PATH="$$bin:$$PATH" bench/latency.sh

bench-10k: testenv
	$(CARGO) build --release --locked --bin kube-reloader --example latency
	@bin=$$(hack/testenv.sh) && PATH="$$bin:$$PATH" WORKLOADS=10000 CONFIGMAPS=25000 SECRETS=25000 bench/latency.sh

## End-to-end latency with pods (bench/pods.sh; docs/performance.md "Pods"): from a ConfigMap
## edit to every pod Ready on the new config, 1, 10 and 50 replicas, against a floor that patches
## the pod template at once. A cluster with a node; release build.
bench-pods: testenv
	$(CARGO) build --release --locked --bin kube-reloader
	@bin=$$(hack/testenv.sh) && PATH="$$bin:$$PATH" bench/pods.sh

## The demo: a local cluster with a node, the controller, a ConfigMap change rolled out to pods
## that print the value they read (hack/demo.sh; first-run provisioning logs to target/demo/).
demo:
	$(CARGO) build --locked --bin kube-reloader
	@hack/demo.sh "$(CURDIR)/target/debug/kube-reloader"

clean: cluster-down
	$(CARGO) clean
