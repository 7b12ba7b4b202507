#!/usr/bin/env bash
# End-to-end latency with pods that run: from a ConfigMap edit to every pod of the Deployment
# Ready on the new config (the Deployment's status: all REPLICAS pods updated, Ready and
# available, none of the old template left), for 1, 10 and 50 replicas, on a cluster with a node
# (hack/cluster.sh up DIR --node). Next to it, the floor: the same edit, and the pod template
# patched at once by the script itself (no kube-reloader; the same kubectl apply, its next request), so what kube-reloader adds is the
# difference: its watch, debounce and write, not the rollout Kubernetes does either way.
#
#   bench/pods.sh [PATH-TO-kube-reloader]   (default: target/release/kube-reloader)
#   REPLICAS="1 10 50" ROUNDS=3 MODES="floor reloader-0s reloader" bench/pods.sh
#
# The app: busybox (the node's localhost/busybox image) reading key `greeting` of ConfigMap
# `config` as an environment variable and a mounted file, serving it with httpd on a port its
# readiness probe asks every second; the Deployment's default rolling update (25 % surge, 25 %
# unavailable). Modes, each measured ROUNDS times per replica count, the order rotating by round:
#   floor        the edit, then at once a merge patch of the pod template (an annotation);
#   reloader-0s  kube-reloader with --debounce=0s: only its reaction;
#   reloader     kube-reloader with its default --debounce=2s, as users run it.
# Both kube-reloader modes run with --min-rollout-interval=0s (a limit users set, not a delay on
# a single change). kube-reloader runs only during its own measurements, restarted for each (it
# first reconciles the Deployment, which the floor rolled behind its back: nothing rolls); before
# each edit the Deployment is settled and only its N pods exist.
# Times come from a watch on the Deployment (kubectl get -w), stamped as each event arrives.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$here/target/release/kube-reloader}
replica_counts=${REPLICAS:-1 10 50}
rounds=${ROUNDS:-3}
modes=${MODES:-floor reloader-0s reloader}
[ -x "$bin" ] || { echo "bench: no $bin: cargo build --release --bin kube-reloader" >&2; exit 1; }
# shellcheck source=bench/lib.sh
. "$here/bench/lib.sh"
watch_pid=""
trap '[ -z "$watch_pid" ] || kill "$watch_pid" 2>/dev/null; cleanup' EXIT

export KUBECONFIG
KUBECONFIG=$("$here/hack/cluster.sh" up "$work/cluster" --node 2>"$work/cluster.log") ||
  { cat "$work/cluster.log" >&2; exit 1; }
version=$(kubectl version -o json 2>/dev/null | sed -n 's/.*"gitVersion": *"\([^"]*\)".*/\1/p' | tail -n 1)
kubectl create namespace bench >/dev/null
echo "bench: Kubernetes $version, one node; modes: $modes; $rounds rounds" >&2

app_yaml() {
  cat <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: bench, annotations: {kube-reloader.io/auto: "true"}}
spec:
  replicas: $1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: app
        image: localhost/busybox:latest
        imagePullPolicy: Never
        command: [/bin/sh, -c, 'mkdir -p /tmp/www && echo "read env=\$GREETING file=\$(cat /config/greeting)" > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www']
        env: [{name: GREETING, valueFrom: {configMapKeyRef: {name: config, key: greeting}}}]
        volumeMounts: [{name: config, mountPath: /config}]
        ports: [{containerPort: 8080}]
        readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
      volumes: [{name: config, configMap: {name: config}}]
YAML
}

# edit VALUE [floor]: one kubectl apply of ConfigMap `config` with `greeting: VALUE`; for the
# floor, the same apply also writes an annotation into the Deployment's pod template, a request
# right after the ConfigMap's.
edit() {
  {
    printf 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config, namespace: bench}\ndata: {greeting: "%s"}\n' "$1"
    [ "${2:-}" != floor ] || printf -- '---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: bench}\nspec: {template: {metadata: {annotations: {bench/config: "%s"}}}}\n' "$1"
  } | kubectl apply --server-side --force-conflicts --field-manager bench -f - >/dev/null
}

# settled N: the Deployment's rollout is complete with N pods, and no other pod of it is left.
settled() {
  local s
  s=$(kubectl get deployment web -n bench -o \
    'jsonpath={.metadata.generation}|{.status.observedGeneration}|{.status.replicas}|{.status.updatedReplicas}|{.status.readyReplicas}|{.status.availableReplicas}')
  [ "$s" = "$(gen)|$(gen)|$1|$1|$1|$1" ] && [ "$(kubectl get pods -n bench -l app=web --no-headers 2>/dev/null | wc -l)" = "$1" ]
}
gen() { kubectl get deployment web -n bench -o 'jsonpath={.metadata.generation}'; }
# revision: the Deployment's revision, one more per pod template (an annotation-only write to the
# Deployment, such as kube-reloader's baseline, moves its generation, not this).
revision() { kubectl get deployment web -n bench -o 'jsonpath={.metadata.annotations.deployment\.kubernetes\.io/revision}'; }
wait_settled() {
  for _ in $(seq 1 1200); do settled "$1" && return 0; sleep 0.5; done
  echo "bench: the Deployment did not settle with $1 pods in 10 minutes" >&2
  kubectl get deployment,replicaset,pods -n bench >&2
  return 1
}

# watch_deployment FILE: starts a watch of the Deployment's status (pid in watch_pid) writing
# one line per event to FILE: "TIME|generation|observed|replicas|updated|ready|available|revision",
# TIME when the line arrived.
watch_deployment() {
  kubectl get deployment web -n bench -w -o \
    'jsonpath={.metadata.generation}|{.status.observedGeneration}|{.status.replicas}|{.status.updatedReplicas}|{.status.readyReplicas}|{.status.availableReplicas}|{.metadata.annotations.deployment\.kubernetes\.io/revision}{"\n"}' \
    > >(while IFS= read -r line; do echo "$EPOCHREALTIME|$line"; done > "$1") &
  watch_pid=$!
}

# mentions: the lines of kube-reloader's logs (every run's, appended) that find the Deployment up
# to date, its first decision taken (a debounce window it opened at start included).
mentions() { if [ -f "$work/log" ]; then grep "name=web" "$work/log" | grep -c "up to date" || true; else echo 0; fi; }

start_reloader() {
  touch "$work/log"
  "$bin" --namespace bench --controller-namespace bench --log-level info,kube_reloader::reconcile=debug \
    --metrics-addr 127.0.0.1:0 --min-rollout-interval=0s "$@" >> "$work/log" 2>&1 &
  controller_pid=$!
}

# measure N MODE VALUE: sets `took` to the seconds from the edit to the rollout's end (all N
# pods updated and Ready, none old).
measure() {
  local n=$1 mode=$2 value=$3 before rev lines t0 t1
  wait_settled "$n"
  rev=$(revision)
  lines=$(mentions)
  case $mode in
    reloader-0s) start_reloader --debounce=0s ;;
    reloader) start_reloader ;;
  esac
  if [ "$mode" != floor ]; then
    # Once it has decided on the Deployment and found it up to date (the floor rolled it behind
    # its back, with the config it rolled for: nothing to roll; that decision waits for a
    # debounce window), and its first sight is settled. An edit inside that window would be
    # decided with the floor's template change, as one change made together.
    for _ in $(seq 1 300); do
      [ "$(mentions)" -gt "$lines" ] && break
      sleep 0.1
    done
    sleep 1
    wait_settled "$n"
    [ "$(revision)" = "$rev" ] || echo "bench: note: kube-reloader rolled the Deployment when it started ($mode)" >&2
  fi
  # The rollout's end: a status for a generation after this one and a new revision (a new pod
  # template: an annotation-only write, such as a baseline kube-reloader records late, moves
  # the generation alone), with every pod updated, Ready and available, and no other.
  before=$(gen)
  rev=$(revision)
  : > "$work/watch"
  watch_deployment "$work/watch"
  for _ in $(seq 1 100); do [ -s "$work/watch" ] && break; sleep 0.05; done
  t0=$EPOCHREALTIME
  edit "$value" "$mode"
  t1=""
  for _ in $(seq 1 6000); do
    t1=$(awk -F'|' -v b="$before" -v n="$n" -v r="$rev" \
      '$2 > b && $2 == $3 && $4 == n && $5 == n && $6 == n && $7 == n && $8 > r { print $1; exit }' "$work/watch")
    [ -n "$t1" ] && break
    sleep 0.1
  done
  kill "$watch_pid" 2>/dev/null || true; wait "$watch_pid" 2>/dev/null || true; watch_pid=""
  [ "$mode" = floor ] || stop_reloader_process
  [ -n "$t1" ] || { echo "bench: no complete rollout of $n pods within 10 minutes ($mode)" >&2; return 1; }
  [ "$(revision)" = "$((rev + 1))" ] || { echo "bench: $mode: $(( $(revision) - rev )) rollouts for one edit" >&2; return 1; }
  took=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
}
stop_reloader_process() {
  kill "$controller_pid" 2>/dev/null || true; wait "$controller_pid" 2>/dev/null || true; controller_pid=""
}

edit v0
rows=()
for n in $replica_counts; do
  kubectl delete deployment web -n bench --ignore-not-found --wait=true >/dev/null
  for _ in $(seq 1 600); do [ "$(kubectl get pods -n bench --no-headers 2>/dev/null | wc -l)" = 0 ] && break; sleep 0.5; done
  app_yaml "$n" | kubectl apply --server-side -f - >/dev/null
  declare -A times=()
  read -r -a order <<< "$modes"
  for r in $(seq 1 "$rounds"); do
    for i in "${!order[@]}"; do
      mode=${order[$(( (i + r - 1) % ${#order[@]} ))]}
      measure "$n" "$mode" "v$n-$r-$mode"
      echo "bench: $n replica(s), round $r, $mode: $took s" >&2
      times[$mode]+="$took "
    done
  done
  floor_median=""
  for mode in "${order[@]}"; do
    stats=$(tr ' ' '\n' <<< "${times[$mode]}" | sort -n |
      awk 'NF { v[++k] = $1 } END { printf "%.2f|%.2f|%.2f", v[1], v[int((k + 1) / 2)], v[k] }')
    [ "$mode" != floor ] || floor_median=$(cut -d'|' -f2 <<< "$stats")
    rows+=("$n|$mode|$stats")
  done
  # What kube-reloader adds: its median over the floor's.
  for i in "${!rows[@]}"; do
    IFS='|' read -r rn mode lo med hi <<< "${rows[$i]}"
    [ "$rn" = "$n" ] || continue
    added="-"
    [ "$mode" = floor ] || [ -z "$floor_median" ] || added=$(awk -v a="$med" -v f="$floor_median" 'BEGIN { printf "%+.2f", a - f }')
    rows[i]="$rn|$mode|$lo|$med|$hi|$added"
  done
  unset times
done

echo
echo "Kubernetes $version, one node; seconds from the ConfigMap edit to every pod Ready on the new config ($rounds rounds: min / median / max)"
echo
echo "| replicas | mode | min | median | max | median over the floor's |"
echo "|---|---|---|---|---|---|"
for row in "${rows[@]}"; do
  IFS='|' read -r n mode lo med hi added <<< "$row"
  echo "| $n | $mode | $lo | $med | $hi | $added |"
done
