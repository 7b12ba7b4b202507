#!/usr/bin/env bash
# Kind benchmark: kube-reloader's resident memory while it caches COUNT opted-in Deployments, and
# then COUNT objects of a custom kind holding the very same pod template: the tests' Widget
# (tests/fixtures/crds/widget.yaml), template at spec.workload.podTemplate, rolled with
# --workload-kind. Each Widget's pod template is its Deployment's as the API server stores it
# (defaults included, taken from a server-side dry run of the same Deployments), and both are
# applied with client-side `kubectl apply`, so each also carries kubectl's last-applied copy and
# its managedFields. One control plane per kind; the controller has the same flags in both runs
# (the Widget kind configured, its CRD installed), so only the objects differ.
#
#   bench/kinds.sh [BINARY]                  (default: target/release/kube-reloader)
#   COUNT=1000 ENVS=30 bench/kinds.sh
#
# Prints a Markdown table: the kind, the objects, their average size as the API server returns
# them (JSON), the time from start until every baseline is recorded, the controller's RSS then,
# and its peak; then the custom kind's figures relative to the Deployments'.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$here/target/release/kube-reloader}
count=${COUNT:-1000}
envs=${ENVS:-30}
[ -x "$bin" ] || { echo "bench: no binary $bin (cargo build --release, or pass one)" >&2; exit 1; }
command -v jq >/dev/null || { echo "bench: jq is needed to turn Deployments into Widgets" >&2; exit 1; }
# shellcheck source=bench/lib.sh
. "$here/bench/lib.sh"

crd=$here/tests/fixtures/crds/widget.yaml
widget=tests.kube-reloader.io/v1/Widget=spec.workload.podTemplate
deployments_yaml "$count" "$envs" > "$work/objects.yaml"

# The Deployments of objects.yaml as the API server would store them, each turned into a Widget
# with the same name, labels, annotations and pod template (a List, for `kubectl apply -f`).
widgets_json() {
  kubectl create --dry-run=server -o json -f "$work/objects.yaml" |
    jq -s '{apiVersion: "v1", kind: "List", items: [
      .[] | if .kind == "List" then .items[] else . end | select(.kind == "Deployment") | {
        apiVersion: "tests.kube-reloader.io/v1", kind: "Widget",
        metadata: {name: .metadata.name, namespace: .metadata.namespace,
                   labels: .metadata.labels, annotations: .metadata.annotations},
        spec: {workload: {podTemplate: .spec.template}}
      }]}'
}

mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
pct() { awk -v w="$1" -v d="$2" 'BEGIN { printf "%+.1f%%", (w - d) * 100 / d }'; }

echo "| kind | objects | average size (JSON) | all baselines after | RSS after sync | peak RSS |"
echo "|---|---|---|---|---|---|"
declare -A rss_of hwm_of
for kind in Deployment Widget; do
  export KUBECONFIG
  KUBECONFIG=$("$here/hack/cluster.sh" up "$work/cluster" 2>/dev/null)
  kubectl create namespace bench >/dev/null
  kubectl create namespace kube-reloader >/dev/null
  kubectl apply --server-side -f "$crd" >/dev/null
  kubectl wait --for=condition=established --timeout=60s crd/widgets.tests.kube-reloader.io >/dev/null
  # Served in discovery too, as the controller looks it up at start.
  for _ in $(seq 1 300); do
    kubectl get widgets -n bench >/dev/null 2>&1 && break
    sleep 0.2
  done
  case $kind in
    Deployment)
      kubectl apply -f "$work/objects.yaml" >/dev/null
      resource=deployments
      ;;
    Widget)
      widgets_json > "$work/widgets.json"
      [ "$(jq '.items | length' "$work/widgets.json")" -eq "$count" ] ||
        { echo "bench: the dry run did not give $count Deployments" >&2; exit 1; }
      kubectl create configmap shared -n bench --from-literal=k=v >/dev/null
      kubectl apply -f "$work/widgets.json" >/dev/null
      resource=widgets
      ;;
  esac
  bytes=$(kubectl get "$resource" -n bench -o json | wc -c)
  start=$(date +%s.%N)
  "$bin" --namespace bench --controller-namespace kube-reloader --log-level info \
    --workload-kind "$widget" > "$work/log" 2>&1 &
  controller_pid=$!
  wait_baselines "$count"
  took=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  sleep 2
  rss=$(kib VmRSS); hwm=$(kib VmHWM)
  rss_of[$kind]=$rss; hwm_of[$kind]=$hwm
  printf '| %s | %d | %d KiB | %s s | %s MiB | %s MiB |\n' "$kind" "$count" \
    $((bytes / count / 1024)) "$took" "$(mib "$rss")" "$(mib "$hwm")"
  stop_run
done

echo
echo "Widget against Deployment: RSS after sync $(pct "${rss_of[Widget]}" "${rss_of[Deployment]}"), peak RSS $(pct "${hwm_of[Widget]}" "${hwm_of[Deployment]}")."
