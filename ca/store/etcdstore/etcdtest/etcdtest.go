// Package etcdtest runs etcd inside a test process: real etcd servers
// (go.etcd.io/etcd/server/v3/embed) on 127.0.0.1, with etcd's default
// limits (128 operations per Txn, 1.5 MiB per request), so that what
// passes against them passes against a stock etcd. Only tests import it.
//
//	c, err := etcdtest.Start(t.TempDir(), 3, false)
//	defer c.Close()
//	st, err := etcdstore.Open(ctx, etcdstore.Options{Endpoints: c.Endpoints()})
//
// Stop and Restart a member to test failures (Leader names the one to
// stop for the worst case); a member stopped while
// clients are connected takes etcd's request timeout (7s) to stop.
package etcdtest

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// readyTimeout bounds the wait for a member to be ready.
const readyTimeout = 30 * time.Second

// Cluster is a set of etcd members run in this process.
type Cluster struct {
	cfgs    []*embed.Config
	members []*embed.Etcd
}

// New starts a cluster of n members under t.TempDir(), with fsync off,
// closed when the test ends.
func New(t testing.TB, n int) *Cluster {
	t.Helper()
	c, err := Start(t.TempDir(), n, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// Start starts n members with data under dir. fsync off is for
// functional tests; benchmarks keep it, as production does.
func Start(dir string, n int, fsync bool) (*Cluster, error) {
	c := &Cluster{}
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
		if err := c.Restart(i); err != nil {
			c.Close()
			return nil, err
		}
	}
	for i, e := range c.members {
		select {
		case <-e.Server.ReadyNotify():
		case <-time.After(readyTimeout):
			c.Close()
			return nil, fmt.Errorf("etcd member %d not ready within %v", i, readyTimeout)
		}
	}
	return c, nil
}

// Restart starts member i (again, after Stop: on its data dir and ports).
func (c *Cluster) Restart(i int) error {
	e, err := embed.StartEtcd(c.cfgs[i])
	if err != nil {
		return fmt.Errorf("starting etcd member %d: %w", i, err)
	}
	c.members[i] = e
	return nil
}

// Stop stops member i. With clients connected it takes etcd's request
// timeout (7s): the server waits that long for open streams.
func (c *Cluster) Stop(i int) {
	if e := c.members[i]; e != nil {
		e.Close()
		<-e.Server.StopNotify()
		c.members[i] = nil
	}
}

// Close stops every member. It is idempotent.
func (c *Cluster) Close() {
	for i := range c.members {
		c.Stop(i)
	}
}

// Leader returns the index of the member that leads the raft group now,
// or -1 if no running member knows of a leader.
func (c *Cluster) Leader() int {
	for _, e := range c.members {
		if e == nil {
			continue
		}
		lead := e.Server.Leader()
		for i, m := range c.members {
			if m != nil && m.Server.MemberID() == lead {
				return i
			}
		}
	}
	return -1
}

// Endpoints are the client URLs of the members.
func (c *Cluster) Endpoints() []string {
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
