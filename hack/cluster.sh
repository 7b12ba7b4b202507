#!/usr/bin/env bash
# A local Kubernetes control plane on loopback: etcd, kube-apiserver and kube-controller-manager.
# Without --node there is no scheduler and no kubelet: pods stay Pending, but Deployments,
# ReplicaSets, StatefulSets and DaemonSets are really reconciled, so a pod-template change
# produces a real rollout. With --node, kube-scheduler and one node (hack/node.sh: containerd,
# runc, a CNI bridge and the kubelet) run pods too.
#
#   cluster.sh run DIR [--node]   start in DIR, print "ready KUBECONFIG" (with --node: once the
#                         node is Ready) and stay in the foreground until stdin closes or a signal
#                         arrives; then stop everything and remove DIR. (The test support holds
#                         stdin open: if the test process dies in any way, the pipe closes and the
#                         control plane goes with it.)
#   cluster.sh up DIR [--node]    start in DIR in the background and print the KUBECONFIG path.
#   cluster.sh down DIR   stop what `up` started (the node too) and remove DIR.
#
# Every process listens on free loopback ports only. Admin credentials: a static token for user
# `admin` in group `system:masters`; further tokens can be listed in $KUBE_RELOADER_EXTRA_TOKENS
# (lines of the apiserver's token file format: token,user,uid,"group1,group2").
# With $KUBE_RELOADER_SECOND_APISERVER set, a second kube-apiserver serves the same etcd on a port
# of its own, reached through DIR/kubeconfig-2 (pid, log and audit log: kube-apiserver-2.*), as
# in a control plane of several: a test can freeze one and keep writing through the other.
# $KUBE_RELOADER_APISERVER_FLAGS adds flags to every kube-apiserver (separated by spaces).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
log() { printf 'cluster: %s\n' "$*" >&2; }
die() { printf 'cluster: error: %s\n' "$*" >&2; exit 1; }

cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || die "usage: cluster.sh run|up|down DIR [--node]"
node=false
case "${3:-}" in
  "") ;;
  --node) node=true ;;
  *) die "unknown option $3 (usage: cluster.sh run|up|down DIR [--node])" ;;
esac

# A loopback port nothing listens on, below the kernel's ephemeral range (where ports bound to 0
# and the local ends of outgoing connections come from, and could take it before our process
# binds it), and not handed to another control plane of this machine in the last 10 minutes:
# control planes start concurrently (the tests run several), and a port probed free is only
# bound a moment later.
free_port() {
  local p low high registry=${TMPDIR:-/tmp}/kube-reloader-ports
  low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
  [ "$low" -gt 11000 ] 2>/dev/null || low=32768
  high=$((low - 1))
  (
    flock 9 || die "cannot lock $registry.lock"
    now=$(date +%s)
    touch "$registry"
    for _ in $(seq 1 500); do
      p=$((10000 + RANDOM % (high - 10000)))
      awk -v p="$p" -v t="$((now - 600))" '$1 == p && $2 > t { found = 1 } END { exit !found }' "$registry" && continue
      if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        awk -v t="$((now - 600))" '$2 > t' "$registry" > "$registry.new" && mv "$registry.new" "$registry"
        echo "$p $now" >> "$registry"
        echo "$p"
        exit 0
      fi
    done
    die "no free loopback port found"
  ) 9>"$registry.lock"
}

# Sends SIGTERM to these pids, waits up to 5 s for them to exit, then SIGKILLs what is left.
stop_pids() {
  [ $# -gt 0 ] || return 0
  kill -TERM "$@" 2>/dev/null || true
  for _ in $(seq 1 50); do
    local alive="" p
    for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ -z "$alive" ] && break
    sleep 0.1
  done
  kill -KILL "$@" 2>/dev/null || true
}

stop_all() {
  # The node first: its kubelet would otherwise go on without an API server. Then the API
  # server's clients, the API server, and etcd last: an API server whose etcd is gone takes a
  # minute to shut down (so it was SIGKILLed).
  [ ! -d "$dir/node" ] || "$here/node.sh" stop "$dir/node" || log "stopping the node failed"
  local group name pids
  for group in "kube-scheduler kube-controller-manager" "kube-apiserver kube-apiserver-2" etcd; do
    pids=()
    for name in $group; do
      [ ! -f "$dir/$name.pid" ] || pids+=("$(cat "$dir/$name.pid")")
    done
    stop_pids "${pids[@]}"
  done
  rm -f "$dir"/*.pid
}

start_all() {
  local bin_dir
  bin_dir=$("$here/testenv.sh" | tail -n 1) || die "provisioning the control plane binaries failed (hack/testenv.sh)"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  local etcd_port peer_port api_port
  etcd_port=$(free_port); peer_port=$(free_port); api_port=$(free_port)

  openssl genrsa -out "$dir/sa.key" 2048 2>/dev/null || die "openssl genrsa failed"
  openssl rsa -in "$dir/sa.key" -pubout -out "$dir/sa.pub" 2>/dev/null || die "openssl rsa failed"
  # Without a node, no pod ever runs, and no ServiceAccount controller makes the `default`
  # ServiceAccount the ServiceAccount admission plugin would require of every pod.
  local token apiserver_flags=(--disable-admission-plugins ServiceAccount)
  token=$(openssl rand -hex 24)
  if $node; then
    # The kubelet's CA: it signs the kubelet's serving certificate (hack/node.sh) and the client
    # certificate the API server presents to the kubelet (logs, exec), the only one it accepts.
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
      -subj /CN=kube-reloader-test-kubelet-ca -keyout "$dir/kubelet-ca.key" -out "$dir/kubelet-ca.crt" \
      2>/dev/null || die "cannot make the kubelet CA"
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
      -subj "/O=system:masters/CN=kube-apiserver-kubelet-client" \
      -keyout "$dir/kubelet-client.key" -out "$dir/kubelet-client.csr" 2>/dev/null &&
      openssl x509 -req -in "$dir/kubelet-client.csr" -CA "$dir/kubelet-ca.crt" -CAkey "$dir/kubelet-ca.key" \
        -CAcreateserial -days 30 -extfile <(echo extendedKeyUsage=clientAuth) \
        -out "$dir/kubelet-client.crt" 2>/dev/null || die "cannot make the API server's kubelet client certificate"
    # The kubelet by its address on the node's bridge, never by its host name (a DNS lookup).
    apiserver_flags=(--kubelet-client-certificate "$dir/kubelet-client.crt" --kubelet-client-key "$dir/kubelet-client.key"
      --kubelet-certificate-authority "$dir/kubelet-ca.crt" --kubelet-preferred-address-types InternalIP)
  fi
  # Further flags a test asks for (say --feature-gates=WatchList=false), separated by spaces.
  local extra_flags
  read -r -a extra_flags <<< "${KUBE_RELOADER_APISERVER_FLAGS:-}"
  apiserver_flags+=("${extra_flags[@]}")
  {
    echo "$token,admin,admin,\"system:masters\""
    [ -n "${KUBE_RELOADER_EXTRA_TOKENS:-}" ] && printf '%s\n' "$KUBE_RELOADER_EXTRA_TOKENS"
  } > "$dir/tokens.csv"
  # Every request made as a ServiceAccount is recorded (metadata only: who, verb, object), so the
  # install tests can check that each permission the shipped RBAC grants is really used.
  cat > "$dir/audit-policy.yaml" <<'EOF'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    userGroups: ["system:serviceaccounts"]
  - level: None
EOF

  "$bin_dir/etcd" --name default --data-dir "$dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "default=http://127.0.0.1:$peer_port" \
    --log-level warn > "$dir/etcd.log" 2>&1 &
  echo $! > "$dir/etcd.pid"

  start_apiserver "$api_port" kube-apiserver audit.log
  write_kubeconfig "$dir/kubeconfig" "https://127.0.0.1:$api_port" "$token"
  wait_apiserver kube-apiserver "$dir/kubeconfig"
  if [ -n "${KUBE_RELOADER_SECOND_APISERVER:-}" ]; then
    # Started once the first has written the self-signed certificate both then serve.
    local second_port
    second_port=$(free_port)
    start_apiserver "$second_port" kube-apiserver-2 audit-2.log
    write_kubeconfig "$dir/kubeconfig-2" "https://127.0.0.1:$second_port" "$token"
    wait_apiserver kube-apiserver-2 "$dir/kubeconfig-2"
  fi

  # With a node, more controllers: node lifecycle (the kubelet registers the node tainted
  # not-ready, and this controller lifts the taint once the node reports Ready); cronjob and job,
  # so CronJobs run on schedule; serviceaccount and root-ca-cert-publisher, the `default`
  # ServiceAccount and the `kube-root-ca.crt` ConfigMap of every namespace, which the
  # ServiceAccount admission plugin (on with a node) needs to give pods their API credentials.
  # Without a node none of these run: no Job appears but one a test makes.
  local controllers=deployment,replicaset,statefulset,daemonset,garbagecollector ca_flags=()
  if $node; then
    controllers+=,nodelifecycle,cronjob,job,serviceaccount,root-ca-cert-publisher
    ca_flags=(--root-ca-file "$dir/certs/apiserver.crt")
  fi
  "$bin_dir/kube-controller-manager" --kubeconfig "$dir/kubeconfig" \
    --controllers "$controllers" "${ca_flags[@]}" \
    --leader-elect=false --secure-port 0 --use-service-account-credentials=false \
    --kube-api-qps 200 --kube-api-burst 400 \
    --concurrent-deployment-syncs 10 --concurrent-replicaset-syncs 10 --concurrent-statefulset-syncs 10 \
    --v 1 > "$dir/kube-controller-manager.log" 2>&1 &
  echo $! > "$dir/kube-controller-manager.pid"
  # A bad flag or kubeconfig makes it exit at once: catch that here rather than as test time-outs.
  sleep 0.5
  if ! kill -0 "$(cat "$dir/kube-controller-manager.pid")" 2>/dev/null; then
    tail -n 20 "$dir/kube-controller-manager.log" >&2 || true
    stop_all
    die "kube-controller-manager exited at start (log above)"
  fi
  $node || return 0

  "$bin_dir/kube-scheduler" --kubeconfig "$dir/kubeconfig" --leader-elect=false --secure-port 0 \
    --kube-api-qps 200 --kube-api-burst 400 \
    --v 1 > "$dir/kube-scheduler.log" 2>&1 &
  echo $! > "$dir/kube-scheduler.pid"
  if ! "$here/node.sh" start "$dir/node" "$dir/kubeconfig" "$dir/kubelet-ca.crt" "$dir/kubelet-ca.key"; then
    stop_all
    die "the node did not start (hack/node.sh's message above)"
  fi
  if ! kill -0 "$(cat "$dir/kube-scheduler.pid")" 2>/dev/null; then
    tail -n 20 "$dir/kube-scheduler.log" >&2 || true
    stop_all
    die "kube-scheduler exited (log above)"
  fi
}

# kube-apiserver on port $1, its pid and log in DIR/$2.pid and DIR/$2.log, its audit log DIR/$3;
# and start_all's apiserver_flags (without a node, no ServiceAccount admission; with one, how to
# reach its kubelet).
start_apiserver() {
  "$bin_dir/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$1" \
    --cert-dir "$dir/certs" \
    --authorization-mode RBAC --token-auth-file "$dir/tokens.csv" \
    --service-account-issuer https://kubernetes.default.svc \
    --service-account-key-file "$dir/sa.pub" --service-account-signing-key-file "$dir/sa.key" \
    --service-cluster-ip-range 10.96.0.0/24 \
    --endpoint-reconciler-type none \
    --audit-policy-file "$dir/audit-policy.yaml" --audit-log-path "$dir/$3" \
    "${apiserver_flags[@]}" \
    --v 1 > "$dir/$2.log" 2>&1 &
  echo $! > "$dir/$2.pid"
}

# Waits until the kube-apiserver named $1 (see start_apiserver) answers through kubeconfig $2.
wait_apiserver() {
  local ready=""
  for _ in $(seq 1 600); do
    kill -0 "$(cat "$dir/$1.pid")" 2>/dev/null || break
    kill -0 "$(cat "$dir/etcd.pid")" 2>/dev/null || break
    if [ -f "$dir/certs/apiserver.crt" ] &&
      [ "$("$bin_dir/kubectl" --kubeconfig "$2" get --raw /readyz 2>/dev/null)" = ok ] &&
      "$bin_dir/kubectl" --kubeconfig "$2" get namespace default >/dev/null 2>&1; then
      ready=1
      break
    fi
    sleep 0.2
  done
  if [ -z "$ready" ]; then
    tail -n 20 "$dir/etcd.log" "$dir/$1.log" >&2 || true
    stop_all
    die "$1 did not become ready (logs above, full logs in $dir)"
  fi
}

write_kubeconfig() {
  cat > "$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: $2
    certificate-authority: $dir/certs/apiserver.crt
users:
- name: admin
  user:
    token: $3
contexts:
- name: local
  context:
    cluster: local
    user: admin
    namespace: default
current-context: local
EOF
}

case "$cmd" in
  run)
    trap 'stop_all; rm -rf "$dir"; exit 0' TERM INT HUP
    start_all
    echo "ready $dir/kubeconfig"
    # Wait for stdin to close; `read` returns non-zero at EOF.
    while read -r _; do :; done
    stop_all
    rm -rf "$dir"
    ;;
  up)
    [ -f "$dir/kubeconfig" ] && [ -f "$dir/kube-apiserver.pid" ] &&
      kill -0 "$(cat "$dir/kube-apiserver.pid")" 2>/dev/null && { echo "$dir/kubeconfig"; exit 0; }
    start_all
    echo "$dir/kubeconfig"
    ;;
  down)
    [ -d "$dir" ] || exit 0
    stop_all
    rm -rf "$dir"
    ;;
  *) die "unknown command $cmd (run, up or down)" ;;
esac
