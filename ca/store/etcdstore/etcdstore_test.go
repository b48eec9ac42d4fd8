package etcdstore_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/signet-mesh/signet/ca/store"
	"github.com/signet-mesh/signet/ca/store/etcdstore"
	"github.com/signet-mesh/signet/ca/store/etcdstore/etcdtest"
	"github.com/signet-mesh/signet/ca/store/storetest"
)

const waitTimeout = 10 * time.Second

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return openStore(t, etcdstore.Options{})
	})
}

// TestLarge runs against etcd's default limits (128 operations, 1.5 MiB a
// request): the 1,000-entry transactions are written in chunks.
func TestLarge(t *testing.T) {
	storetest.RunLarge(t, func(t *testing.T) store.Store {
		return openStore(t, etcdstore.Options{})
	})
}

// TestShared opens two instances on one prefix, each with its own etcd
// client, as two CA replicas would.
func TestShared(t *testing.T) {
	storetest.RunShared(t, func(t *testing.T) (store.Store, store.Store) {
		prefix := newPrefix(t)
		return openStore(t, etcdstore.Options{Prefix: prefix, Endpoints: shared.Endpoints()}),
			openStore(t, etcdstore.Options{Prefix: prefix, Endpoints: shared.Endpoints()})
	})
}

func update(t *testing.T, st store.Store, fn func(store.Tx) error) {
	t.Helper()
	if err := st.Update(t.Context(), fn); err != nil {
		t.Fatalf("Update: %v", err)
	}
}

// appendAudit appends one record after the head.
func appendAudit(tx store.Tx, typ string) error {
	seq, hash, err := tx.AuditHead()
	if err != nil {
		return err
	}
	return tx.AppendAudit(&store.AuditRecord{
		Seq: seq + 1, Time: t0, Type: typ, Outcome: "success",
		PrevHash: hash, Hash: fmt.Sprintf("hash-%d", seq+1),
	})
}

// smallWrite is an ordinary transaction: an entry with its revision and
// audit record.
func smallWrite(tx store.Tx) error {
	rev, err := tx.NextRevision()
	if err != nil {
		return err
	}
	e := &store.Entry{ID: "small", SPIFFEID: "spiffe://example.org/small", ParentID: "spiffe://example.org/n", Revision: rev, CreatedAt: t0}
	if err := tx.CreateEntry(e); err != nil {
		return err
	}
	return appendAudit(tx, "entry.created")
}

// keysUnder lists the keys etcd holds under prefix+dir.
func keysUnder(t *testing.T, prefix, dir string) []string {
	t.Helper()
	resp, err := sharedClient.Get(t.Context(), prefix+dir, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatalf("reading %s: %v", prefix+dir, err)
	}
	var out []string
	for _, kv := range resp.Kvs {
		out = append(out, strings.TrimPrefix(string(kv.Key), prefix))
	}
	return out
}

// TestChunkedCommitInvisible checks that the chunks of a large
// transaction stay invisible until it publishes: to Views of the writing
// instance and of another, and to writers, which wait for it.
func TestChunkedCommitInvisible(t *testing.T) {
	prefix := newPrefix(t)
	a := openStore(t, etcdstore.Options{Prefix: prefix})
	b := openStore(t, etcdstore.Options{Prefix: prefix, Endpoints: shared.Endpoints()})
	var (
		chunks  int
		waiting = make(chan error, 1)
		bRev    int64
	)
	etcdstore.SetTestHooks(a, func(chunk int) {
		chunks++
		if chunk != 0 {
			return
		}
		// The first chunk is in etcd; the transaction is not.
		storetest.CheckMany(t, a, 0)
		storetest.CheckMany(t, b, 0)
		// A writer on the other instance waits for the publish, then
		// commits on top of it.
		go func() {
			waiting <- b.Update(context.Background(), func(tx store.Tx) (err error) {
				bRev, err = tx.Revision()
				if err != nil {
					return err
				}
				return tx.PutMeta("after", []byte("x"))
			})
		}()
	}, nil)
	update(t, a, storetest.CreateMany)
	if chunks < 2 {
		t.Fatalf("the transaction was written in %d chunks besides the publish, want several", chunks)
	}
	storetest.CheckMany(t, a, storetest.ManyEntries)
	select {
	case err := <-waiting:
		if err != nil {
			t.Fatalf("the other instance's Update: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("the other instance's Update did not end within %v of the publish", waitTimeout)
	}
	if bRev != storetest.ManyEntries {
		t.Errorf("the other instance's write saw revision %d, want %d: the state after the large transaction", bRev, storetest.ManyEntries)
	}
	if got := keysUnder(t, prefix, etcdstore.DirUndo); len(got) != 0 {
		t.Errorf("undo records left after the publish: %v", got)
	}
}

// TestChunkedCommitFails fails a large transaction after its chunks are
// written and before it publishes: the writer rolls back at once, nothing
// is visible anywhere, and the next writer does not wait.
func TestChunkedCommitFails(t *testing.T) {
	prefix := newPrefix(t)
	// A long TTL: were the next writer to wait for the lease, it would
	// time out.
	a := openStore(t, etcdstore.Options{Prefix: prefix, IntentTTL: time.Minute})
	b := openStore(t, etcdstore.Options{Prefix: prefix, Endpoints: shared.Endpoints()})
	update(t, a, smallWrite) // something the rollback must keep
	errBoom := errors.New("boom")
	etcdstore.SetTestHooks(a, nil, func() error { return errBoom })
	if err := a.Update(t.Context(), storetest.CreateMany); !errors.Is(err, errBoom) {
		t.Fatalf("Update: got %v, want the injected failure", err)
	}
	etcdstore.SetTestHooks(a, nil, nil)

	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	err := b.Update(ctx, func(tx store.Tx) error { return appendAudit(tx, "after") })
	if err != nil {
		t.Fatalf("the next writer: %v", err)
	}
	for name, st := range map[string]store.Store{"writer": a, "other": b} {
		waitFor(t, st, name+" at audit record 2", func(tx store.Tx) bool {
			seq, _, _ := tx.AuditHead()
			return seq == 2
		})
		checkOnlySmall(t, st, 2)
	}
	if got := keysUnder(t, prefix, etcdstore.DirUndo); len(got) != 0 {
		t.Errorf("undo records left after the rollback: %v", got)
	}
}

// TestChunkedCommitWriterDies stops a large transaction as if its process
// died after writing its chunks: another instance sees nothing of it, and
// its next write rolls the chunks back once the lease has expired.
func TestChunkedCommitWriterDies(t *testing.T) {
	t.Parallel() // waits for a lease to expire
	prefix := newPrefix(t)
	const ttl = 2 * time.Second
	a := openStore(t, etcdstore.Options{Prefix: prefix, IntentTTL: ttl, Name: "dying"})
	b := openStore(t, etcdstore.Options{Prefix: prefix, IntentTTL: ttl, Endpoints: shared.Endpoints(), Name: "survivor"})
	update(t, a, smallWrite)
	etcdstore.SetTestHooks(a, nil, func() error { return etcdstore.ErrTestCrash })
	if err := a.Update(t.Context(), storetest.CreateMany); !errors.Is(err, etcdstore.ErrTestCrash) {
		t.Fatalf("Update: got %v, want the simulated crash", err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := keysUnder(t, prefix, etcdstore.DirUndo); len(got) == 0 {
		t.Fatalf("no undo records after the crash: the chunks were not written")
	}
	checkOnlySmall(t, b, 1)
	// An instance that starts now (a replica restarting) loads the
	// committed state, without the chunks.
	c := openStore(t, etcdstore.Options{Prefix: prefix, IntentTTL: ttl})
	checkOnlySmall(t, c, 1)

	// The survivor's write waits for the dead writer's lease, then rolls
	// its chunks back and commits.
	start := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout+ttl)
	defer cancel()
	if err := b.Update(ctx, func(tx store.Tx) error { return appendAudit(tx, "after") }); err != nil {
		t.Fatalf("the next writer: %v", err)
	}
	t.Logf("the next writer committed after %v (lease TTL %v)", time.Since(start).Round(time.Millisecond), ttl)
	checkOnlySmall(t, b, 2)
	if got := keysUnder(t, prefix, etcdstore.DirUndo); len(got) != 0 {
		t.Errorf("undo records left after the rollback: %v", got)
	}
	// The instance that started meanwhile follows the rollback and the
	// write; a new one loads the same state.
	waitFor(t, c, "the write after the rollback", func(tx store.Tx) bool {
		seq, _, _ := tx.AuditHead()
		return seq == 2
	})
	checkOnlySmall(t, c, 2)
	checkOnlySmall(t, openStore(t, etcdstore.Options{Prefix: prefix}), 2)
}

// checkOnlySmall fails unless st holds smallWrite's entry and no entry of
// the large transaction, at revision 1 with audit records 1..audits.
func checkOnlySmall(t *testing.T, st store.Store, audits uint64) {
	t.Helper()
	err := st.View(t.Context(), func(tx store.Tx) error {
		es, err := tx.ListEntries(store.EntryFilter{})
		if err != nil {
			return err
		}
		var ids []string
		for _, e := range es {
			ids = append(ids, e.ID)
		}
		if diff := cmp.Diff([]string{"small"}, ids); diff != "" {
			t.Errorf("entries (-want +got):\n%s", diff)
		}
		if rev, _ := tx.Revision(); rev != 1 {
			t.Errorf("Revision = %d, want 1", rev)
		}
		var seqs []uint64
		err = tx.ForEachAudit(0, func(r *store.AuditRecord) error {
			seqs = append(seqs, r.Seq)
			return nil
		})
		want := []uint64{}
		for s := uint64(1); s <= audits; s++ {
			want = append(want, s)
		}
		if diff := cmp.Diff(want, seqs, cmp.Comparer(func(a, b []uint64) bool { return fmt.Sprint(a) == fmt.Sprint(b) })); diff != "" {
			t.Errorf("audit records (-want +got):\n%s", diff)
		}
		return err
	})
	if err != nil {
		t.Fatalf("View: %v", err)
	}
}

// waitFor waits until cond holds in a View of st.
func waitFor(t *testing.T, st store.Store, what string, cond func(tx store.Tx) bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		var ok bool
		if err := st.View(t.Context(), func(tx store.Tx) error { ok = cond(tx); return nil }); err != nil {
			t.Fatalf("View: %v", err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, waitTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestGroupCommitSplits sends more concurrent Batch writes than one etcd
// request carries: they commit in several groups, each within the limits.
func TestGroupCommitSplits(t *testing.T) {
	var groups, calls atomic.Int64
	st := openStore(t, etcdstore.Options{OnGroupCommit: func(n int) {
		groups.Add(1)
		calls.Add(int64(n))
	}})
	const writers = 40
	value := make([]byte, 100<<10) // 40 x 100 KiB: about 4 MiB in all
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			err := st.Batch(t.Context(), func(tx store.Tx) error {
				return tx.PutMeta(fmt.Sprintf("big-%d", i), value)
			})
			if err != nil {
				t.Errorf("Batch %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if calls.Load() != writers {
		t.Errorf("group commits carried %d calls, want %d", calls.Load(), writers)
	}
	if groups.Load() < 4 {
		t.Errorf("%d group commits for 4 MiB, want at least 4 (one etcd request carries 1.5 MiB)", groups.Load())
	}
	err := st.View(t.Context(), func(tx store.Tx) error {
		for i := range writers {
			if v, err := tx.GetMeta(fmt.Sprintf("big-%d", i)); err != nil || len(v) != len(value) {
				t.Errorf("meta %d: %d bytes, %v", i, len(v), err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestReadAfterCompaction compacts etcd past the committed state's
// revision (other keys moved the revision on): the large tables still
// read, at a newer revision with the same state.
func TestReadAfterCompaction(t *testing.T) {
	st := openStore(t, etcdstore.Options{})
	update(t, st, func(tx store.Tx) error {
		for i := range 3 {
			r := &store.SVIDRecord{Serial: fmt.Sprintf("%032x", i), NotAfter: t0.Add(time.Duration(i) * time.Hour)}
			if err := tx.PutSVID(r); err != nil {
				return err
			}
		}
		return appendAudit(tx, "issued")
	})
	resp, err := sharedClient.Put(t.Context(), newPrefix(t)+"/elsewhere", "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sharedClient.Compact(t.Context(), resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	err = st.View(t.Context(), func(tx store.Tx) error {
		n := 0
		if err := tx.ForEachSVID(func(*store.SVIDRecord) error { n++; return nil }); err != nil {
			return err
		}
		if n != 3 {
			t.Errorf("ForEachSVID walked %d records, want 3", n)
		}
		return tx.ForEachAudit(1, func(*store.AuditRecord) error { return nil })
	})
	if err != nil {
		t.Fatalf("View after compaction: %v", err)
	}
	update(t, st, func(tx store.Tx) error { return appendAudit(tx, "after") })
}

// TestLayout checks that everything is under the prefix, in the
// documented places: `etcdctl get --prefix` of it is a consistent copy.
func TestLayout(t *testing.T) {
	prefix := newPrefix(t)
	st := openStore(t, etcdstore.Options{Prefix: prefix})
	update(t, st, func(tx store.Tx) error {
		if err := smallWrite(tx); err != nil {
			return err
		}
		return tx.PutSVID(&store.SVIDRecord{Serial: "01", EntryID: "e1", NodeID: "spiffe://example.org/n1", NotAfter: t0})
	})
	got := keysUnder(t, prefix, "/")
	want := []string{
		etcdstore.DirAudit + fmt.Sprintf("%016x", 1),
		etcdstore.DirMirror + "commit",
		etcdstore.DirMirror + "entries/small",
		etcdstore.DirMirror + "svids_current/e1\x00spiffe://example.org/n1",
		etcdstore.DirSVIDs + fmt.Sprintf("%016x%016x", t0.Unix(), 1),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("keys under the prefix (-want +got):\n%s", diff)
	}
}

func TestOpenErrors(t *testing.T) {
	newer := newPrefix(t)
	if _, err := sharedClient.Put(t.Context(), newer+etcdstore.KeyCommit, `{"format":99}`); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		opts    etcdstore.Options
		wantErr string
	}{
		{"relative prefix", etcdstore.Options{Client: sharedClient, Prefix: "signet"}, "must start with /"},
		{"prefix ending with a slash", etcdstore.Options{Client: sharedClient, Prefix: "/signet/"}, "not end with one"},
		{"no endpoints", etcdstore.Options{}, "no endpoints"},
		{"unreachable", etcdstore.Options{Endpoints: []string{"http://127.0.0.1:1"}, RequestTimeout: time.Second}, "etcd http://127.0.0.1:1"},
		{"newer layout", etcdstore.Options{Client: sharedClient, Prefix: newer}, "newer than version 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
			defer cancel()
			st, err := etcdstore.Open(ctx, tt.opts)
			if err == nil {
				st.Close()
				t.Fatalf("Open succeeded, want an error with %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Open: got %v, want an error with %q", err, tt.wantErr)
			}
		})
	}
}

// TestEtcdDown stops etcd under an open store: writes fail within their
// ctx with an error naming etcd, and work again once it is back, without
// reopening the store.
func TestEtcdDown(t *testing.T) {
	t.Parallel() // stopping etcd takes its 7s request timeout
	c, err := etcdtest.Start(t.TempDir(), 1, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	st := openStore(t, etcdstore.Options{Endpoints: c.Endpoints(), RequestTimeout: 3 * time.Second})
	update(t, st, smallWrite)
	c.Stop(0)

	ops := []struct {
		name string
		run  func(ctx context.Context) error
	}{
		{"Update", func(ctx context.Context) error {
			return st.Update(ctx, func(tx store.Tx) error { return appendAudit(tx, "down") })
		}},
		{"Batch", func(ctx context.Context) error {
			return st.Batch(ctx, func(tx store.Tx) error { return appendAudit(tx, "down") })
		}},
		{"View of the audit log", func(ctx context.Context) error {
			return st.View(ctx, func(tx store.Tx) error {
				return tx.ForEachAudit(0, func(*store.AuditRecord) error { return nil })
			})
		}},
	}
	for _, op := range ops {
		t.Run(op.name, func(t *testing.T) {
			const deadline = time.Second
			ctx, cancel := context.WithTimeout(t.Context(), deadline)
			defer cancel()
			start := time.Now()
			err := op.run(ctx)
			took := time.Since(start)
			if err == nil {
				t.Fatalf("succeeded with etcd down")
			}
			if !strings.Contains(err.Error(), "etcd") {
				t.Errorf("error %q does not name etcd", err)
			}
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, store.ErrUnavailable) {
				t.Errorf("error %v is neither the ctx's nor store.ErrUnavailable", err)
			}
			if took > deadline+time.Second {
				t.Errorf("failed after %v, want within the ctx deadline of %v", took, deadline)
			}
		})
	}
	// Without a deadline of the caller's, RequestTimeout bounds the wait.
	start := time.Now()
	err = st.Update(t.Context(), func(tx store.Tx) error { return appendAudit(tx, "down") })
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Update without a deadline: got %v, want store.ErrUnavailable", err)
	}
	if took := time.Since(start); took > 3*time.Second+2*time.Second {
		t.Errorf("Update without a deadline failed after %v, want about the request timeout", took)
	}

	if err := c.Restart(0); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	start = time.Now()
	for {
		err := st.Update(ctx, func(tx store.Tx) error { return appendAudit(tx, "back") })
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("writes did not resume within 30s of etcd's restart: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("writes resumed %v after etcd restarted", time.Since(start).Round(time.Millisecond))
	checkOnlySmall(t, st, 2)
}

// TestReadsSeeOwnWrites checks that a transaction reads the SVID index
// and the audit log with its own writes laid over what etcd holds, as
// bbolt does: the same steps run on both and must agree.
func TestReadsSeeOwnWrites(t *testing.T) {
	backends := map[string]func(t *testing.T) store.Store{
		"bolt": func(t *testing.T) store.Store {
			st, err := store.Open(filepath.Join(t.TempDir(), "signet.db"), store.Options{NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return st
		},
		"etcd": func(t *testing.T) store.Store { return openStore(t, etcdstore.Options{}) },
	}
	svid := func(i int) *store.SVIDRecord {
		return &store.SVIDRecord{Serial: fmt.Sprintf("%032x", i), NotAfter: t0.Add(time.Duration(i) * time.Minute)}
	}
	serials := func(tx store.Tx) []string {
		var out []string
		if err := tx.ForEachSVID(func(r *store.SVIDRecord) error { out = append(out, r.Serial[30:]); return nil }); err != nil {
			t.Fatalf("ForEachSVID: %v", err)
		}
		return out
	}
	seqs := func(tx store.Tx, from uint64) []uint64 {
		var out []uint64
		if err := tx.ForEachAudit(from, func(r *store.AuditRecord) error { out = append(out, r.Seq); return nil }); err != nil {
			t.Fatalf("ForEachAudit: %v", err)
		}
		return out
	}
	results := map[string][]string{}
	for name, open := range backends {
		t.Run(name, func(t *testing.T) {
			st := open(t)
			var got []string
			record := func(step string, v any) { got = append(got, fmt.Sprintf("%s: %v", step, v)) }
			update(t, st, func(tx store.Tx) error {
				for _, i := range []int{5, 1, 3} {
					if err := tx.PutSVID(svid(i)); err != nil {
						return err
					}
				}
				for range 4 {
					if err := appendAudit(tx, "a"); err != nil {
						return err
					}
				}
				return nil
			})
			update(t, st, func(tx store.Tx) error {
				if err := tx.PutSVID(svid(2)); err != nil {
					return err
				}
				record("svids with one more", serials(tx))
				n, err := tx.PruneSVIDs(t0.Add(150 * time.Second))
				if err != nil {
					return err
				}
				record("pruned", n)
				record("svids after pruning", serials(tx))
				if err := tx.PutSVID(svid(0)); err != nil { // expired, after the prune
					return err
				}
				record("svids with an expired one", serials(tx))
				if err := appendAudit(tx, "b"); err != nil {
					return err
				}
				record("audit from 3", seqs(tx, 3))
				if n, err = tx.DeleteAuditBefore(3); err != nil {
					return err
				}
				record("audit deleted", n)
				record("audit from 0", seqs(tx, 0))
				if err := appendAudit(tx, "c"); err != nil {
					return err
				}
				record("audit from 6", seqs(tx, 6))
				if n, err = tx.DeleteAuditBefore(100); err != nil {
					return err
				}
				record("audit deleted", n)
				if err := appendAudit(tx, "d"); err != nil {
					return err
				}
				record("audit after emptying", seqs(tx, 0))
				return nil
			})
			err := st.View(t.Context(), func(tx store.Tx) error {
				record("committed svids", serials(tx))
				record("committed audit", seqs(tx, 0))
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			results[name] = got
		})
	}
	if diff := cmp.Diff(results["bolt"], results["etcd"]); diff != "" {
		t.Errorf("etcd reads differ from bolt's (-bolt +etcd):\n%s", diff)
	}
	t.Logf("steps: %q", results["bolt"])
}

// TestQuorumLost stops two members of three: the third is up but has no
// leader, so writes fail closed with store.ErrUnavailable, the mirror
// still serves Views, and writes resume once a member is back.
func TestQuorumLost(t *testing.T) {
	t.Parallel() // stopping members takes etcd's 7s request timeout
	c, err := etcdtest.Start(t.TempDir(), 3, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	st := openStore(t, etcdstore.Options{Endpoints: c.Endpoints(), RequestTimeout: 2 * time.Second})
	update(t, st, smallWrite)
	var wg sync.WaitGroup
	for _, i := range []int{1, 2} {
		wg.Go(func() { c.Stop(i) })
	}
	wg.Wait()

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	start := time.Now()
	err = st.Update(ctx, func(tx store.Tx) error { return appendAudit(tx, "no quorum") })
	if !errors.Is(err, store.ErrUnavailable) && !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Update without quorum: got %v, want store.ErrUnavailable", err)
	}
	if err != nil && !strings.Contains(err.Error(), "etcd") {
		t.Errorf("error %q does not name etcd", err)
	}
	t.Logf("Update without quorum failed after %v: %v", time.Since(start).Round(time.Millisecond), err)
	// The mirror still answers, as last seen; the failed write is not in it.
	err = st.View(t.Context(), func(tx store.Tx) error {
		es, err := tx.ListEntries(store.EntryFilter{})
		if len(es) != 1 {
			t.Errorf("ListEntries without quorum = %d entries, want 1", len(es))
		}
		if seq, _, _ := tx.AuditHead(); seq != 1 {
			t.Errorf("AuditHead without quorum = %d, want 1", seq)
		}
		return err
	})
	if err != nil {
		t.Errorf("View of the mirror without quorum: %v", err)
	}

	if err := c.Restart(1); err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	start = time.Now()
	for {
		err := st.Update(ctx, func(tx store.Tx) error { return appendAudit(tx, "quorum back") })
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("writes did not resume within 30s of quorum returning: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("writes resumed %v after quorum returned", time.Since(start).Round(time.Millisecond))
	// The write that timed out was in etcd's log: it may have committed
	// once quorum returned (an error does not say it did not happen).
	// Either way the chain holds and nothing else changed.
	err = st.View(t.Context(), func(tx store.Tx) error {
		var types []string
		err := tx.ForEachAudit(0, func(r *store.AuditRecord) error {
			types = append(types, r.Type)
			return nil
		})
		want := []string{"entry.created", "quorum back"}
		if len(types) == 3 {
			want = []string{"entry.created", "no quorum", "quorum back"}
		}
		if diff := cmp.Diff(want, types); diff != "" {
			t.Errorf("audit records (-want +got):\n%s", diff)
		}
		t.Logf("the timed-out write committed later: %v", len(types) == 3)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
