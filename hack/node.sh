#!/usr/bin/env bash
# The test cluster's node: what runs pods beside the kubelet that hack/testenv.sh builds.
#
#   node.sh provision      build or find the node's pieces; prints their directory (last line)
#   node.sh start DIR KUBECONFIG CA_CERT CA_KEY
#                          start a node in DIR (a bridge, containerd, the kubelet), registered
#                          with the API server KUBECONFIG names; its serving certificate is signed
#                          by CA_CERT/CA_KEY, the CA the API server trusts for kubelets. Returns
#                          once the node is Ready, the pids in DIR/*.pid
#   node.sh import DIR ARCHIVE NAME
#                          import an OCI archive (`make image`'s) into the running node of DIR,
#                          as NAME:TAG for each tag the archive names (its ref.name annotation):
#                          a pod then runs it with imagePullPolicy Never or IfNotPresent
#   node.sh stop DIR       stop every process of that node (containers too), unmount what it
#                          mounted, remove its cgroups and its bridge, and remove DIR
#
# The pieces, provisioned once and cached in $KUBE_RELOADER_CACHE/node-<digest of the inputs>:
#  - containerd, containerd-shim-runc-v2 and ctr, built from the Go modules pinned in
#    hack/node/go.mod and go.sum (CGO off, as containerd's static release builds);
#  - Debian's runc and CNI plugins (containernetworking-plugins: bridge, host-local, loopback);
#  - two images assembled without a registry by buildah from scratch and written as
#    docker-archive tars for `ctr images import`: localhost/pause:latest, the sandbox, from
#    hack/node/pause.c built with `gcc -static`; and localhost/busybox:latest, Debian's
#    busybox-static with a link per applet (/bin/sh, httpd, wget, …). Nothing is ever pulled.
#
# Network: the node's address is the gateway of a bridge this script creates (10.77.N.1/24, one
# N per running node); the CNI bridge plugin puts pods on it with no default route, no masquerade
# and no port mapping, so pods reach the node and each other and nothing else, and no iptables
# rule is made. The kubelet serves on the node address only; the API server stays on loopback.
# cgroups: the node's cgroup root nests under this process's memory cgroup (so every container is
# accounted where the caller is), in cgroup v1 hierarchies (this machine is v1 in hybrid mode).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
log() { printf 'node: %s\n' "$*" >&2; }
die() { printf 'node: error: %s\n' "$*" >&2; exit 1; }

cache_root=${KUBE_RELOADER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kube-reloader}
# Only NODE_BUILD from it: K8S_VERSION, which the caller may have set, stays for testenv.sh.
NODE_BUILD=$(. "$here/k8s-version.env" && echo "$NODE_BUILD")
runc_bin=/usr/sbin/runc
cni_bin_dir=/usr/lib/cni
pause_image=localhost/pause:latest
busybox_image=localhost/busybox:latest

go_cmd() {
  local go_bin
  go_bin=$(command -v go || true)
  [ -n "$go_bin" ] || { [ -x /usr/local/go/bin/go ] && go_bin=/usr/local/go/bin/go; } ||
    die "no go on the PATH: building containerd needs Go (hack/node/go.mod's go directive says which)"
  (cd "$here/node" && CGO_ENABLED=0 GOTOOLCHAIN=auto GOFLAGS=-mod=readonly \
    GOMODCACHE="$cache_root/go-mod" GOCACHE="$cache_root/go-build" "$go_bin" "$@")
}

# --- provision -------------------------------------------------------------------------------

install_packages() {
  local need=()
  [ -x "$runc_bin" ] || need+=(runc)
  [ -x "$cni_bin_dir/bridge" ] && [ -x "$cni_bin_dir/host-local" ] && [ -x "$cni_bin_dir/loopback" ] ||
    need+=(containernetworking-plugins)
  command -v gcc >/dev/null 2>&1 || need+=(gcc)
  # gcc -static links glibc's static archive.
  [ -f /usr/lib/x86_64-linux-gnu/libc.a ] || need+=(libc6-dev)
  command -v buildah >/dev/null 2>&1 || need+=(buildah)
  dpkg-query -W -f '${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' || need+=(busybox-static)
  command -v ip >/dev/null 2>&1 || need+=(iproute2)
  command -v openssl >/dev/null 2>&1 || need+=(openssl)
  [ ${#need[@]} -gt 0 ] || return 0
  [ "$(id -u)" = 0 ] || die "missing packages ${need[*]}; run as root or install them: apt-get install ${need[*]}"
  local apt_log="$cache_root/apt.log"
  mkdir -p "$cache_root"
  log "installing Debian packages: ${need[*]} (log: $apt_log)"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get install -y -qq "${need[@]}" || { apt-get update -qq && apt-get install -y -qq "${need[@]}"; }; } \
    > "$apt_log" 2>&1 || { tail -n 20 "$apt_log" >&2; die "apt-get install ${need[*]} failed (the end of $apt_log is above)"; }
}

provision() {
  [ "$(uname -s)/$(uname -m)" = Linux/x86_64 ] || die "the test node runs on linux/amd64; this is $(uname -s)/$(uname -m)"
  install_packages
  local containerd_version busybox_version inputs node_dir
  containerd_version=$(awk '$1 == "github.com/containerd/containerd/v2" { print $2; exit }' "$here/node/go.mod")
  [ -n "$containerd_version" ] || die "hack/node/go.mod does not require github.com/containerd/containerd/v2"
  busybox_version=$(dpkg-query -W -f '${Version}' busybox-static)
  # Everything the node directory is made of; any change gives a new directory. NODE_BUILD
  # (hack/k8s-version.env) stands for the way this script builds them.
  inputs=$( { cat "$here/node/go.mod" "$here/node/go.sum" "$here/node/pause.c"
    printf '%s\n' "$NODE_BUILD" "$busybox_version" "$(gcc -dumpfullversion)" "$(buildah --version)"; } |
    sha256sum | cut -c1-16)
  node_dir="$cache_root/node-$containerd_version-$inputs"
  mkdir -p "$cache_root"
  exec 7>"$cache_root/.node.lock"
  flock 7 || die "cannot lock $cache_root/.node.lock"
  if [ ! -f "$node_dir/complete" ]; then
    rm -rf "$node_dir.tmp" && mkdir -p "$node_dir.tmp/bin" "$node_dir.tmp/images"
    build_containerd "$containerd_version" "$node_dir.tmp/bin"
    build_images "$node_dir.tmp/images" "$busybox_version"
    touch "$node_dir.tmp/complete"
    rm -rf "$node_dir" && mv "$node_dir.tmp" "$node_dir"
  else
    log "containerd $containerd_version and the node's images cached in $node_dir"
  fi
  exec 7>&-
  echo "$node_dir"
}

build_containerd() {
  local version=$1 out=$2 started=$SECONDS ldflags pkg=github.com/containerd/containerd/v2
  log "building containerd $version from Go modules (hack/node/go.mod; about 3 minutes on 2 cores, once)"
  ldflags="-X $pkg/version.Version=$version -X $pkg/version.Package=github.com/containerd/containerd/v2"
  # The tags of containerd's own Makefile; the shim is built without gRPC, as there.
  if ! { go_cmd build -trimpath -tags urfave_cli_no_docs -ldflags "$ldflags" -o "$out/" \
    "$pkg/cmd/containerd" "$pkg/cmd/ctr" &&
    go_cmd build -trimpath -tags "urfave_cli_no_docs no_grpc" -ldflags "$ldflags" -o "$out/" \
      "$pkg/cmd/containerd-shim-runc-v2"; } > "$out/../build.log" 2>&1; then
    tail -n 30 "$out/../build.log" >&2
    die "building containerd $version failed (the end of $out/../build.log is above)"
  fi
  log "containerd $version built in $((SECONDS - started)) s"
}

# One image from a root filesystem directory, as a docker-archive tar. buildah with vfs storage of
# its own (removed after) and no RUN step; file times, owners and the commit time are fixed, so
# the same inputs give the same image.
image_from_rootfs() {
  local rootfs=$1 name=$2 tar=$3 work=$4; shift 4
  local buildah=(buildah --root "$work/storage" --runroot "$work/run" --storage-driver vfs) container
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$rootfs" -cf "$work/layer.tar" . ||
    die "packing $rootfs failed"
  container=$(BUILDAH_ISOLATION=chroot "${buildah[@]}" from --quiet scratch) || die "buildah from scratch failed"
  "${buildah[@]}" add --quiet "$container" "$work/layer.tar" / >/dev/null || die "buildah add failed"
  "${buildah[@]}" config "$@" "$container" || die "buildah config failed"
  "${buildah[@]}" commit --quiet --rm --format docker --timestamp 0 --identity-label=false \
    "$container" "docker-archive:$tar:$name" >/dev/null || die "buildah commit $name failed"
  rm -rf "$work/storage" "$work/run" "$work/layer.tar"
}

build_images() {
  local out=$1 busybox_version=$2 work
  work=$(mktemp -d "${TMPDIR:-/tmp}/kube-reloader-node-images.XXXXXX")
  log "assembling the images $pause_image (hack/node/pause.c) and $busybox_image (busybox-static $busybox_version)"

  mkdir -p "$work/pause/bin"
  gcc -static -Os -Wall -Wextra -Werror -o "$work/pause/bin/pause" "$here/node/pause.c" ||
    die "gcc -static hack/node/pause.c failed"
  image_from_rootfs "$work/pause" "$pause_image" "$out/pause.tar" "$work" \
    --entrypoint '["/bin/pause"]' --user 65535:65535

  local busybox applet
  busybox=$(dpkg -L busybox-static | grep -m1 '/bin/busybox$') || die "busybox-static has no bin/busybox"
  mkdir -p "$work/busybox/bin" "$work/busybox/tmp" "$work/busybox/etc"
  install -m 0755 "$busybox" "$work/busybox/bin/busybox"
  for applet in $("$busybox" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$work/busybox/bin/$applet"
  done
  for applet in sh httpd wget; do
    [ -L "$work/busybox/bin/$applet" ] || die "Debian's busybox-static $busybox_version has no $applet applet"
  done
  chmod 1777 "$work/busybox/tmp"
  printf 'root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$work/busybox/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\n' > "$work/busybox/etc/group"
  image_from_rootfs "$work/busybox" "$busybox_image" "$out/busybox.tar" "$work" \
    --cmd '["/bin/sh"]' --env PATH=/bin
  rm -rf "$work"
}

# --- start and stop ------------------------------------------------------------------------

# The cgroup v1 hierarchies (mount points), one per line; the unified (v2) one of hybrid mode is
# not among them.
v1_hierarchies() { awk '$3 == "cgroup" { print $2 }' /proc/self/mounts; }

# The unified (v2) hierarchy of hybrid mode, if mounted: it holds no controller, but runc makes
# each container's cgroup there too, so the node's levels are made (and removed) there as well.
unified_hierarchy() { awk '$3 == "cgroup2" { print $2 }' /proc/self/mounts; }

# This process's memory cgroup, under which the node's cgroup root nests.
memory_cgroup() { awk -F: '$2 ~ /(^|,)memory(,|$)/ { print $3 }' /proc/self/cgroup; }

# Creates the cgroup PATH in every v1 hierarchy (and the unified one), level by level, and lists each directory it made
# in the file CREATED, which all nodes of this machine share (a level one node made may be used by
# another, so whichever stops last removes it); a new cpuset level gets its parent's CPUs and
# memory nodes (a cpuset cgroup starts with none and can hold no process). Called under the lock.
make_cgroup() {
  local path=$1 created=$2 h sub dir parent
  while read -r h; do
    dir=$h
    for sub in ${path//\// }; do
      parent=$dir
      dir=$dir/$sub
      [ -d "$dir" ] && continue
      mkdir "$dir" || die "cannot create cgroup $dir"
      echo "$dir" >> "$created"
      if [ -f "$dir/cpuset.cpus" ]; then
        cat "$parent/cpuset.cpus" > "$dir/cpuset.cpus" && cat "$parent/cpuset.mems" > "$dir/cpuset.mems" ||
          die "cannot set up cpuset cgroup $dir"
      fi
    done
  done < <(v1_hierarchies; unified_hierarchy)
}

# Moves process PID into cgroup PATH in every v1 hierarchy.
join_cgroup() {
  local pid=$1 path=$2 h
  while read -r h; do
    echo "$pid" > "$h$path/cgroup.procs" || die "cannot move $pid into $h$path"
  done < <(v1_hierarchies)
}

# A node index N (bridge kr-node-N, subnet 10.77.N.0/24) no other node of this machine holds,
# taken by creating the bridge under a lock.
# Nodes of this machine take their bridge and make or remove their cgroup levels (which they may
# share) under this lock.
node_lock=${TMPDIR:-/tmp}/kube-reloader-nodes.lock

allocate_bridge() {
  local n
  (
    flock 9 || die "cannot lock $node_lock"
    for n in $(seq 1 254); do
      ip link show "kr-node-$n" >/dev/null 2>&1 && continue
      ip route show | grep -q "^10\.77\.$n\.0/24 " && continue
      ip link add "kr-node-$n" type bridge || die "cannot create bridge kr-node-$n"
      ip addr add "10.77.$n.1/24" dev "kr-node-$n" &&
        ip link set "kr-node-$n" up || { ip link del "kr-node-$n"; die "cannot set up bridge kr-node-$n"; }
      echo "$n"
      exit 0
    done
    die "no free node index (bridges kr-node-1 to kr-node-254 all exist)"
  ) 9>"$node_lock"
}

start() {
  local dir=$1 kubeconfig=$2 ca_crt=$3 ca_key=$4 node_dir bin_dir
  node_dir=$(provision | tail -n 1)
  bin_dir=$("$here/testenv.sh" | tail -n 1) || die "provisioning the Kubernetes binaries failed (hack/testenv.sh)"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  local started n ip name=kube-reloader-node cgroup
  started=$(date +%s%N)
  # The cgroup handling below is cgroup v1's, which these machines have (hybrid mode).
  v1_hierarchies | grep -q '/memory$' ||
    die "no cgroup v1 memory hierarchy here: hack/node.sh runs a node on cgroup v1 only (mounts: $(awk '$3 ~ /^cgroup/ { print $2 }' /proc/self/mounts | tr '\n' ' '))"
  n=$(allocate_bridge)
  echo "$n" > "$dir/index"
  ip=10.77.$n.1
  cgroup="$(memory_cgroup)/kube-reloader-node-$n"
  cgroup=/${cgroup#/}
  echo "$cgroup" > "$dir/cgroup"
  ( flock 9 || die "cannot lock $node_lock"; make_cgroup "$cgroup/system" "$node_lock.cgroups" ) 9>"$node_lock"

  # The kubelet's serving certificate, for its address, signed by the CA the API server checks.
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$name" \
    -keyout "$dir/kubelet.key" -out "$dir/kubelet.csr" 2>/dev/null &&
    openssl x509 -req -in "$dir/kubelet.csr" -CA "$ca_crt" -CAkey "$ca_key" -CAcreateserial -days 30 \
      -extfile <(printf 'subjectAltName=IP:%s\nextendedKeyUsage=serverAuth\n' "$ip") \
      -out "$dir/kubelet.crt" 2>/dev/null || die "cannot make the kubelet's serving certificate"

  mkdir -p "$dir/cni" "$dir/containerd"
  cat > "$dir/cni/10-bridge.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "kr-node-$n",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "kr-node-$n",
      "isGateway": false,
      "isDefaultGateway": false,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$dir/cni/ipam",
        "ranges": [[{ "subnet": "10.77.$n.0/24", "rangeStart": "10.77.$n.10", "gateway": "$ip" }]]
      }
    }
  ]
}
EOF
  local sock="$dir/containerd/containerd.sock"
  # Shim sockets go in a directory of this node's own, short enough for a socket's 108 bytes.
  local shim_dir=/run/kube-reloader/node-$n
  echo "$shim_dir" > "$dir/shim-dir"
  cat > "$dir/containerd/config.toml" <<EOF
version = 4
root = "$dir/containerd/root"
state = "$dir/containerd/state"
# Nothing of the host's /etc/containerd, and none of the plugins that reach outside this node:
# tracing export, NRI's shared socket, /opt/containerd, image verifiers.
imports = []
disabled_plugins = [
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
  "io.containerd.nri.v1.nri",
  "io.containerd.internal.v1.opt",
  "io.containerd.image-verifier.v1.bindir",
]

[plugins."io.containerd.server.v1.grpc"]
  address = "$sock"
[plugins."io.containerd.server.v1.ttrpc"]
  address = "$sock.ttrpc"
[plugins."io.containerd.server.v1.debug"]
  address = ""
[plugins."io.containerd.server.v1.metrics"]
  address = ""
[plugins."io.containerd.shim.v1.manager"]
  socket_dir = "$shim_dir"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "$pause_image"

[plugins."io.containerd.cri.v1.runtime"]
  # Root here lacks CAP_SYS_RESOURCE: without this, every sandbox fails with "runc create failed:
  # unable to start container process: can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  cdi_spec_dirs = []
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["$cni_bin_dir"]
    conf_dir = "$dir/cni"
    max_conf_num = 1
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "$runc_bin"
        Root = "$dir/containerd/runc"
        SystemdCgroup = false

# The streaming server (exec, attach, port-forward) on loopback, on a port of its own.
[plugins."io.containerd.grpc.v1.cri"]
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
EOF

  # containerd and the kubelet start in the node's system cgroup, so their children (shims and
  # containers, which runc moves into the pods' cgroups under the same root) are all found there.
  (join_cgroup "$BASHPID" "$cgroup/system" &&
    exec "$node_dir/bin/containerd" --config "$dir/containerd/config.toml" --log-level warn) \
    > "$dir/containerd.log" 2>&1 &
  echo $! > "$dir/containerd.pid"
  local up=""
  for _ in $(seq 1 100); do
    kill -0 "$(cat "$dir/containerd.pid")" 2>/dev/null || break
    "$node_dir/bin/ctr" --address "$sock" version >/dev/null 2>&1 && { up=1; break; }
    sleep 0.1
  done
  [ -n "$up" ] || { tail -n 20 "$dir/containerd.log" >&2; die "containerd did not start (log above, in $dir)"; }
  local image
  for image in pause busybox; do
    "$node_dir/bin/ctr" --address "$sock" -n k8s.io images import \
      "$node_dir/images/$image.tar" >> "$dir/images.log" 2>&1 ||
      { tail -n 20 "$dir/images.log" >&2; die "ctr images import $image.tar failed"; }
  done

  cat > "$dir/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine has cgroup v1 (hybrid mode); since 1.35 the kubelet refuses v1 unless told.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: $cgroup
containerRuntimeEndpoint: unix://$sock
address: $ip
port: 10250
readOnlyPort: 0
healthzPort: 0
tlsCertFile: $dir/kubelet.crt
tlsPrivateKeyFile: $dir/kubelet.key
# Only the API server (its client certificate, signed by the cluster's kubelet CA) gets in.
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $ca_crt}
authorization: {mode: AlwaysAllow}
# No iptables rules on this shared machine; pods have no DNS server to ask (no cluster DNS, and
# the host's resolver would be off the node's network).
makeIPTablesUtilChains: false
resolvConf: ""
podLogsDir: $dir/pod-logs
# Thresholds that a shared development machine's disk and memory do not trip; the imported images
# are never garbage-collected.
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
EOF
  # No cloud provider (the kubelet's default is external, and none runs), no credential provider
  # plugin, and the metadata-address lookups of cloud SDKs switched off in case any is linked in.
  (join_cgroup "$BASHPID" "$cgroup/system" &&
    AWS_EC2_METADATA_DISABLED=true exec "$bin_dir/kubelet" --config "$dir/kubelet.yaml" \
      --kubeconfig "$kubeconfig" --root-dir "$dir/kubelet" --hostname-override "$name" \
      --node-ip "$ip" --v 1) > "$dir/kubelet.log" 2>&1 &
  echo $! > "$dir/kubelet.pid"

  local ready=""
  for _ in $(seq 1 600); do
    kill -0 "$(cat "$dir/kubelet.pid")" 2>/dev/null || break
    # Ready, and without the not-ready taint it was registered with (so pods can be scheduled).
    if [ "$("$bin_dir/kubectl" --kubeconfig "$kubeconfig" get node "$name" \
      -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status} {.spec.taints}' 2>/dev/null)" = "True " ]; then
      ready=1
      break
    fi
    sleep 0.2
  done
  [ -n "$ready" ] || { tail -n 30 "$dir/kubelet.log" >&2; die "node $name did not become Ready (kubelet log above, logs in $dir)"; }
  local ms=$((($(date +%s%N) - started) / 1000000))
  log "node $name ($ip) Ready in $((ms / 1000)).$((ms % 1000 / 100)) s (containerd, images, kubelet)"
}

import_image() {
  local dir=$1 archive=$2 name=$3 node_dir sock
  sock="$dir/containerd/containerd.sock"
  [ -S "$sock" ] || die "no running node in $dir (no $sock)"
  [ -f "$archive" ] || die "no image archive $archive (make image builds one)"
  node_dir=$(provision | tail -n 1)
  "$node_dir/bin/ctr" --address "$sock" -n k8s.io images import --base-name "$name" "$archive" \
    >> "$dir/images.log" 2>&1 || { tail -n 20 "$dir/images.log" >&2; die "ctr images import $archive failed"; }
  "$node_dir/bin/ctr" --address "$sock" -n k8s.io images list -q | grep "^$name:" ||
    die "$archive held no tagged image: nothing imported as $name:TAG"
}

stop() {
  local dir=$1 pids h
  [ -d "$dir" ] || return 0
  local cgroup n
  cgroup=$(cat "$dir/cgroup" 2>/dev/null || true)
  n=$(cat "$dir/index" 2>/dev/null || true)
  pids=$(cat "$dir"/*.pid 2>/dev/null || true)
  # shellcheck disable=SC2086
  [ -z "$pids" ] || kill -TERM $pids 2>/dev/null || true
  for _ in $(seq 1 30); do
    local alive=""
    for p in $pids; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ -z "$alive" ] && break
    sleep 0.1
  done
  # Whatever is left in the node's cgroups (containerd, shims, containers): killed until none is.
  if [ -n "$cgroup" ]; then
    local mem
    mem=$(v1_hierarchies | grep -m1 '/memory$' || true)
    for _ in $(seq 1 50); do
      pids=$(cat $(find "$mem$cgroup" -name cgroup.procs 2>/dev/null) /dev/null 2>/dev/null || true)
      [ -z "$pids" ] && break
      # shellcheck disable=SC2086
      kill -KILL $pids 2>/dev/null || true
      sleep 0.1
    done
  fi
  # Mounts under the node's directory (pod volumes, container root filesystems, network
  # namespaces), deepest first.
  local m
  for m in $(awk -v d="$dir/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "cannot unmount $m"
  done
  # The pods' cgroups (runc makes them in the unified hierarchy of hybrid mode too), then the
  # levels make_cgroup made, deepest first; a level another node still uses stays.
  (
    flock 9 || die "cannot lock $node_lock"
    if [ -n "$cgroup" ]; then
      while read -r h; do
        [ -d "$h$cgroup" ] && { find "$h$cgroup" -depth -type d -exec rmdir {} \; 2>/dev/null || true; }
      done < <(v1_hierarchies; unified_hierarchy)
    fi
    # The shared levels no node uses any more (rmdir fails on one that is in use).
    if [ -f "$node_lock.cgroups" ]; then
      tac "$node_lock.cgroups" | while read -r h; do rmdir "$h" 2>/dev/null || true; done
      while read -r h; do [ ! -d "$h" ] || echo "$h"; done < "$node_lock.cgroups" > "$node_lock.cgroups.new"
      mv -f "$node_lock.cgroups.new" "$node_lock.cgroups"
    fi
  ) 9>"$node_lock"
  [ -z "$n" ] || ip link del "kr-node-$n" 2>/dev/null || true
  [ ! -f "$dir/shim-dir" ] || { rm -rf "$(cat "$dir/shim-dir")"; rmdir /run/kube-reloader 2>/dev/null || true; }
  rm -rf "$dir"
}

case "${1:-}" in
  provision) provision ;;
  start) [ $# -eq 5 ] || die "usage: node.sh start DIR KUBECONFIG CA_CERT CA_KEY"; start "$2" "$3" "$4" "$5" ;;
  import) [ $# -eq 4 ] || die "usage: node.sh import DIR ARCHIVE NAME"; import_image "$2" "$3" "$4" ;;
  stop) [ $# -eq 2 ] || die "usage: node.sh stop DIR"; stop "$2" ;;
  *) die "usage: node.sh provision | start DIR KUBECONFIG CA_CERT CA_KEY | import DIR ARCHIVE NAME | stop DIR" ;;
esac
