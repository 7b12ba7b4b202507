#!/usr/bin/env bash
# Workload memory benchmark: kube-reloader's resident memory while it caches many opted-in
# Deployments of a realistic size (a pod spec with ENVS environment variables, applied with
# client-side `kubectl apply`, so each carries kubectl's last-applied copy of itself and its
# managedFields). Compares the binaries given, one control plane per run.
#
#   bench/workloads.sh [BINARY ...]          (default: target/release/kube-reloader)
#   COUNT=1000 ENVS=30 bench/workloads.sh old/kube-reloader target/release/kube-reloader
#
# Prints a Markdown table: the binary, the workloads, their average size as the API server
# returns them (JSON), the time from start until every baseline is recorded, and the
# controller's RSS then, and its peak.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
[ $# -gt 0 ] || set -- "$here/target/release/kube-reloader"
count=${COUNT:-1000}
envs=${ENVS:-30}
for bin in "$@"; do
  [ -x "$bin" ] || { echo "bench: no binary $bin (cargo build --release, or pass one)" >&2; exit 1; }
done
# shellcheck source=bench/lib.sh
. "$here/bench/lib.sh"

deployments_yaml "$count" "$envs" > "$work/objects.yaml"

echo "| binary | Deployments | average size (JSON) | all baselines after | RSS after sync | peak RSS |"
echo "|---|---|---|---|---|---|"
for bin in "$@"; do
  export KUBECONFIG
  KUBECONFIG=$("$here/hack/cluster.sh" up "$work/cluster" 2>/dev/null)
  kubectl create namespace bench >/dev/null
  kubectl create namespace kube-reloader >/dev/null
  kubectl apply -f "$work/objects.yaml" >/dev/null
  bytes=$(kubectl get deployments -n bench -o json | wc -c)
  start=$(date +%s.%N)
  "$bin" --namespace bench --controller-namespace kube-reloader --log-level info > "$work/log" 2>&1 &
  controller_pid=$!
  wait_baselines "$count"
  took=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  sleep 2
  rss=$(kib VmRSS); hwm=$(kib VmHWM)
  printf '| %s | %d | %d KiB | %s s | %d MiB | %d MiB |\n' "$bin" "$count" $((bytes / count / 1024)) "$took" $((rss / 1024)) $((hwm / 1024))
  stop_run
done
