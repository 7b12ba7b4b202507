// etcd for the test control plane, built from go.etcd.io/etcd/server/v3 at the version the pinned
// Kubernetes release requires (see ../pin.sh).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
