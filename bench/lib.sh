# Shared by the benchmarks (sourced, after `here` is set to the repository root): a scratch
# directory, the controller's memory figures, the opted-in Deployments the workload benchmarks
# cache, and cleanup however the script ends.

work=$(mktemp -d "${TMPDIR:-/tmp}/kube-reloader-bench.XXXXXX")
controller_pid=""
cleanup() {
  [ -n "$controller_pid" ] && kill "$controller_pid" 2>/dev/null && wait "$controller_pid" 2>/dev/null
  "$here/hack/cluster.sh" down "$work/cluster" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# kib FIELD: a field of the controller's /proc status (VmRSS, VmHWM), in KiB.
kib() { awk '/^'"$1"':/ {print $2}' "/proc/$controller_pid/status"; }

# wait_baselines N: until the controller's log ($work/log) shows N baselines recorded (at most
# 5 minutes; then it fails, saying so, rather than let a run be measured before it has synced).
wait_baselines() {
  local n=0
  for _ in $(seq 1 1500); do
    n=$(grep -c "recorded the baseline" "$work/log" || true)
    [ "$n" -ge "$1" ] && return 0
    sleep 0.2
  done
  echo "bench: only $n of $1 baselines recorded after 5 minutes; the controller's log ends:" >&2
  tail -n 20 "$work/log" >&2
  return 1
}

# deployments_yaml COUNT ENVS: ConfigMap `shared` and COUNT opted-in Deployments `web-I` in
# namespace bench, each with a pod spec of ENVS environment variables of a typical length and all
# of `shared` (YAML, for `kubectl apply -f`).
deployments_yaml() {
  echo "apiVersion: v1"
  echo "kind: ConfigMap"
  echo "metadata: {name: shared, namespace: bench}"
  echo "data: {k: v}"
  for i in $(seq 1 "$1"); do
    cat <<YAML
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web-$i, namespace: bench, labels: {app: web-$i, team: bench}, annotations: {kube-reloader.io/auto: "true"}}
spec:
  replicas: 0
  selector: {matchLabels: {app: web-$i}}
  template:
    metadata: {labels: {app: web-$i, team: bench}}
    spec:
      containers:
      - name: app
        image: registry.invalid/team/app:1.2.3
        envFrom: [{configMapRef: {name: shared}}]
        env:
YAML
    for e in $(seq 1 "$2"); do
      echo "        - {name: SETTING_NUMBER_$e, value: \"a value of a typical length for setting $e\"}"
    done
  done
}

# stop_run: stops the controller and the control plane of one run.
stop_run() {
  kill "$controller_pid"; wait "$controller_pid" 2>/dev/null || true; controller_pid=""
  "$here/hack/cluster.sh" down "$work/cluster" >/dev/null
}
