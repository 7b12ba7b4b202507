# Shared by the benchmarks (sourced, after `here` is set to the repository root): a scratch
# directory, the controller's memory figures, and cleanup however the script ends.

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
# 5 minutes).
wait_baselines() {
  local n
  for _ in $(seq 1 1500); do
    n=$(grep -c "recorded the baseline" "$work/log" || true)
    [ "$n" -ge "$1" ] && break
    sleep 0.2
  done
}

# stop_run: stops the controller and the control plane of one run.
stop_run() {
  kill "$controller_pid"; wait "$controller_pid" 2>/dev/null || true; controller_pid=""
  "$here/hack/cluster.sh" down "$work/cluster" >/dev/null
}
