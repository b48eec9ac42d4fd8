package etcdstore_test

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/signet-mesh/signet/ca/store/etcdstore"
)

// cluster is etcd run in this process by its embed package: real etcd
// servers on 127.0.0.1, with etcd's default limits (128 operations per
// Txn, 1.5 MiB per request) so that a store exceeding them fails here.
type cluster struct {
	cfgs    []*embed.Config
	members []*embed.Etcd
}

// startCluster starts n members with data under dir. fsync off is for
// the functional tests; the benchmarks keep it, as production does.
func startCluster(dir string, n int, fsync bool) (*cluster, error) {
	c := &cluster{}
	var initial []string
	for i := range n {
		cfg := embed.NewConfig()
		cfg.Name = fmt.Sprintf("m%d", i)
		cfg.Dir = filepath.Join(dir, cfg.Name)
		client, peer, err := freeURLs()
		if err != nil {
			return nil, err
		}
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
		cfg.InitialClusterToken = "signet-test"
		cfg.LogLevel = "error"
		cfg.LogOutputs = []string{filepath.Join(dir, cfg.Name+".log")}
		cfg.UnsafeNoFsync = !fsync
		initial = append(initial, cfg.Name+"="+peer.String())
		c.cfgs = append(c.cfgs, cfg)
	}
	for _, cfg := range c.cfgs {
		cfg.InitialCluster = strings.Join(initial, ",")
	}
	c.members = make([]*embed.Etcd, n)
	for i := range c.cfgs {
		if err := c.start(i); err != nil {
			c.close()
			return nil, err
		}
	}
	for i, e := range c.members {
		select {
		case <-e.Server.ReadyNotify():
		case <-time.After(30 * time.Second):
			c.close()
			return nil, fmt.Errorf("etcd member %d not ready within 30s", i)
		}
	}
	return c, nil
}

// start starts member i (again, after stop: on its data dir and ports).
func (c *cluster) start(i int) error {
	e, err := embed.StartEtcd(c.cfgs[i])
	if err != nil {
		return fmt.Errorf("starting etcd member %d: %w", i, err)
	}
	c.members[i] = e
	return nil
}

// stop stops member i. With clients connected it takes etcd's request
// timeout (7s): the server waits that long for open streams.
func (c *cluster) stop(i int) {
	if e := c.members[i]; e != nil {
		e.Close()
		<-e.Server.StopNotify()
		c.members[i] = nil
	}
}

func (c *cluster) close() {
	for i := range c.members {
		c.stop(i)
	}
}

func (c *cluster) endpoints() []string {
	var out []string
	for _, cfg := range c.cfgs {
		out = append(out, cfg.AdvertiseClientUrls[0].String())
	}
	return out
}

func freeURLs() (client, peer url.URL, err error) {
	var urls [2]url.URL
	for i := range urls {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return url.URL{}, url.URL{}, err
		}
		urls[i] = url.URL{Scheme: "http", Host: ln.Addr().String()}
		defer ln.Close()
	}
	return urls[0], urls[1], nil
}

// shared is the one-member etcd every test of the package uses, each
// under its own prefix; sharedClient is a client of it.
var (
	shared       *cluster
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
	shared, err = startCluster(dir, 1, false)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer shared.close()
	sharedClient, err = newClient(shared.endpoints())
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
