// Only the module root: each Kubernetes release the tests run is pinned in its own k8s-VERSION.mod
// and k8s-VERSION.sum beside this file (written by pin.sh; built with go build -modfile=…).
module kube-reloader.test/k8s

go 1.24
