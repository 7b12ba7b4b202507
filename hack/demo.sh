#!/usr/bin/env bash
# The kube-reloader demo: a local control plane, the controller, and a ConfigMap change rolled out.
# Usage: hack/demo.sh PATH-TO-kube-reloader-BINARY. Cleans up after itself, also on Ctrl-C.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
bin=${1:?usage: demo.sh PATH-TO-kube-reloader}
dir=$(mktemp -d "${TMPDIR:-/tmp}/kube-reloader-demo.XXXXXX")
controller_pid=""

cleanup() {
  [ -n "$controller_pid" ] && kill "$controller_pid" 2>/dev/null && wait "$controller_pid" 2>/dev/null
  "$here/cluster.sh" down "$dir/cluster" || true
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -t 1 ]; then bold=$'\033[1m' plain=$'\033[0m'; else bold="" plain=""; fi
step() { printf '\n%s==> %s%s\n' "$bold" "$*" "$plain"; }
wait_until() { # description, timeout seconds, command...
  local what=$1 timeout=$2; shift 2
  for _ in $(seq 1 $((timeout * 5))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "demo: timed out waiting for $what" >&2
  echo "--- controller log ---" >&2; tail -n 30 "$dir/controller.log" >&2 || true
  return 1
}

# The pinned kubectl (hack/testenv.sh), not whichever one is installed.
bin_dir=$("$here/testenv.sh" 2>"$dir/testenv.log" | tail -n 1) || { cat "$dir/testenv.log" >&2; exit 1; }
PATH="$bin_dir:$PATH"

step "Starting a local control plane (etcd, kube-apiserver, kube-controller-manager)"
KUBECONFIG=$("$here/cluster.sh" up "$dir/cluster" 2>/dev/null)
export KUBECONFIG
kubectl version 2>/dev/null | grep Server || true

step "Starting kube-reloader (log: $dir/controller.log)"
kubectl create namespace kube-reloader >/dev/null
kubectl create namespace demo >/dev/null
"$bin" --controller-namespace kube-reloader --log-level info >"$dir/controller.log" 2>&1 &
controller_pid=$!
wait_until "the controller to start" 30 grep -q "initial lists complete" "$dir/controller.log"
sed 's/^/    /' "$dir/controller.log"

step "Creating a ConfigMap and a Deployment that opts in with kube-reloader.io/auto: \"true\""
cat <<'EOF' | tee "$dir/app.yaml" | sed 's/^/    /'
apiVersion: v1
kind: ConfigMap
metadata:
  name: app-config
  namespace: demo
data:
  LOG_LEVEL: info
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: demo
  annotations:
    kube-reloader.io/auto: "true"
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: registry.example/web:1.0
        envFrom:
        - configMapRef: {name: app-config}
EOF
kubectl apply -f "$dir/app.yaml" >/dev/null
wait_until "the baseline" 30 sh -c \
  "kubectl -n demo get deploy web -o jsonpath='{.metadata.annotations.kube-reloader\.io/config-hash}' | grep -q ."
echo
echo "kube-reloader recorded a baseline on the Deployment (first sight: nothing is restarted):"
echo "    kube-reloader.io/config-hash: $(kubectl -n demo get deploy web -o jsonpath='{.metadata.annotations.kube-reloader\.io/config-hash}')"
wait_until "the first ReplicaSet" 30 sh -c "kubectl -n demo get rs -l app=web --no-headers | grep -q ."
echo "One ReplicaSet, as before:"
kubectl -n demo get rs -l app=web | sed 's/^/    /'

step "Changing the ConfigMap: LOG_LEVEL info -> debug"
kubectl -n demo patch configmap app-config --type merge -p '{"data":{"LOG_LEVEL":"debug"}}' | sed 's/^/    /'
wait_until "the rollout" 30 sh -c "[ \$(kubectl -n demo get rs -l app=web --no-headers | wc -l) -ge 2 ]"

step "Kubernetes rolled the Deployment: a new ReplicaSet for the new pod template"
kubectl -n demo get rs -l app=web | sed 's/^/    /'
echo
echo "The pod template now carries the digest of the new configuration:"
echo "    spec.template kube-reloader.io/config-hash: $(kubectl -n demo get deploy web -o jsonpath='{.spec.template.metadata.annotations.kube-reloader\.io/config-hash}')"
echo
echo "And the Deployment has an Event saying why:"
wait_until "the Reloaded Event" 10 sh -c "kubectl -n demo get events --field-selector reason=Reloaded --no-headers | grep -q ."
kubectl -n demo get events --field-selector reason=Reloaded | sed 's/^/    /'

step "A GitOps delivery: a kustomize-style rename (new ConfigMap app-config-v2, the Deployment switched to it) in one apply"
sed -e 's/name: app-config$/name: app-config-v2/' -e 's/LOG_LEVEL: info/LOG_LEVEL: warn/' \
  -e 's/{name: app-config}/{name: app-config-v2}/' "$dir/app.yaml" >"$dir/app-v2.yaml"
grep -E "app-config|LOG_LEVEL" "$dir/app-v2.yaml" | sed 's/^/    /'
kubectl apply -f "$dir/app-v2.yaml" >/dev/null
wait_until "the re-baseline" 30 sh -c \
  "kubectl -n demo get events --field-selector reason=ReloadNotNeeded --no-headers | grep -q ."
wait_until "Kubernetes' rollout" 30 sh -c "[ \$(kubectl -n demo get rs -l app=web --no-headers | wc -l) -ge 3 ]"
sleep 3 # long enough for a second rollout to show, if there were one
echo "Kubernetes rolled once, for the new pod template; kube-reloader added no rollout of its own:"
kubectl -n demo get rs -l app=web | sed 's/^/    /'
kubectl -n demo get events --field-selector reason=ReloadNotNeeded -o custom-columns=REASON:.reason,MESSAGE:.message |
  sed 's/^/    /'

step "Controller log"
grep -E "rolled out|baseline" "$dir/controller.log" | sed 's/^/    /'

step "Done: tearing everything down"
