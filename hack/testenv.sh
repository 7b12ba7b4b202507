#!/usr/bin/env bash
# Provision the binaries of the local test control plane: etcd (Debian package) and
# kube-apiserver + kube-controller-manager built from Debian's Kubernetes source package; and the
# Debian packages the chart renderer (tools/helm-render) is built from.
# Idempotent: the two Kubernetes binaries are cached under $KUBE_RELOADER_CACHE (default
# ~/.cache/kube-reloader/k8s-<version>), so every run after the first takes seconds.
# Prints the cache directory on its last line.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=k8s-version.env
. "$here/k8s-version.env"

cache_root=${KUBE_RELOADER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kube-reloader}
bin_dir="$cache_root/k8s-$K8S_VERSION-$K8S_BUILD"

log() { printf 'testenv: %s\n' "$*" >&2; }
die() { printf 'testenv: error: %s\n' "$*" >&2; exit 1; }

need_pkgs=()
command -v etcd >/dev/null 2>&1 || need_pkgs+=(etcd-server)
command -v openssl >/dev/null 2>&1 || need_pkgs+=(openssl)
# The chart tests render charts/kube-reloader with tools/helm-render: Go, sprig and
# sigs.k8s.io/yaml, built in GOPATH mode from Debian's packages.
[ -x /usr/lib/go-1.19/bin/go ] || need_pkgs+=(golang-1.19-go)
gocode=/usr/share/gocode/src
[ -d "$gocode/github.com/Masterminds/sprig" ] || need_pkgs+=(golang-github-masterminds-sprig-dev)
[ -d "$gocode/sigs.k8s.io/yaml" ] || need_pkgs+=(golang-k8s-sigs-yaml-dev)
have_bins=false
if [ -x "$bin_dir/kube-apiserver" ] && [ -x "$bin_dir/kube-controller-manager" ]; then
  have_bins=true
else
  command -v rsync >/dev/null 2>&1 || need_pkgs+=(rsync)
  command -v make >/dev/null 2>&1 || need_pkgs+=(make)
  [ -d "$gocode/github.com/modern-go/reflect2" ] || need_pkgs+=(golang-github-modern-go-reflect2-dev)
fi

if [ ${#need_pkgs[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "missing packages ${need_pkgs[*]}; run as root or install them: apt-get install ${need_pkgs[*]}"
  log "installing Debian packages: ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 || die "apt-get update failed"
  apt-get install -y -qq "${need_pkgs[@]}" >&2 || die "apt-get install ${need_pkgs[*]} failed"
fi

if $have_bins; then
  log "Kubernetes $K8S_VERSION binaries cached in $bin_dir"
  echo "$bin_dir"
  exit 0
fi

log "building kube-apiserver and kube-controller-manager $K8S_VERSION from Debian source (about 6 minutes, once)"
work=$(mktemp -d "${TMPDIR:-/tmp}/kube-reloader-k8s-build.XXXXXX")
trap 'rm -rf "$work"' EXIT

# A private apt configuration fetches the source package without touching the machine's apt setup.
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
log "cached in $bin_dir"
echo "$bin_dir"
