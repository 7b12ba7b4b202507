#!/usr/bin/env bash
# Latency benchmark: how long a ConfigMap change takes to reach the workload's pod template with
# kube-reloader, next to the floor (bench/latency.rs `floor`: a client that watches ConfigMaps
# and merge-patches the matching Deployment at once, nothing else), on the same fixture and the
# same control plane. Also kube-reloader's first sync, its memory, and what it writes when it
# restarts over unchanged workloads.
#
#   bench/latency.sh [PATH-TO-kube-reloader]   (default: target/release/kube-reloader)
#   WORKLOADS=1000 SECRETS=10000 CHANGES=1000 RATE=50 ROUNDS=2 bench/latency.sh
#   WORKLOADS=10000 CONFIGMAPS=25000 SECRETS=25000 bench/latency.sh     (the 10,000 run)
#
# The fixture: WORKLOADS opted-in Deployments `web-I` of bench/workloads.sh's realistic size
# (ENVS environment variables, kubectl's last-applied copy), each using ConfigMap `cm-I` and
# Secret `s-I`; CONFIGMAPS small ConfigMaps and SECRETS Secrets of SECRET_BYTES bytes in all
# (those beyond the workloads are used by none).
# Then:
#   1. kube-reloader's first start: time to every baseline, RSS after sync.
#   2. ROUNDS rounds of two phases, their order alternating (odd rounds floor first):
#      - floor: the floor client runs while CHANGES ConfigMaps of distinct workloads change at
#        RATE per second; afterwards the changes and the floor's template mark are put back, so
#        the workloads are again as kube-reloader last left them;
#      - kube-reloader: it starts over those unchanged workloads (time to every workload
#        reconciled, RSS, and the writes it makes to pod templates or its own annotations,
#        counted on a watch: should be 0), then the same CHANGES at the same RATE.
#      Latency = from the change request to the workload's pod template changing, on a watch.
# kube-reloader runs with --debounce=0s --min-rollout-interval=0s and a token bucket larger than
# the changes, so that only its reaction is measured, not the limits users set.
# KUBE_RELOADER_ARGS adds flags (e.g. --max-concurrent-reconciles=16).
# Needs the release builds: cargo build --release --bin kube-reloader --example latency
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$here/target/release/kube-reloader}
helper=${HELPER:-$here/target/release/examples/latency}
workloads=${WORKLOADS:-1000}
configmaps=${CONFIGMAPS:-$workloads}
secrets=${SECRETS:-10000}
secret_bytes=${SECRET_BYTES:-16384}
envs=${ENVS:-30}
changes=${CHANGES:-1000}
rate=${RATE:-50}
rounds=${ROUNDS:-2}
for b in "$bin" "$helper"; do
  [ -x "$b" ] || { echo "bench: no $b: cargo build --release --bin kube-reloader --example latency" >&2; exit 1; }
done
# shellcheck source=bench/lib.sh
. "$here/bench/lib.sh"
floor_pid=""
writes_pid=""
stop_helpers() {
  for p in $floor_pid $writes_pid; do kill "$p" 2>/dev/null || true; done
}
trap 'stop_helpers; cleanup' EXIT

export KUBECONFIG
KUBECONFIG=$("$here/hack/cluster.sh" up "$work/cluster" 2>/dev/null)
kubectl create namespace bench >/dev/null
kubectl create namespace kube-reloader >/dev/null
"$helper" fixture --workloads "$workloads" --configmaps "$configmaps" --secrets "$secrets" \
  --secret-bytes "$secret_bytes" --envs "$envs" 2> "$work/fixture.log"
cat "$work/fixture.log" >&2
bytes=$(kubectl get deployments -n bench -o json | wc -c)

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
# wait_log FILE PATTERN: until FILE has a line matching PATTERN (at most 10 minutes).
wait_log() {
  for _ in $(seq 1 3000); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 0.2
  done
  echo "bench: no \"$2\" in $1 after 10 minutes; it ends:" >&2
  tail -n 20 "$1" >&2
  return 1
}

start_reloader() {
  # shellcheck disable=SC2086 # KUBE_RELOADER_ARGS is split into flags on purpose
  "$bin" --namespace bench --controller-namespace kube-reloader \
    --log-level info,kube_reloader::reconcile=debug \
    --metrics-addr 127.0.0.1:0 --debounce=0s --min-rollout-interval=0s \
    --max-rollouts-per-second 100000 --rollout-burst 100000 ${KUBE_RELOADER_ARGS:-} > "$work/log" 2>&1 &
  controller_pid=$!
  wait_log "$work/log" "serving /metrics"
  addr=$(grep -o 'address=[0-9.:]*' "$work/log" | head -n 1 | cut -d= -f2)
}
stop_reloader() {
  kill "$controller_pid"; wait "$controller_pid" 2>/dev/null || true; controller_pid=""
}
# reconciled: how many workloads kube-reloader has reconciled (its reconcile log is at debug
# level, where an unchanged workload says "up to date").
reconciled() {
  grep -E "kube_reloader::reconcile: (up to date|recorded|rolled out)" "$work/log" |
    grep -o 'name=web-[0-9]*' | sort -u | wc -l
}
# wait_reconciled N: until it is ready and has reconciled N workloads (at most 10 minutes).
wait_reconciled() {
  for _ in $(seq 1 600); do
    if curl -fsS "http://$addr/readyz" >/dev/null 2>&1 && [ "$(reconciled)" -ge "$1" ]; then
      return 0
    fi
    sleep 1
  done
  echo "bench: only $(reconciled) of $1 workloads reconciled after 10 minutes" >&2
  return 1
}
json() { sed -n 's/.*"'"$2"'":\([^,}]*\).*/\1/p' <<< "$1"; }

results=()
phase=0
drive() {
  local out
  out=$("$helper" drive --changes "$changes" --rate "$rate" --label "$1" \
    --offset $(( phase * changes % workloads )) --record "$work/changed.tsv")
  phase=$((phase + 1))
  results+=("$out")
  echo "$out" >&2
}

floor_phase() {
  "$helper" floor 2> "$work/floor.log" &
  floor_pid=$!
  wait_log "$work/floor.log" "floor: synced"
  drive floor
  kill "$floor_pid"; wait "$floor_pid" 2>/dev/null || true; floor_pid=""
  "$helper" restore --record "$work/changed.tsv"
}

restarts=()
reloader_phase() {
  "$helper" writes > "$work/writes.out" 2> "$work/writes.log" &
  writes_pid=$!
  wait_log "$work/writes.log" "writes: watching"
  local start; start=$(now)
  start_reloader
  wait_reconciled "$workloads"
  local took; took=$(since "$start")
  sleep 5
  kill "$writes_pid"; wait "$writes_pid" 2>/dev/null || true; writes_pid=""
  local w; w=$(json "$(cat "$work/writes.out")" writes)
  restarts+=("$took $((  $(kib VmRSS) / 1024 )) $w")
  drive kube-reloader
  hwm=$(( $(kib VmHWM) / 1024 ))
  peaks+=("$hwm")
  stop_reloader
}

# 1. First sync.
start=$(now)
start_reloader
wait_baselines "$workloads"
first_sync=$(since "$start")
sleep 2
first_rss=$(( $(kib VmRSS) / 1024 )); first_hwm=$(( $(kib VmHWM) / 1024 ))
stop_reloader

# 2. Rounds.
peaks=()
for r in $(seq 1 "$rounds"); do
  if [ $((r % 2)) -eq 1 ]; then floor_phase; reloader_phase; else reloader_phase; floor_phase; fi
done

echo
echo "Fixture: $workloads Deployments (average $((bytes / workloads / 1024)) KiB as JSON), $configmaps ConfigMaps, $secrets Secrets of $secret_bytes bytes; $changes changes at $rate/s per phase."
echo
echo "| run | changes | missed | p50 | p90 | p99 | max |"
echo "|---|---|---|---|---|---|---|"
for r in "${results[@]}"; do
  printf '| %s | %s | %s | %s ms | %s ms | %s ms | %s ms |\n' "$(json "$r" label | tr -d '"')" \
    "$(json "$r" changes)" "$(json "$r" missed)" "$(json "$r" p50_ms)" "$(json "$r" p90_ms)" \
    "$(json "$r" p99_ms)" "$(json "$r" max_ms)"
done
# Medians of each side's per-run figures, and their ratio.
summary() {
  local label=$1 field=$2
  for r in "${results[@]}"; do
    [ "$(json "$r" label | tr -d '"')" = "$label" ] && json "$r" "$field"
  done | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}
echo
echo "| median of runs | p50 | p90 | p99 | max |"
echo "|---|---|---|---|---|"
for label in kube-reloader floor; do
  printf '| %s | %s ms | %s ms | %s ms | %s ms |\n' "$label" "$(summary "$label" p50_ms)" \
    "$(summary "$label" p90_ms)" "$(summary "$label" p99_ms)" "$(summary "$label" max_ms)"
done
ratio() { awk -v a="$(summary kube-reloader "$1")" -v b="$(summary floor "$1")" 'BEGIN { printf "%.2f", a / b }'; }
printf '| ratio | %s× | %s× | %s× | %s× |\n' "$(ratio p50_ms)" "$(ratio p90_ms)" "$(ratio p99_ms)" "$(ratio max_ms)"
echo
echo "| kube-reloader | to every workload | RSS after sync | peak RSS | writes |"
echo "|---|---|---|---|---|"
printf '| first start (baselines) | %s s | %s MiB | %s MiB | %s baselines |\n' "$first_sync" "$first_rss" "$first_hwm" "$workloads"
i=0
for s in "${restarts[@]}"; do
  read -r took rss w <<< "$s"
  printf '| restart over unchanged workloads | %s s | %s MiB | %s MiB (after its changes) | %s |\n' "$took" "$rss" "${peaks[$i]}" "$w"
  i=$((i + 1))
done
