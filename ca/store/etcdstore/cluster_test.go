package etcdstore_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/signet-mesh/signet/ca/store/etcdstore"
	"github.com/signet-mesh/signet/ca/store/etcdstore/etcdtest"
)

// shared is the one-member etcd every test of the package uses, each
// under its own prefix; sharedClient is a client of it.
var (
	shared       *etcdtest.Cluster
	sharedClient *clientv3.Client
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "etcdstore-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	shared, err = etcdtest.Start(dir, 1, false)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer shared.Close()
	sharedClient, err = newClient(shared.Endpoints())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer sharedClient.Close()
	defer stopBenchCluster()
	return m.Run()
}

func newClient(endpoints []string) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
}

var prefixSeq atomic.Int64

// newPrefix is a prefix no other test uses.
func newPrefix(t testing.TB) string {
	name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	return fmt.Sprintf("/test/%d-%s", prefixSeq.Add(1), name)
}

// openStore opens a store on the shared etcd under opts.Prefix (a new
// prefix when empty), closed when the test ends.
func openStore(t testing.TB, opts etcdstore.Options) *etcdstore.Store {
	t.Helper()
	if opts.Prefix == "" {
		opts.Prefix = newPrefix(t)
	}
	if opts.Client == nil && opts.Endpoints == nil {
		opts.Client = sharedClient
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := etcdstore.Open(ctx, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return st
}
