package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/signet-mesh/signet/ca/store/etcdstore/etcdtest"
)

// The failure cases of issue 14 that TestReplicasFailover and
// TestReplicaQuorumLoss leave: an etcd member lost during a bulk write, a
// root rotation driven through one replica for agents of another, and the
// elected replica dying in a scheduled step. Each runs a 3-member etcd in
// this process, `signet server` replicas and agents as processes, and a
// workload fetching over the Workload API the whole time.

// etcdFlags are a replica's flags for cluster under prefix.
func etcdFlags(c *etcdtest.Cluster, prefix, name string) []string {
	return []string{"--store", "etcd", "--etcd-endpoints", strings.Join(c.Endpoints(), ","), "--etcd-prefix", prefix, "--server-name", name}
}

// fetchLoop is a workload fetching its X509 context from an agent every
// 50 ms until stopped.
type fetchLoop struct {
	fetches, failures atomic.Int64
	stop              func()
}

func startFetchLoop(t testing.TB, a *testAgent) *fetchLoop {
	t.Helper()
	l := &fetchLoop{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			fctx, fcancel := context.WithTimeout(ctx, 5*time.Second)
			x, err := workloadapi.FetchX509Context(fctx, workloadapi.WithAddr(a.addr()))
			fcancel()
			if ctx.Err() != nil {
				return
			}
			l.fetches.Add(1)
			if err == nil && len(x.SVIDs) == 0 {
				err = fmt.Errorf("no SVID")
			}
			if err != nil {
				l.failures.Add(1)
				t.Logf("workload fetch from %s failed: %v", a.name, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	var once atomic.Bool
	l.stop = func() {
		if once.CompareAndSwap(false, true) {
			cancel()
			<-done
		}
	}
	t.Cleanup(l.stop)
	return l
}

// check stops the loop and fails the test if a fetch failed.
func (l *fetchLoop) check(t testing.TB) {
	t.Helper()
	l.stop()
	if n, f := l.fetches.Load(), l.failures.Load(); f != 0 || n == 0 {
		t.Errorf("%d of %d workload fetches failed, want 0 of more than 0", f, n)
	}
}

// auditRecords exports s's audit log (JSON Lines).
func auditRecords(t testing.TB, s *testServer) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(s.cli(t, "audit", "export")))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r map[string]any
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("audit export line %q: %v", sc.Text(), err)
		}
		out = append(out, r)
	}
	return out
}

// TestReplicaEtcdMemberLostDuringBulkCreate stops an etcd member while a
// 1,000-entry `signet entry create --file` runs through a replica, three
// times (the raft leader at once, a follower a little later, the leader
// again later still), with a workload fetching all along. Every time the
// file's entries all exist or none does (a create that reported success
// has them all), each existing entry has its audit record, and `signet
// audit verify` passes.
//
// The members run in this test process (etcdtest), so a member cannot be
// sent SIGKILL: it is stopped with embed.Etcd.Close, which cuts its peers
// off at once (the raft group elects a new leader if it led) and closes
// its client connections after at most etcd's request timeout.
func TestReplicaEtcdMemberLostDuringBulkCreate(t *testing.T) {
	signetBinary(t)
	t.Parallel()
	cluster := etcdtest.New(t, 3)
	r := startServer(t, etcdFlags(cluster, "/e2e-bulk", "r1")...)
	a := startAgentTB(t, r, "node-a")
	a.entryForTB(t, "spiffe://example.org/bulk/workload")
	fetchUntil(t, a, 30*time.Second, hasOnly("spiffe://example.org/bulk/workload"))
	fetching := startFetchLoop(t, a)

	rounds := []struct {
		name   string
		leader bool
		after  time.Duration
	}{
		{name: "leader at once", leader: true, after: 0},
		{name: "follower after 300ms", leader: false, after: 300 * time.Millisecond},
		{name: "leader after 800ms", leader: true, after: 800 * time.Millisecond},
	}
	for n, rd := range rounds {
		prefix := fmt.Sprintf("spiffe://example.org/bulk/r%d/", n)
		file := filepath.Join(r.dir, fmt.Sprintf("entries%d.yaml", n))
		var b strings.Builder
		for i := range 1000 {
			// A uid no workload has: the agent syncs the entries and
			// mints nothing for them.
			fmt.Fprintf(&b, "- spiffe_id: %sw%d\n  parent_id: %s\n  selectors: [unix:uid:4000000%d]\n", prefix, i, a.nodeID, n)
		}
		if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		var victim int
		waitFor(t, 10*time.Second, "an etcd leader", func() bool { victim = cluster.Leader(); return victim >= 0 })
		if !rd.leader {
			victim = (victim + 1) % 3
		}
		created := make(chan result, 1)
		began := time.Now()
		go func() { created <- runCLI(t, r.env, "entry", "create", "--file", file) }()
		time.Sleep(rd.after) // the fault lands at a chosen moment of the write
		stopped := make(chan struct{})
		go func() { cluster.Stop(victim); close(stopped) }()
		res := <-created
		<-stopped
		t.Logf("%s: member %d stopped %v into the create, which exited %d after %v: %s", rd.name, victim, rd.after, res.code, time.Since(began).Round(time.Millisecond), strings.TrimSpace(res.stderr))

		// Count through the replica (two members keep quorum).
		var got int
		waitFor(t, 30*time.Second, "entry list", func() bool {
			lr := r.run(t, "entry", "list", "-o", "json")
			if lr.code != 0 {
				return false
			}
			var entries []struct {
				SPIFFEID string `json:"spiffe_id"`
			}
			if err := json.Unmarshal([]byte(lr.stdout), &entries); err != nil {
				t.Fatal(err)
			}
			got = 0
			for _, e := range entries {
				if strings.HasPrefix(e.SPIFFEID, prefix) {
					got++
				}
			}
			return true
		})
		if got != 0 && got != 1000 {
			t.Fatalf("%s: %d of 1000 entries exist: not all or nothing", rd.name, got)
		}
		if res.code == 0 && got != 1000 {
			t.Fatalf("%s: the create succeeded but %d of 1000 entries exist", rd.name, got)
		}
		records := 0
		for _, rec := range auditRecords(t, r) {
			if s, _ := rec["subject"].(string); rec["type"] == "entry.created" && strings.HasPrefix(s, prefix) {
				records++
			}
		}
		if records != got {
			t.Errorf("%s: %d entries and %d entry.created records", rd.name, got, records)
		}
		if err := cluster.Restart(victim); err != nil {
			t.Fatal(err)
		}
	}
	if out := r.cli(t, "audit", "verify"); !strings.HasPrefix(out, "OK: ") {
		t.Errorf("audit verify: %q", out)
	}
	fetching.check(t)
}

// activeIntermediatesUnder fails unless every replica's active
// intermediate is under root, one per replica.
func activeIntermediatesUnder(auths []authority, root string, replicas int) bool {
	n := 0
	for _, a := range auths {
		if a.Kind == "intermediate" && a.State == "active" {
			if a.ParentID != root {
				return false
			}
			n++
		}
	}
	return n == replicas
}

// TestReplicasRootRotationAcrossReplicas drives a whole root rotation
// through replica A while both agents are connected to replica B, and two
// go-spiffe workloads (one on each agent) open a new mTLS connection every
// 50 ms: A's activation gate sees B's agents (refusing while one of them,
// stopped with SIGSTOP, has not applied the bundle), B's intermediate
// moves under the new root, retire goes through once B's agents re-minted,
// and not one connection fails.
func TestReplicasRootRotationAcrossReplicas(t *testing.T) {
	signetBinary(t)
	t.Parallel()
	cluster := etcdtest.New(t, 3)
	rA := startServer(t, append(etcdFlags(cluster, "/e2e-rot", "rA"), "--intermediate-ttl", "1h")...)
	rB := startServer(t, append(etcdFlags(cluster, "/e2e-rot", "rB"), "--intermediate-ttl", "1h")...)
	a := startAgentTB(t, rB, "node-a")
	b := startAgentTB(t, rB, "node-b")
	td := spiffeid.RequireTrustDomainFromString(rA.td)
	serverID := spiffeid.RequireFromPath(td, "/xrot/server")
	clientID := spiffeid.RequireFromPath(td, "/xrot/client")
	uid := "unix:uid:" + strconv.Itoa(os.Getuid())
	// Entries through A reach B's agents by B's watch.
	rA.cli(t, "entry", "create", "--spiffe-id", serverID.String(), "--parent-id", a.nodeID, "--selector", uid, "--x509-ttl", "30s")
	rA.cli(t, "entry", "create", "--spiffe-id", clientID.String(), "--parent-id", b.nodeID, "--selector", uid, "--x509-ttl", "30s")
	fetchUntil(t, a, 30*time.Second, hasOnly(serverID.String()))
	fetchUntil(t, b, 30*time.Second, hasOnly(clientID.String()))
	fetching := startFetchLoop(t, a)
	srcA, srcB := x509Source(t, a), x509Source(t, b)
	loop := startMTLSLoop(t, srcA, srcB, serverID, clientID, 50*time.Millisecond)
	waitFor(t, 30*time.Second, "mTLS traffic", func() bool { return loop.ok.Load() >= 5 })

	old := rootsIn(rA.authorities(t), "active")[0]
	rA.waitApplied(t, old.ID, 2, 2) // A sees B's two agents
	pause(t, b)
	id := strings.TrimSpace(rA.cli(t, "root", "prepare"))
	rA.waitApplied(t, id, 1, 2)
	r := rA.run(t, "root", "activate")
	if r.code != 1 || !strings.Contains(r.stderr, "1 of 2 connected agents have not applied bundle revision") || !strings.Contains(r.stderr, b.nodeID) {
		t.Fatalf("activate through A with B's agent stale: exit %d\n%s", r.code, r.stderr)
	}
	resume(t, b)
	rA.waitApplied(t, id, 2, 2)
	waitFor(t, 10*time.Second, "both workloads to trust both roots", func() bool {
		for _, src := range []*workloadapi.X509Source{srcA, srcB} {
			if bd, err := src.GetX509BundleForTrustDomain(td); err != nil || len(bd.X509Authorities()) != 2 {
				return false
			}
		}
		return true
	})
	if got := strings.TrimSpace(rA.cli(t, "root", "activate", id, "--rotate-now")); got != id {
		t.Fatalf("activated %q, want %s", got, id)
	}
	// B follows A's activation: its intermediate moves under the new
	// root, without waiting for its own rotation (an hour away).
	waitFor(t, 30*time.Second, "both replicas' intermediates under the new root", func() bool {
		return activeIntermediatesUnder(rB.authorities(t), id, 2)
	})
	rA.retireWhenAllowed(t, old.ID)
	roots := rA.bundleRoots(t)
	if len(roots) != 1 {
		t.Fatalf("bundle holds %d roots after retire, want 1", len(roots))
	}
	waitFor(t, 30*time.Second, "both workloads to trust only the new root", func() bool {
		return onlyRoot(t, srcA, td, roots[0]) && onlyRoot(t, srcB, td, roots[0])
	})
	before := loop.ok.Load()
	waitFor(t, 10*time.Second, "more mTLS traffic", func() bool { return loop.ok.Load() >= before+20 })
	loop.stop()
	loop.check(t)
	fetching.check(t)
	t.Logf("%d mTLS connections across a rotation driven through A for B's agents, no failure", loop.ok.Load())
	if out := rB.cli(t, "audit", "verify"); !strings.HasPrefix(out, "OK: ") {
		t.Errorf("audit verify through B: %q", out)
	}
}

// TestReplicaScheduledStepLeaderCrash runs the automatic root schedule
// (90 s roots: prepare at 45 s, activate at 75 s) on three replicas, with
// an agent listing all three and a workload fetching all along. The
// elected replica kills itself with SIGKILL in the scheduled steps,
// through the crash points of the test hook (SIGNET_TEST_CRASH_AT): r1
// right after the prepare committed, then r2 inside the activation's
// transaction, before it committed. Each time another replica takes the
// lead and carries on: the prepared root is not prepared again, the
// activation that died is done by r3, and the audit trail holds exactly
// one record of each scheduled step.
func TestReplicaScheduledStepLeaderCrash(t *testing.T) {
	signetBinary(t)
	t.Parallel()
	cluster := etcdtest.New(t, 3)
	sched := []string{"--root-ttl", "90s", "--intermediate-ttl", "20s", "--root-rotation", "auto"}
	startReplica := func(name, crashAt string) *testServer {
		t.Helper()
		s := unstartedServer(t)
		if crashAt != "" {
			s.env = append(s.env, "SIGNET_TEST_CRASH_AT="+crashAt)
		}
		s.restart(t, append(etcdFlags(cluster, "/e2e-sched", name), sched...)...)
		return s
	}
	leads := func(s *testServer) bool { return strings.Contains(s.out.String(), "leading: this replica") }
	r1 := startReplica("r1", "prepare.committed")
	waitFor(t, 10*time.Second, "r1 leading", func() bool { return leads(r1) })
	r2 := startReplica("r2", "activate.commit")
	r3 := unstartedServer(t)
	a := startAgentTB(t, r1, "node-a", "--server-address", r2.addr, "--server-address", r3.addr)
	a.entryForTB(t, "spiffe://example.org/sched/workload", "--x509-ttl", "10s")
	fetchUntil(t, a, 30*time.Second, hasOnly("spiffe://example.org/sched/workload"))
	fetching := startFetchLoop(t, a)
	first := rootsIn(r2.authorities(t), "active")[0]

	crashed := func(s *testServer, point string) {
		t.Helper()
		waitFor(t, 100*time.Second, "the leader to die at "+point, s.exited)
		if !strings.Contains(s.out.String(), "crash point "+point+" reached") {
			t.Fatalf("the replica exited (%v), not at crash point %s", s.proc.err, point)
		}
	}
	crashed(r1, "prepare.committed")
	died := time.Now()
	waitFor(t, 15*time.Second, "r2 leading", func() bool { return leads(r2) })
	t.Logf("r2 leads %v after r1 died", time.Since(died).Round(time.Millisecond))
	r3.restart(t, append(etcdFlags(cluster, "/e2e-sched", "r3"), sched...)...)
	if prep := rootsIn(r3.authorities(t), "prepared"); len(prep) != 1 {
		t.Fatalf("%d prepared roots after r1 died past the commit, want 1", len(prep))
	}

	crashed(r2, "activate.commit")
	died = time.Now()
	waitFor(t, 15*time.Second, "r3 leading", func() bool { return leads(r3) })
	t.Logf("r3 leads %v after r2 died", time.Since(died).Round(time.Millisecond))
	waitFor(t, 60*time.Second, "the first root retired by r3's schedule", func() bool {
		time.Sleep(500 * time.Millisecond)
		for _, r := range rootsIn(r3.authorities(t), "retired") {
			if r.ID == first.ID {
				return true
			}
		}
		return false
	})
	fetchUntil(t, a, 30*time.Second, func(x *workloadapi.X509Context) bool {
		return len(x.SVIDs) == 1 && verifies(x.SVIDs[0], r3.bundleRoots(t))
	})
	fetching.check(t)

	// One cycle's steps: the 90-second successor root is past half its
	// life by now, so the schedule may already have prepared the next
	// root after the retirement, as it should.
	steps := map[string]int{}
	for _, rec := range auditRecords(t, r3) {
		if rec["actor"] == "signet (automatic root schedule)" {
			steps[fmt.Sprint(rec["type"])]++
			if rec["type"] == "authority.retired" {
				break
			}
		}
	}
	for _, step := range []string{"authority.prepared", "authority.activated", "authority.retired"} {
		if steps[step] != 1 {
			t.Errorf("%d %s records by the schedule, want exactly 1 (all: %v)", steps[step], step, steps)
		}
	}
	if out := r3.cli(t, "audit", "verify"); !strings.HasPrefix(out, "OK: ") {
		t.Errorf("audit verify through r3: %q", out)
	}
}
