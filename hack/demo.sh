#!/usr/bin/env bash
# The kube-reloader demo: a local cluster with a node (hack/cluster.sh up DIR --node), the
# controller, and a ConfigMap change rolled out to pods that print the value they read: before,
# after, the old pod gone, and the seconds from the edit to the new pod Ready.
# Usage: hack/demo.sh PATH-TO-kube-reloader-BINARY. Cleans up after itself, also on Ctrl-C.
# A first run provisions (apt, Go builds: minutes); its output goes to target/demo/provision.log,
# with one progress line per step here.
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

# Provisioning (the pinned kubectl and the Kubernetes binaries, hack/testenv.sh; the node's
# containerd, runc, CNI plugins and images, hack/node.sh): everything they print goes to the log
# file, and only their progress lines (one per step) here.
provision_log="$here/../target/demo/provision.log"
mkdir -p "$(dirname "$provision_log")"
provision_log="$(cd "$(dirname "$provision_log")" && pwd)/provision.log"
: > "$provision_log"
progress() { # command...: its stderr to the log, its progress lines to the terminal too
  "$@" 2> >(tee -a "$provision_log" | grep --line-buffered -E '^(testenv|node): ' | sed -u 's/^/    /' >&2)
}
step "Provisioning (first run only: minutes; full output in $provision_log)"
bin_dir=$(progress "$here/testenv.sh" | tail -n 1) || { tail -n 30 "$provision_log" >&2; exit 1; }
progress "$here/node.sh" provision >/dev/null || { tail -n 30 "$provision_log" >&2; exit 1; }
# The pinned kubectl, not whichever one is installed.
PATH="$bin_dir:$PATH"

step "Starting a local cluster: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, and one node (containerd, kubelet)"
KUBECONFIG=$("$here/cluster.sh" up "$dir/cluster" --node 2>>"$provision_log") ||
  { tail -n 30 "$provision_log" >&2; exit 1; }
export KUBECONFIG
kubectl version 2>/dev/null | grep Server | sed 's/^/    /' || true
kubectl get nodes | sed 's/^/    /'

step "Starting kube-reloader (log: $dir/controller.log)"
kubectl create namespace kube-reloader >/dev/null
kubectl create namespace demo >/dev/null
"$bin" --controller-namespace kube-reloader --log-level info >"$dir/controller.log" 2>&1 &
controller_pid=$!
wait_until "the controller to start" 30 grep -q "initial lists complete" "$dir/controller.log"
sed 's/^/    /' "$dir/controller.log"

step "Creating a ConfigMap and a Deployment that opts in with kube-reloader.io/auto: \"true\""
echo "    Its pod reads LOG_LEVEL from the environment and from a mounted file, prints both, and"
echo "    serves them on a readiness-probed port (busybox, built here: nothing is pulled)."
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
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: localhost/busybox:latest
        imagePullPolicy: Never
        command:
        - /bin/sh
        - -c
        - |
          said="LOG_LEVEL from the environment: $LOG_LEVEL, from /config/LOG_LEVEL: $(cat /config/LOG_LEVEL)"
          echo "$said"
          mkdir -p /tmp/www && echo "$said" > /tmp/www/index.html
          exec httpd -f -p 8080 -h /tmp/www
        envFrom:
        - configMapRef: {name: app-config}
        volumeMounts:
        - {name: config, mountPath: /config}
        readinessProbe:
          httpGet: {path: /, port: 8080}
          periodSeconds: 1
      volumes:
      - name: config
        configMap: {name: app-config}
EOF
kubectl apply -f "$dir/app.yaml" >/dev/null
wait_until "the baseline" 30 sh -c \
  "kubectl -n demo get deploy web -o jsonpath='{.metadata.annotations.kube-reloader\.io/config-hash}' | grep -q ."
wait_until "the first pod to be Ready" 60 kubectl -n demo rollout status deploy/web --timeout 1s
echo
echo "kube-reloader recorded a baseline on the Deployment (first sight: nothing is restarted):"
echo "    kube-reloader.io/config-hash: $(kubectl -n demo get deploy web -o jsonpath='{.metadata.annotations.kube-reloader\.io/config-hash}')"
echo "The pod runs, and says what it read:"
kubectl -n demo get pods -l app=web -o wide | sed 's/^/    /'
first_pod=$(kubectl -n demo get pods -l app=web -o jsonpath='{.items[0].metadata.name}')
echo "    \$ kubectl logs $first_pod"
kubectl -n demo logs "$first_pod" | sed 's/^/    /'

# The newest ReplicaSet's pods are Ready (the pod-template-hash of the ReplicaSet with the
# highest revision).
newest_pods_ready() {
  local hash
  hash=$(kubectl -n demo get rs -l app=web --sort-by '{.metadata.annotations.deployment\.kubernetes\.io/revision}' \
    -o jsonpath='{.items[-1:].metadata.labels.pod-template-hash}')
  [ "$(kubectl -n demo get rs -l app=web --no-headers | wc -l)" -ge "$1" ] &&
    kubectl -n demo get pods -l "app=web,pod-template-hash=$hash" \
      -o jsonpath='{.items[*].status.conditions[?(@.type=="Ready")].status}' | grep -q True
}
only_newest_pods() { [ "$(kubectl -n demo get pods -l app=web --no-headers | wc -l)" -eq 1 ] && newest_pods_ready "$1"; }

step "Changing the ConfigMap: LOG_LEVEL info -> debug"
edited=$(date +%s%N)
kubectl -n demo patch configmap app-config --type merge -p '{"data":{"LOG_LEVEL":"debug"}}' | sed 's/^/    /'
wait_until "the new pod to be Ready" 60 newest_pods_ready 2
ready_ms=$((($(date +%s%N) - edited) / 1000000))
wait_until "the old pod to go" 60 only_newest_pods 2
gone_ms=$((($(date +%s%N) - edited) / 1000000))

step "Kubernetes rolled the Deployment: a new ReplicaSet for the new pod template, a new pod on the new value"
printf '    The new pod was Ready %d.%d s after the edit; the old pod was gone after %d.%d s.\n' \
  $((ready_ms / 1000)) $((ready_ms % 1000 / 100)) $((gone_ms / 1000)) $((gone_ms % 1000 / 100))
kubectl -n demo get rs -l app=web | sed 's/^/    /'
kubectl -n demo get pods -l app=web -o wide | sed 's/^/    /'
new_pod=$(kubectl -n demo get pods -l app=web -o jsonpath='{.items[0].metadata.name}')
echo "    \$ kubectl logs $new_pod"
kubectl -n demo logs "$new_pod" | sed 's/^/    /'
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
grep -E "app-config|LOG_LEVEL: " "$dir/app-v2.yaml" | sed 's/^/    /'
kubectl apply -f "$dir/app-v2.yaml" >/dev/null
wait_until "the re-baseline" 30 sh -c \
  "kubectl -n demo get events --field-selector reason=ReloadNotNeeded --no-headers | grep -q ."
wait_until "Kubernetes' rollout" 60 only_newest_pods 3
sleep 3 # long enough for a second rollout to show, if there were one
echo "Kubernetes rolled once, for the new pod template; kube-reloader added no rollout of its own:"
kubectl -n demo get rs -l app=web | sed 's/^/    /'
kubectl -n demo get events --field-selector reason=ReloadNotNeeded -o custom-columns=REASON:.reason,MESSAGE:.message |
  sed 's/^/    /'
rename_pod=$(kubectl -n demo get pods -l app=web -o jsonpath='{.items[0].metadata.name}')
echo "    \$ kubectl logs $rename_pod"
kubectl -n demo logs "$rename_pod" | sed 's/^/    /'

step "Controller log"
grep -E "rolled out|baseline" "$dir/controller.log" | sed 's/^/    /'

step "Done: tearing everything down"
