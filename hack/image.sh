#!/usr/bin/env bash
# Build the container image without a container engine: the static musl release binary, then an
# OCI image equal to the Dockerfile's final stage (FROM scratch, the binary alone at
# /kube-reloader, USER 65532:65532, EXPOSE 9090, ENTRYPOINT ["/kube-reloader"]), written as an
# OCI image layout (target/image/oci/) and as an OCI archive of it
# (target/image/kube-reloader-VERSION.oci.tar).
#
# The layout is assembled with tar, gzip and sha256sum: a scratch image with one file needs no
# RUN step, so no buildah or umoci (nor their storage setup) is needed. It is reproducible: the
# layer's entries have fixed owners, modes and times, so the same binary gives the same digests.
#
# Installs what it needs: the rustup target x86_64-unknown-linux-musl, and Debian's musl-tools
# (musl-gcc, for ring's C and assembly). Cached: cargo rebuilds only what changed (the first
# build takes 5 to 8 minutes on 2 cores: fat LTO), and an unchanged binary, version and script
# leave the layout as it was. The index names the image twice: ref.name is the tag (skopeo's
# oci-archive:FILE:0.1.0), io.containerd.image.name the name `ctr image import` gives it.
# Prints the archive's path on its last line (and nothing else on stdout).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
target=x86_64-unknown-linux-musl
log() { printf 'image: %s\n' "$*" >&2; }
die() { printf 'image: error: %s\n' "$*" >&2; exit 1; }

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -n 1)
[ -n "$version" ] || die "no version in $root/Cargo.toml"

if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
  log "adding the rustup target $target"
  rustup target add "$target" >&2 || die "rustup target add $target failed"
fi
if ! command -v musl-gcc >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || die "musl-gcc is missing; run as root or install it: apt-get install musl-tools"
  log "installing Debian's musl-tools"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq musl-tools >&2 ||
    { apt-get update -qq >&2 && apt-get install -y -qq musl-tools >&2; } ||
    die "apt-get install musl-tools failed"
fi

log "building the static release binary (cargo build --release --locked --target $target)"
(cd "$root" && CC_x86_64_unknown_linux_musl=musl-gcc \
  "${CARGO:-cargo}" build --release --locked --target "$target" >&2) || die "cargo build for $target failed"
bin="$root/target/$target/release/kube-reloader"
[ -x "$bin" ] || die "$bin was not built"
# A scratch image has no loader and no libc: the binary must be static.
if file "$bin" 2>/dev/null | grep -q 'dynamically linked'; then
  die "$bin is dynamically linked"
fi

out="$root/target/image"
layout="$out/oci"
archive="$out/kube-reloader-$version.oci.tar"
stamp="$out/inputs.sha256"
# What the image is made of: the binary, the version, and this script.
inputs="$(sha256sum "$bin" | cut -d' ' -f1) $version $(sha256sum "$0" | cut -d' ' -f1)"
if [ -f "$archive" ] && [ -f "$layout/index.json" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$inputs" ]; then
  log "image unchanged: $archive"
  echo "$archive"
  exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/kube-reloader-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/rootfs" "$work/oci/blobs/sha256"
install -m 0755 "$bin" "$work/rootfs/kube-reloader"

# The one layer: the binary alone, owned by root, readable and executable by everyone (it runs
# as 65532), with a fixed time so that the digest depends on the binary only.
tar -C "$work/rootfs" --create --format=ustar --owner=0 --group=0 --numeric-owner \
  --mtime=@0 --sort=name -f "$work/layer.tar" kube-reloader
gzip -n -9 -c "$work/layer.tar" > "$work/layer.tar.gz"
diff_id=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)

# Stores a file as a blob; prints its digest and size.
blob() {
  local sum size
  sum=$(sha256sum "$1" | cut -d' ' -f1)
  size=$(stat -c %s "$1")
  cp "$1" "$work/oci/blobs/sha256/$sum"
  echo "$sum $size"
}
read -r layer_sum layer_size < <(blob "$work/layer.tar.gz")

# The Dockerfile's final stage, as an image config (tests/integration/image.rs compares the two).
printf '%s' '{"architecture":"amd64","os":"linux",'\
'"config":{"User":"65532:65532","ExposedPorts":{"9090/tcp":{}},"Entrypoint":["/kube-reloader"]},'\
'"rootfs":{"type":"layers","diff_ids":["sha256:'"$diff_id"'"]},'\
'"history":[{"created_by":"COPY /kube-reloader /kube-reloader (hack/image.sh)"}]}' > "$work/config.json"
read -r config_sum config_size < <(blob "$work/config.json")

printf '%s' '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'\
'"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:'"$config_sum"'","size":'"$config_size"'},'\
'"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:'"$layer_sum"'","size":'"$layer_size"'}]}' \
  > "$work/manifest.json"
read -r manifest_sum manifest_size < <(blob "$work/manifest.json")

printf '%s' '{"imageLayoutVersion":"1.0.0"}' > "$work/oci/oci-layout"
printf '%s' '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",'\
'"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:'"$manifest_sum"'","size":'"$manifest_size"','\
'"annotations":{"org.opencontainers.image.ref.name":"'"$version"'",'\
'"io.containerd.image.name":"docker.io/library/kube-reloader:'"$version"'"}}]}' > "$work/oci/index.json"

mkdir -p "$out"
tar -C "$work/oci" --create --format=ustar --owner=0 --group=0 --numeric-owner --mtime=@0 \
  --sort=name -f "$work/image.oci.tar" .
# Replace the previous layout and archive only once the new ones are whole.
rm -rf "$layout.old" && { [ ! -d "$layout" ] || mv "$layout" "$layout.old"; }
mv "$work/oci" "$layout" && rm -rf "$layout.old"
mv -f "$work/image.oci.tar" "$archive"
echo "$inputs" > "$stamp"
log "image sha256:$manifest_sum (layer $layer_size bytes compressed, binary $(stat -c %s "$bin") bytes): $archive"
echo "$archive"
