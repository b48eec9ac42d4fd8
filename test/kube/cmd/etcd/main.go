// Command etcd is etcd's own server main, built from the go.etcd.io/etcd/server
// module at the version Kubernetes supports, for the kubetest harness.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
