#!/usr/bin/env bash
# Build the container image without a daemon: the static musl release binary, then an OCI image
# equal to the Dockerfile's final stage (FROM scratch, the binary alone at /kube-reloader,
# USER 65532:65532, EXPOSE 9090, ENTRYPOINT ["/kube-reloader"]), assembled by Debian's buildah
# and written as an OCI archive (target/image/kube-reloader-VERSION.oci.tar, tag VERSION), and
# unpacked beside it as an OCI image layout (target/image/oci/) for tools that read a directory.
#
# buildah runs with vfs storage of its own under target/image/buildah (never the machine's
# /var/lib/containers) and chroot isolation: the image needs no RUN step, so nothing is ever run
# in a container, and neither overlayfs nor user namespaces are needed. It is reproducible: the
# commit time and the layer's file times are SOURCE_DATE_EPOCH (default 0), its owner root and
# its mode fixed, and buildah's version label is left out, so the same binary gives the same
# digests.
#
# Installs what it needs: the rustup target x86_64-unknown-linux-musl, and Debian's musl-tools
# (musl-gcc, for ring's C and assembly) and buildah. Cached: cargo rebuilds only what changed
# (the first build takes 5 to 8 minutes on 2 cores: fat LTO), and an unchanged binary, version,
# epoch, buildah and script leave the image as it was.
# Prints the archive's path on its last line (and nothing else on stdout).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
target=x86_64-unknown-linux-musl
epoch=${SOURCE_DATE_EPOCH:-0}
log() { printf 'image: %s\n' "$*" >&2; }
die() { printf 'image: error: %s\n' "$*" >&2; exit 1; }

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -n 1)
[ -n "$version" ] || die "no version in $root/Cargo.toml"

if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
  log "adding the rustup target $target"
  rustup target add "$target" >&2 || die "rustup target add $target failed"
fi
need_pkgs=()
command -v musl-gcc >/dev/null 2>&1 || need_pkgs+=(musl-tools)
command -v buildah >/dev/null 2>&1 || need_pkgs+=(buildah)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "missing ${need_pkgs[*]}; run as root or install: apt-get install ${need_pkgs[*]}"
  log "installing Debian packages: ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq "${need_pkgs[@]}" >&2 ||
    { apt-get update -qq >&2 && apt-get install -y -qq "${need_pkgs[@]}" >&2; } ||
    die "apt-get install ${need_pkgs[*]} failed"
fi

log "building the static release binary (cargo build --release --locked --target $target)"
(cd "$root" && CC_x86_64_unknown_linux_musl=musl-gcc \
  "${CARGO:-cargo}" build --release --locked --target "$target" >&2) || die "cargo build for $target failed"
bin="$root/target/$target/release/kube-reloader"
[ -x "$bin" ] || die "$bin was not built"
# A scratch image has no loader and no libc: the binary must be static, with no program
# interpreter. (readelf is binutils', there with gcc; `file` may not be on a fresh machine.)
headers=$(readelf --program-headers "$bin") || die "readelf cannot read $bin"
if grep -q 'program interpreter' <<<"$headers"; then
  die "$bin is dynamically linked"
fi

out="$root/target/image"
layout="$out/oci"
archive="$out/kube-reloader-$version.oci.tar"
stamp="$out/inputs.sha256"
mkdir -p "$out"
# One build at a time (`make image` beside a test that builds it too).
exec 9>"$out/.lock"
flock 9 || die "cannot lock $out/.lock"

# What the image is made of: the binary, the version, the epoch, buildah, and this script.
inputs="$(sha256sum "$bin" | cut -d' ' -f1) $version $epoch $(buildah --version) $(sha256sum "$0" | cut -d' ' -f1)"
if [ -f "$archive" ] && [ -f "$layout/index.json" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$inputs" ]; then
  log "image unchanged: $archive"
  echo "$archive"
  exit 0
fi

work=$(mktemp -d "$out/.work.XXXXXX")
# buildah's own storage, vfs: a container made from scratch is a plain directory.
buildah=(buildah --root "$out/buildah/storage" --runroot "$out/buildah/run" --storage-driver vfs)
container=kube-reloader-image-$$
cleanup() {
  "${buildah[@]}" rm "$container" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
export BUILDAH_ISOLATION=chroot

# The Dockerfile's final stage, step by step (tests/integration/image.rs compares the two).
"${buildah[@]}" from --quiet --isolation chroot --name "$container" scratch >/dev/null ||
  die "buildah from scratch failed"
"${buildah[@]}" copy --quiet --chown 0:0 --chmod 0755 "$container" "$bin" /kube-reloader >/dev/null ||
  die "buildah copy failed"
"${buildah[@]}" config --user 65532:65532 --port 9090/tcp --entrypoint '["/kube-reloader"]' \
  --created-by 'COPY /kube-reloader /kube-reloader (hack/image.sh, buildah)' "$container" ||
  die "buildah config failed"
"${buildah[@]}" commit --quiet --rm --format oci --timestamp "$epoch" --identity-label=false \
  --disable-compression=false "$container" "oci-archive:$work/image.oci.tar:$version" >/dev/null ||
  die "buildah commit failed"

# The layout beside it: the archive unpacked.
mkdir -p "$work/oci"
tar -xf "$work/image.oci.tar" -C "$work/oci" || die "unpacking $work/image.oci.tar failed"
# Replace the previous layout and archive only once the new ones are whole.
rm -rf "$layout.old" && { [ ! -d "$layout" ] || mv "$layout" "$layout.old"; }
mv "$work/oci" "$layout" && rm -rf "$layout.old"
mv -f "$work/image.oci.tar" "$archive"
echo "$inputs" > "$stamp"
manifest=$(sed -n 's/.*"digest":"\(sha256:[0-9a-f]*\)".*/\1/p' "$layout/index.json")
log "image $manifest (binary $(stat -c %s "$bin") bytes, archive $(stat -c %s "$archive") bytes): $archive"
echo "$archive"
