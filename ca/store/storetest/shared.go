package storetest

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/signet-mesh/signet/ca/store"
)

// RunShared runs the cases of a backend that several processes share (as
// CA replicas share etcd). open returns two instances of one new, empty
// store, as two processes would open it; the suite closes both. What one
// instance commits reaches the other through the backend, never through
// memory they share.
func RunShared(t *testing.T, open func(t *testing.T) (a, b store.Store)) {
	tests := []struct {
		name string
		run  func(t *testing.T, a, b store.Store)
	}{
		{"SubscribeAcross", testSubscribeAcross},
		{"SubscribeChangesAcross", testSubscribeChangesAcross},
		{"UpdateAcross", testUpdateAcross},
		{"RevisionsAcross", testRevisionsAcross},
		{"AuditChainAcross", testAuditChainAcross},
		{"TakeJoinTokenAcross", testTakeJoinTokenAcross},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a, b := open(t)
			t.Cleanup(func() {
				for _, st := range []store.Store{a, b} {
					if err := st.Close(); err != nil {
						t.Errorf("Close: %v", err)
					}
				}
			})
			tt.run(t, a, b)
		})
	}
}

// eventually waits until cond holds in a View of st, failing the test
// after waitTimeout. Instances learn of each other's commits
// asynchronously.
func eventually(t *testing.T, st store.Store, what string, cond func(tx store.Tx) (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		var ok bool
		view(t, st, func(tx store.Tx) (err error) {
			ok, err = cond(tx)
			return err
		})
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, waitTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func testSubscribeAcross(t *testing.T, a, b store.Store) {
	revs, cancel := b.Subscribe()
	defer cancel()
	audits, cancelAudits := b.SubscribeAudit()
	defer cancelAudits()
	wait := func(ch <-chan struct{}, what string) {
		t.Helper()
		select {
		case _, ok := <-ch:
			if !ok {
				t.Fatalf("%s channel closed", what)
			}
		case <-time.After(waitTimeout):
			t.Fatalf("%s of the other instance did not fire within %v", what, waitTimeout)
		}
	}

	update(t, a, func(tx store.Tx) error {
		if _, err := tx.NextRevision(); err != nil {
			return err
		}
		return tx.CreateEntry(entry("e1", "spiffe://example.org/web", "spiffe://example.org/n1", "unix:uid:1"))
	})
	wait(revs, "Subscribe")
	// Woken, the subscriber reads the change.
	view(t, b, func(tx store.Tx) error {
		if _, err := tx.GetEntry("e1"); err != nil {
			t.Errorf("after Subscribe fired: %v", err)
		}
		if rev, err := tx.Revision(); err != nil || rev != 1 {
			t.Errorf("Revision = %d, %v; want 1", rev, err)
		}
		return nil
	})

	update(t, a, func(tx store.Tx) error { return appendAudit(tx, 1) })
	wait(audits, "SubscribeAudit")
	checkAuditHead(t, b, 1)
	select {
	case <-revs:
		t.Errorf("Subscribe fired for a commit that only appended audit records")
	default:
	}
}

// testUpdateAcross checks that a write through one instance is based on
// the other's commits, even when it has not seen them yet.
func testUpdateAcross(t *testing.T, a, b store.Store) {
	update(t, a, func(tx store.Tx) error { return tx.PutMeta("counter", []byte{1}) })
	// b increments at once: on a state without a's commit, its commit
	// conflicts and fn runs again on the new state.
	update(t, b, func(tx store.Tx) error {
		v, err := tx.GetMeta("counter")
		if errors.Is(err, store.ErrNotFound) {
			v, err = []byte{0}, nil
		}
		if err != nil {
			return err
		}
		return tx.PutMeta("counter", []byte{v[0] + 1})
	})
	for _, st := range []store.Store{a, b} {
		eventually(t, st, "counter at 2", func(tx store.Tx) (bool, error) {
			v, err := tx.GetMeta("counter")
			return err == nil && cmp.Equal(v, []byte{2}), nil
		})
	}
}

func testRevisionsAcross(t *testing.T, a, b store.Store) {
	const perInstance = 20
	var (
		mu   sync.Mutex
		revs []int64
		wg   sync.WaitGroup
	)
	for i := range 2 * perInstance {
		run := a.Update
		if i%2 == 1 {
			run = b.Batch
		}
		wg.Go(func() {
			var rev int64
			err := run(t.Context(), func(tx store.Tx) (err error) {
				rev, err = tx.NextRevision()
				return err
			})
			if err != nil {
				t.Errorf("NextRevision: %v", err)
				return
			}
			mu.Lock()
			revs = append(revs, rev)
			mu.Unlock()
		})
	}
	wg.Wait()
	slices.Sort(revs)
	var want []int64
	for r := int64(1); r <= 2*perInstance; r++ {
		want = append(want, r)
	}
	if diff := cmp.Diff(want, revs); diff != "" {
		t.Errorf("revisions taken through both instances (-want +got):\n%s", diff)
	}
}

// testAuditChainAcross appends from both instances at once: one chain,
// seqs following each other, each record naming its predecessor's hash.
func testAuditChainAcross(t *testing.T, a, b store.Store) {
	const perInstance = 30
	errBoom := errors.New("boom")
	var wg sync.WaitGroup
	failed := make(chan struct{}, 2*perInstance)
	for i := range 2 * perInstance {
		run := a.Batch
		switch i % 4 {
		case 1:
			run = b.Batch
		case 2:
			run = a.Update
		case 3:
			run = b.Update
		}
		wg.Go(func() {
			err := run(t.Context(), func(tx store.Tx) error {
				if err := appendAudit(tx, 1); err != nil {
					return err
				}
				if i%7 == 0 {
					return errBoom
				}
				return nil
			})
			switch {
			case errors.Is(err, errBoom):
				failed <- struct{}{}
			case err != nil:
				t.Errorf("appending: %v", err)
			}
		})
	}
	wg.Wait()
	committed := uint64(2*perInstance - len(failed))
	for _, st := range []store.Store{a, b} {
		eventually(t, st, "the audit head at the last record", func(tx store.Tx) (bool, error) {
			seq, _, err := tx.AuditHead()
			return seq == committed, err
		})
		view(t, st, func(tx store.Tx) error {
			if diff := cmp.Diff(seqRange(1, committed), auditSeqs(t, tx, 0)); diff != "" {
				t.Errorf("audit log (-want +got):\n%s", diff)
			}
			var prev string
			return tx.ForEachAudit(0, func(r *store.AuditRecord) error {
				if r.Seq > 1 && r.PrevHash != prev {
					t.Errorf("record %d has prev hash %q, want %q", r.Seq, r.PrevHash, prev)
				}
				prev = r.Hash
				return nil
			})
		})
	}
}

// testTakeJoinTokenAcross is testTakeJoinTokenRace with the racers spread
// over two instances (two CA replicas): exactly one attests.
func testTakeJoinTokenAcross(t *testing.T, a, b store.Store) {
	const racers = 50
	const hash = "race-across"
	update(t, a, func(tx store.Tx) error { return tx.PutJoinToken(joinToken(hash)) })
	// b sees the token, so that its racers race for real.
	eventually(t, b, "the token", func(tx store.Tx) (bool, error) {
		ts, err := tx.ListJoinTokens()
		return len(ts) == 1, err
	})
	runs := []func(context.Context, func(store.Tx) error) error{a.Update, a.Batch, b.Update, b.Batch}
	start := make(chan struct{})
	errs := make([]error, racers)
	var wg sync.WaitGroup
	for i := range racers {
		wg.Go(func() {
			<-start
			errs[i] = runs[i%len(runs)](t.Context(), func(tx store.Tx) error {
				_, err := tx.TakeJoinToken(hash, t0)
				return err
			})
		})
	}
	close(start)
	wg.Wait()
	winners := 0
	for i, err := range errs {
		switch {
		case err == nil:
			winners++
		case !errors.Is(err, store.ErrNotFound):
			t.Errorf("racer %d: got error %v, want nil or ErrNotFound", i, err)
		}
	}
	if winners != 1 {
		t.Errorf("%d racers took the token, want exactly 1", winners)
	}
}
