package store_test

import (
	"context"
	"errors"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signet-mesh/signet/ca/store"
)

// groupEntry is an entry change as the admin API makes it: a revision, the
// entry and its audit record, in one Update.
func groupEntry(id string) func(tx store.Tx) error {
	return func(tx store.Tx) error {
		rev, err := tx.NextRevision()
		if err != nil {
			return err
		}
		if err := tx.CreateEntry(&store.Entry{ID: id, SPIFFEID: "spiffe://example.org/" + id, ParentID: "spiffe://example.org/node", Selectors: []string{"unix:uid:1"}, Revision: rev, CreatedAt: t0}); err != nil {
			return err
		}
		return appendAudit(tx, "entry.created", id)
	}
}

// groupMint is a mint's Batch: the SVID record and its audit record.
func groupMint(serial string) func(tx store.Tx) error {
	return func(tx store.Tx) error {
		if err := tx.PutSVID(&store.SVIDRecord{Serial: serial, SPIFFEID: "spiffe://example.org/w", NodeID: "spiffe://example.org/node", EntryID: "e", NotBefore: t0, NotAfter: t0.Add(time.Hour)}); err != nil {
			return err
		}
		return appendAudit(tx, "svid.issued", serial)
	}
}

// appendAudit appends a record after the head, as package audit does.
func appendAudit(tx store.Tx, typ, subject string) error {
	seq, hash, err := tx.AuditHead()
	if err != nil {
		return err
	}
	return tx.AppendAudit(&store.AuditRecord{Seq: seq + 1, Time: t0, Type: typ, Outcome: "success", Subject: subject, PrevHash: hash, Hash: strings.Repeat("0", 63) + "1"})
}

// TestUpdateJoinsGroupCommit: an entry change (Update) and a mint (Batch)
// queued together commit in one transaction, so one fsync, and both are
// durable; when either fails, the other still commits and the failed one
// leaves no trace, not even its audit record.
func TestUpdateJoinsGroupCommit(t *testing.T) {
	errBoom := errors.New("boom")
	failing := func(fn func(store.Tx) error) func(store.Tx) error {
		return func(tx store.Tx) error {
			if err := fn(tx); err != nil {
				return err
			}
			return errBoom
		}
	}
	tests := []struct {
		name                      string
		entry, mint               func(store.Tx) error
		wantEntryErr, wantMintErr string // substrings; empty: committed
	}{
		{name: "both commit", entry: groupEntry("e1"), mint: groupMint("01")},
		{name: "failing entry change", entry: failing(groupEntry("e1")), mint: groupMint("01"), wantEntryErr: "boom"},
		{name: "failing mint", entry: groupEntry("e1"), mint: failing(groupMint("01")), wantMintErr: "boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var (
				mu     sync.Mutex
				groups []int
			)
			path := filepath.Join(t.TempDir(), "signet.db")
			st, err := store.Open(path, store.Options{OnGroupCommit: func(calls int) {
				mu.Lock()
				defer mu.Unlock()
				groups = append(groups, calls)
			}})
			if err != nil {
				t.Fatal(err)
			}
			// Closed after holdWriter's release (cleanups run last first):
			// Close waits for the held transaction.
			t.Cleanup(func() { st.Close() })
			heldID, release := holdWriter(t, st)
			var entryTx, mintTx atomic.Int64
			record := func(id *atomic.Int64, fn func(store.Tx) error) func(store.Tx) error {
				return func(tx store.Tx) error { id.Store(int64(store.TxID(tx))); return fn(tx) }
			}
			var entryErr, mintErr error
			var wg sync.WaitGroup
			wg.Go(func() { entryErr = st.Update(t.Context(), record(&entryTx, tt.entry)) })
			waitQueued(t, st, 1)
			wg.Go(func() { mintErr = st.Batch(t.Context(), record(&mintTx, tt.mint)) })
			waitQueued(t, st, 2)
			release()
			wg.Wait()
			checkErr(t, "Update", entryErr, tt.wantEntryErr)
			checkErr(t, "Batch", mintErr, tt.wantMintErr)
			if tt.wantEntryErr == "" && tt.wantMintErr == "" {
				if entryTx.Load() != mintTx.Load() || entryTx.Load() != int64(heldID+1) {
					t.Errorf("entry committed in transaction %d, mint in %d; want both in %d", entryTx.Load(), mintTx.Load(), heldID+1)
				}
				mu.Lock()
				if got := groups[len(groups)-1]; got != 2 {
					t.Errorf("last group commit carried %d calls, want 2", got)
				}
				mu.Unlock()
			}

			// What committed is on disk, what failed is not.
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
			re, err := store.Open(path, store.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer re.Close()
			err = re.View(t.Context(), func(tx store.Tx) error {
				_, err := tx.GetEntry("e1")
				if got, want := err == nil, tt.wantEntryErr == ""; got != want {
					t.Errorf("entry stored: %v, want %v (GetEntry: %v)", got, want, err)
				}
				_, err = tx.GetSVID("01")
				if got, want := err == nil, tt.wantMintErr == ""; got != want {
					t.Errorf("SVID stored: %v, want %v (GetSVID: %v)", got, want, err)
				}
				want := map[string]bool{}
				if tt.wantEntryErr == "" {
					want["e1"] = true
				}
				if tt.wantMintErr == "" {
					want["01"] = true
				}
				got := map[string]bool{}
				err = tx.ForEachAudit(0, func(r *store.AuditRecord) error { got[r.Subject] = true; return nil })
				if len(got) != len(want) || (want["e1"] && !got["e1"]) || (want["01"] && !got["01"]) {
					t.Errorf("audit records for %v, want %v", got, want)
				}
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

func checkErr(t *testing.T, what string, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Errorf("%s: %v, want success", what, err)
	case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
		t.Errorf("%s: %v, want an error with %q", what, err, want)
	}
}

// TestGroupResultsBeforeNotify: a group's callers get their results before
// the subscribers of its change are called. The subscriber below blocks
// until a caller of its group has returned; were the subscribers called
// first, no caller could return and it would time out.
func TestGroupResultsBeforeNotify(t *testing.T) {
	st := openBolt(t)
	returned := make(chan struct{}, 2)
	var woke, timedOut atomic.Bool
	_, cancel := st.SubscribeChanges(func(c store.Change) {
		if woke.Swap(true) {
			return
		}
		select {
		case <-returned:
		case <-time.After(waitTimeout):
			timedOut.Store(true)
		}
	})
	defer cancel()
	_, release := holdWriter(t, st)
	var wg sync.WaitGroup
	for _, fn := range []func(store.Tx) error{groupEntry("e1"), groupEntry("e2")} {
		wg.Go(func() {
			if err := st.Batch(context.Background(), fn); err != nil {
				t.Errorf("Batch: %v", err)
			}
			returned <- struct{}{}
		})
	}
	waitQueued(t, st, 2)
	release()
	wg.Wait()
	if !woke.Load() {
		t.Fatalf("the subscriber was not called")
	}
	if timedOut.Load() {
		t.Errorf("the subscriber was called before any caller of its group had its result")
	}
}

// TestGroupLeaderGoexit: a function that ends the goroutine it runs on
// (runtime.Goexit, as t.Fatal does) takes its group's leader with it;
// the other callers of the group still get an answer, and the store
// still commits afterwards.
func TestGroupLeaderGoexit(t *testing.T) {
	st := openBolt(t)
	_, release := holdWriter(t, st)
	errs := make(chan error, 2)
	for i, fn := range []func(store.Tx) error{
		func(store.Tx) error { runtime.Goexit(); return nil },
		groupMint("01"),
	} {
		go func() { errs <- st.Batch(context.Background(), fn) }()
		waitQueued(t, st, i+1) // in order, the Goexit first
	}
	release()
	// One of the two goroutines led the group and exited; the other
	// returns.
	select {
	case err := <-errs:
		if err == nil || !strings.Contains(err.Error(), "group commit failed") {
			t.Errorf("Batch in the exited leader's group: %v, want an error saying the group commit failed", err)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("no caller of the group returned")
	}
	if err := st.Update(t.Context(), groupMint("02")); err != nil {
		t.Errorf("Update after the exited leader: %v", err)
	}
}
