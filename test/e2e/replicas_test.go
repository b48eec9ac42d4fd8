package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/signet-mesh/signet/ca/store/etcdstore/etcdtest"
	"github.com/signet-mesh/signet/internal/testdir"
)

// TestReplicasFailover runs a 3-member etcd cluster on loopback (in this
// test process), two `signet server` replicas on it and one agent that
// lists both. It kills -9 the first replica (the elected one, and the
// agent's: r2 starts only once the agent is connected to r1) while a
// workload fetches over the Workload API the whole time: the other
// replica takes the lead, the agent fails over to it, an entry created
// through the survivor is minted and served, no fetch fails, and the one
// audit chain both replicas wrote verifies.
func TestReplicasFailover(t *testing.T) {
	signetBinary(t) // skips under -short before etcd starts
	t.Parallel()
	cluster := etcdtest.New(t, 3)
	etcdFlags := []string{"--store", "etcd", "--etcd-endpoints", strings.Join(cluster.Endpoints(), ","), "--etcd-prefix", "/e2e-replicas"}
	r1 := startServer(t, append(etcdFlags, "--server-name", "r1")...)
	waitFor(t, 10*time.Second, "r1 leading", func() bool { return strings.Contains(r1.out.String(), "leading: this replica") })
	// The agent knows both replicas, but r2 is not up yet: it connects
	// to r1. Its token and entry come through r1.
	r2 := unstartedServer(t)
	a := startAgentTB(t, r1, "node-a", "--server-address", r2.addr)
	a.entryFor(t, "spiffe://example.org/before")
	fetchUntil(t, a, 30*time.Second, hasOnly("spiffe://example.org/before"))
	r2.restart(t, append(etcdFlags, "--server-name", "r2")...)
	if b1, b2 := r1.cli(t, "bundle", "show"), r2.cli(t, "bundle", "show"); b1 != b2 {
		t.Fatalf("replicas serve different bundles:\n%s\n%s", b1, b2)
	}

	// A workload fetches every 50 ms from here on.
	var fetches, failures atomic.Int64
	ctx, stopFetching := context.WithCancel(context.Background())
	fetching := make(chan struct{})
	go func() {
		defer close(fetching)
		for ctx.Err() == nil {
			fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := workloadapi.FetchX509Context(fctx, workloadapi.WithAddr(a.addr()))
			cancel()
			if ctx.Err() != nil {
				return
			}
			fetches.Add(1)
			if err != nil {
				failures.Add(1)
				t.Logf("workload fetch failed: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	defer func() { stopFetching(); <-fetching }()

	killed := time.Now()
	r1.kill()
	waitFor(t, 15*time.Second, "r2 leading", func() bool { return strings.Contains(r2.out.String(), "leading: this replica") })
	t.Logf("r2 leads %v after r1 was killed", time.Since(killed).Round(time.Millisecond))

	// An entry created through the survivor reaches the agent, which mints
	// its SVID through the survivor.
	created := time.Now()
	r2.cli(t, "entry", "create", "--spiffe-id", "spiffe://example.org/after", "--parent-id", a.nodeID, "--selector", "unix:uid:"+strconv.Itoa(os.Getuid()))
	fetchUntil(t, a, 15*time.Second, hasOnly("spiffe://example.org/before", "spiffe://example.org/after"))
	t.Logf("an entry created through r2 was served %v later (r1 killed %v before)", time.Since(created).Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))

	// node list names the replica the agent moved to.
	var nodes []struct {
		SPIFFEID string `json:"spiffe_id"`
		Replica  string `json:"replica"`
	}
	if err := json.Unmarshal([]byte(r2.cli(t, "node", "list", "-o", "json")), &nodes); err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 1 || nodes[0].Replica != "r2" {
		t.Errorf("node list through r2: %+v, want node-a on replica r2", nodes)
	}

	stopFetching()
	<-fetching
	if n, f := fetches.Load(), failures.Load(); f != 0 || n == 0 {
		t.Errorf("%d of %d workload fetches failed across the failover, want 0 of more than 0", f, n)
	}

	// One audit chain, appended by both replicas, verifies from the
	// survivor.
	if out := r2.cli(t, "audit", "verify"); !strings.HasPrefix(out, "OK: ") {
		t.Errorf("audit verify through r2: %q", out)
	}
}

// unstartedServer is startServer without the start: its address is known
// before it listens (restart starts it).
func unstartedServer(t testing.TB) *testServer {
	dir := testdir.Short(t)
	s := &testServer{dir: dir, addr: freeAddr(t), admin: filepath.Join(dir, "admin.sock"), td: "example.org"}
	s.env = []string{"SIGNET_KEY_PASSPHRASE=" + testPassphrase, "SIGNET_ADMIN_SOCKET=" + s.admin}
	return s
}

// TestReplicaQuorumLoss: with two of three etcd members stopped, a write
// through the CA fails closed with an error that names etcd, the agent
// keeps serving its SVIDs, and once the members are back the same CA
// process takes writes again and the agent gets the new entry.
func TestReplicaQuorumLoss(t *testing.T) {
	signetBinary(t)
	t.Parallel()
	cluster := etcdtest.New(t, 3)
	r := startServer(t, "--store", "etcd", "--etcd-endpoints", strings.Join(cluster.Endpoints(), ","), "--server-name", "r1")
	a := startAgentTB(t, r, "node-a")
	a.entryFor(t, "spiffe://example.org/before")
	fetchUntil(t, a, 30*time.Second, hasOnly("spiffe://example.org/before"))

	// Two members stop (each waits out etcd's 7s for open streams).
	done := make(chan struct{}, 2)
	for _, i := range []int{1, 2} {
		go func() { cluster.Stop(i); done <- struct{}{} }()
	}
	<-done
	<-done
	args := []string{"entry", "create", "--spiffe-id", "spiffe://example.org/after", "--parent-id", a.nodeID, "--selector", "unix:uid:" + strconv.Itoa(os.Getuid())}
	res := r.run(t, args...)
	if res.code == 0 || !strings.Contains(res.stderr, "etcd") || !strings.Contains(res.stderr, "unavailable") {
		t.Errorf("entry create without quorum: exit %d, stderr %q; want a failure naming etcd as unavailable", res.code, res.stderr)
	}
	if strings.Contains(res.stderr, "cannot reach the CA") {
		t.Errorf("the CA answered, its store did not; stderr says otherwise: %q", res.stderr)
	}
	// The agent serves from its cache meanwhile.
	fetchUntil(t, a, 5*time.Second, hasOnly("spiffe://example.org/before"))

	for _, i := range []int{1, 2} {
		if err := cluster.Restart(i); err != nil {
			t.Fatal(err)
		}
	}
	// A write that failed for want of quorum may still have been
	// committed once quorum returned (etcd's "request timed out"): that
	// entry exists or not, never half. The next write goes through the
	// same CA process.
	back := time.Now()
	resumed := []string{"entry", "create", "--spiffe-id", "spiffe://example.org/resumed", "--parent-id", a.nodeID, "--selector", "unix:uid:" + strconv.Itoa(os.Getuid())}
	waitFor(t, 60*time.Second, "entry create after quorum returned", func() bool {
		res := r.run(t, resumed...)
		return res.code == 0 || strings.Contains(res.stderr, "already exists")
	})
	t.Logf("writes resumed %v after the members restarted", time.Since(back).Round(time.Millisecond))
	fetchUntil(t, a, 15*time.Second, func(x *workloadapi.X509Context) bool {
		got := ids(x)
		return contains(got, "spiffe://example.org/before") && contains(got, "spiffe://example.org/resumed")
	})
	if out := r.cli(t, "audit", "verify"); !strings.HasPrefix(out, "OK: ") {
		t.Errorf("audit verify after the outage: %q", out)
	}
}
