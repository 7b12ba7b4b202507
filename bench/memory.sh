#!/usr/bin/env bash
# Memory benchmark: kube-reloader's resident memory while watching the same number of ConfigMaps
# and Secrets at very different data sizes. Content is digested on arrival and dropped, so the
# steady-state figure should not follow the size of the data.
#
#   bench/memory.sh [PATH-TO-kube-reloader]      (default: target/release/kube-reloader)
#   COUNTS="200" SIZES="1024 65536 524288" bench/memory.sh
#   ARGS="--initial-list streaming" bench/memory.sh     (extra controller flags)
#
# For each size: a fresh control plane, COUNT ConfigMaps and COUNT Secrets of one key of SIZE
# bytes each, one opted-in Deployment per ConfigMap; then the controller starts, lists
# everything, records baselines; RSS is read from /proc once it is idle. The API server's peak
# RSS is reset (/proc/PID/clear_refs) just before the controller starts, so its column is the
# peak while the controller lists and records. Prints a Markdown table.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$here/target/release/kube-reloader}
[ -x "$bin" ] || { echo "bench: build first: cargo build --release (or pass the binary)" >&2; exit 1; }
counts=${COUNTS:-200}
sizes=${SIZES:-1024 65536 524288}
# shellcheck source=bench/lib.sh
. "$here/bench/lib.sh"

read -ra extra <<< "${ARGS:-}"
echo "| objects (ConfigMaps + Secrets) | bytes each | data watched | RSS after sync | peak RSS | API server peak RSS |"
echo "|---|---|---|---|---|---|"
for count in $counts; do
  for size in $sizes; do
    export KUBECONFIG
    KUBECONFIG=$("$here/hack/cluster.sh" up "$work/cluster" 2>/dev/null)
    kubectl create namespace bench >/dev/null
    head -c "$size" /dev/zero | tr '\0' 'x' > "$work/value"
    {
      for i in $(seq 1 "$count"); do
        kubectl create configmap "cm-$i" -n bench --from-file=value="$work/value" --dry-run=client -o yaml
        echo "---"
        kubectl create secret generic "s-$i" -n bench --from-file=value="$work/value" --dry-run=client -o yaml
        echo "---"
        cat <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: web-$i, namespace: bench, annotations: {kube-reloader.io/auto: "true"}}
spec:
  replicas: 0
  selector: {matchLabels: {app: web-$i}}
  template:
    metadata: {labels: {app: web-$i}}
    spec:
      containers:
      - name: app
        image: registry.invalid/app:1
        envFrom: [{configMapRef: {name: cm-$i}}, {secretRef: {name: s-$i}}]
---
EOF
      done
    } > "$work/objects.yaml"
    kubectl create -f "$work/objects.yaml" >/dev/null
    kubectl create namespace kube-reloader >/dev/null
    apiserver=$(cat "$work/cluster/kube-apiserver.pid")
    echo 5 > "/proc/$apiserver/clear_refs"
    "$bin" --namespace bench --controller-namespace kube-reloader --log-level info "${extra[@]}" > "$work/log" 2>&1 &
    controller_pid=$!
    wait_baselines "$count"
    sleep 2
    rss=$(kib VmRSS); hwm=$(kib VmHWM)
    server_hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$apiserver/status")
    total=$(( 2 * count * size / 1024 / 1024 ))
    printf '| %d + %d | %d | %d MiB | %d MiB | %d MiB | %d MiB |\n' "$count" "$count" "$size" "$total" \
      $((rss / 1024)) $((hwm / 1024)) $((server_hwm / 1024))
    stop_run
  done
done
