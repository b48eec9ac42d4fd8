// Command buildbins builds the kube-apiserver and etcd binaries the kubetest
// harness runs, or finds them in its cache, and prints where they are and how
// long it took. CI runs it before the tests (`go -C test/kube run
// ./cmd/buildbins`), so that a cold build is timed on its own and not inside
// a test's timeout.
package main

import (
	"fmt"
	"os"
	"time"

	"github.com/signet-mesh/signet/test/kube/kubetest"
)

func main() {
	start := time.Now()
	bins, err := kubetest.BuildBinaries(func(format string, args ...any) {
		fmt.Printf(format+"\n", args...)
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("kube-apiserver: %s\netcd: %s\n(%s)\n", bins.APIServer, bins.Etcd, time.Since(start).Round(time.Second))
}
