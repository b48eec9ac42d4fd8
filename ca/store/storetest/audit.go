package storetest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/signet-mesh/signet/ca/store"
)

// auditHash is a stand-in for record seq's hash: the store neither computes
// nor checks hashes, it only compares PrevHash with the head's.
func auditHash(seq uint64) string { return fmt.Sprintf("hash-%d", seq) }

// auditRecord is record seq with the given prev hash.
func auditRecord(seq uint64, prevHash string) *store.AuditRecord {
	return &store.AuditRecord{
		Seq:     seq,
		Time:    t0.Add(time.Duration(seq) * time.Second),
		Type:    "svid.issued",
		Outcome: "success",
		Actor:   "spiffe://example.org/signet/agent/join_token/n1",
		Subject: "spiffe://example.org/web",
		Details: map[string]string{
			"serial":   serialN(int(seq)),
			"entry_id": "e1",
		},
		PrevHash: prevHash,
		Hash:     auditHash(seq),
	}
}

// appendAudit appends the next n records after the head, in tx.
func appendAudit(tx store.Tx, n int) error {
	seq, hash, err := tx.AuditHead()
	if err != nil {
		return err
	}
	for range n {
		r := auditRecord(seq+1, hash)
		if err := tx.AppendAudit(r); err != nil {
			return err
		}
		seq, hash = r.Seq, r.Hash
	}
	return nil
}

// auditSeqs lists the seqs ForEachAudit(from) walks, in its order.
func auditSeqs(t *testing.T, tx store.Tx, from uint64) []uint64 {
	t.Helper()
	var seqs []uint64
	err := tx.ForEachAudit(from, func(r *store.AuditRecord) error {
		seqs = append(seqs, r.Seq)
		return nil
	})
	if err != nil {
		t.Errorf("ForEachAudit(%d): %v", from, err)
	}
	return seqs
}

// seqRange is lo, lo+1, ..., hi.
func seqRange(lo, hi uint64) []uint64 {
	var out []uint64
	for s := lo; s <= hi; s++ {
		out = append(out, s)
	}
	return out
}

// checkAuditHead fails unless the head is record seq.
func checkAuditHead(t *testing.T, st store.Store, seq uint64) {
	t.Helper()
	want := ""
	if seq > 0 {
		want = auditHash(seq)
	}
	view(t, st, func(tx store.Tx) error {
		gotSeq, gotHash, err := tx.AuditHead()
		if err != nil {
			return err
		}
		if gotSeq != seq || gotHash != want {
			t.Errorf("AuditHead = %d, %q; want %d, %q", gotSeq, gotHash, seq, want)
		}
		return nil
	})
}

func testAuditRoundTrip(t *testing.T, st store.Store) {
	want := auditRecord(1, "genesis")
	want.Type = "checkpoint"
	want.KeyID = "key-1"
	want.Signature = "c2lnbmF0dXJl"
	update(t, st, func(tx store.Tx) error { return tx.AppendAudit(auditRecord(1, "genesis")) })
	update(t, st, func(tx store.Tx) error {
		r := auditRecord(2, auditHash(1))
		r.Type, r.KeyID, r.Signature = want.Type, want.KeyID, want.Signature
		return tx.AppendAudit(r)
	})
	want.Seq, want.PrevHash, want.Hash = 2, auditHash(1), auditHash(2)
	want.Time, want.Details["serial"] = t0.Add(2*time.Second), serialN(2)

	var got []*store.AuditRecord
	view(t, st, func(tx store.Tx) error {
		return tx.ForEachAudit(2, func(r *store.AuditRecord) error {
			got = append(got, r)
			r.Details["serial"] = "changed" // a copy: the store does not change
			return nil
		})
	})
	view(t, st, func(tx store.Tx) error {
		return tx.ForEachAudit(2, func(r *store.AuditRecord) error {
			if diff := cmp.Diff(want, r); diff != "" {
				t.Errorf("stored audit record (-want +got):\n%s", diff)
			}
			return nil
		})
	})
	if len(got) != 1 {
		t.Errorf("ForEachAudit(2) walked %d records, want 1", len(got))
	}
}

func testAuditOrder(t *testing.T, st store.Store) {
	// More than 256 records, in several transactions: big-endian keys
	// keep seq order where the byte order of decimal or little-endian
	// keys would not.
	const n = 600
	for range 3 {
		update(t, st, func(tx store.Tx) error { return appendAudit(tx, n/3) })
	}
	checkAuditHead(t, st, n)
	tests := []struct {
		from uint64
		want []uint64
	}{
		{0, seqRange(1, n)},
		{1, seqRange(1, n)},
		{256, seqRange(256, n)},
		{n, []uint64{n}},
		{n + 1, nil},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint("from ", tt.from), func(t *testing.T) {
			view(t, st, func(tx store.Tx) error {
				if diff := cmp.Diff(tt.want, auditSeqs(t, tx, tt.from)); diff != "" {
					t.Errorf("ForEachAudit(%d) seqs (-want +got):\n%s", tt.from, diff)
				}
				return nil
			})
		})
	}
}

func testAuditSeqEnforced(t *testing.T, st store.Store) {
	// The first record's prev hash is the caller's business.
	update(t, st, func(tx store.Tx) error { return tx.AppendAudit(auditRecord(1, "anything")) })
	update(t, st, func(tx store.Tx) error { return appendAudit(tx, 2) })
	tests := []struct {
		name string
		r    *store.AuditRecord
	}{
		{"seq zero", auditRecord(0, auditHash(3))},
		{"seq of the head", auditRecord(3, auditHash(3))},
		{"seq taken", auditRecord(1, auditHash(3))},
		{"seq skipped", auditRecord(5, auditHash(3))},
		{"prev hash not the head's", auditRecord(4, auditHash(2))},
		{"prev hash empty", auditRecord(4, "")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := st.Update(t.Context(), func(tx store.Tx) error { return tx.AppendAudit(tt.r) })
			if !errors.Is(err, store.ErrConflict) {
				t.Errorf("got error %v, want ErrConflict", err)
			}
			checkAuditHead(t, st, 3)
			view(t, st, func(tx store.Tx) error {
				if diff := cmp.Diff(seqRange(1, 3), auditSeqs(t, tx, 0)); diff != "" {
					t.Errorf("audit log changed by a refused append (-want +got):\n%s", diff)
				}
				return nil
			})
		})
	}
	update(t, st, func(tx store.Tx) error { return tx.AppendAudit(auditRecord(4, auditHash(3))) })
	checkAuditHead(t, st, 4)
}

// testAuditRollback checks "no record without its change": the records of
// a transaction that fails go with it.
func testAuditRollback(t *testing.T, st store.Store) {
	update(t, st, func(tx store.Tx) error { return appendAudit(tx, 2) })
	errBoom := errors.New("boom")
	for _, run := range []struct {
		name string
		fn   func(*testing.T, func(store.Tx) error) error
	}{
		{"Update", func(t *testing.T, fn func(store.Tx) error) error { return st.Update(t.Context(), fn) }},
		{"Batch", func(t *testing.T, fn func(store.Tx) error) error { return st.Batch(t.Context(), fn) }},
	} {
		t.Run(run.name, func(t *testing.T) {
			err := run.fn(t, func(tx store.Tx) error {
				if err := appendAudit(tx, 3); err != nil {
					return err
				}
				return errBoom
			})
			if !errors.Is(err, errBoom) {
				t.Errorf("got error %v, want fn's", err)
			}
			checkAuditHead(t, st, 2)
			view(t, st, func(tx store.Tx) error {
				if diff := cmp.Diff(seqRange(1, 2), auditSeqs(t, tx, 0)); diff != "" {
					t.Errorf("audit log after a rolled back transaction (-want +got):\n%s", diff)
				}
				return nil
			})
		})
	}
}

// testAuditBatch appends from concurrent Batch calls, some failing: the
// records that commit still follow each other, whatever the grouping.
func testAuditBatch(t *testing.T, st store.Store) {
	const n = 40
	errBoom := errors.New("boom")
	errs := make(chan error, n)
	for i := range n {
		go func() {
			errs <- st.Batch(t.Context(), func(tx store.Tx) error {
				if err := appendAudit(tx, 1); err != nil {
					return err
				}
				if i%4 == 0 {
					return errBoom
				}
				return nil
			})
		}()
	}
	failed := 0
	for range n {
		switch err := <-errs; {
		case errors.Is(err, errBoom):
			failed++
		case err != nil:
			t.Errorf("Batch: %v", err)
		}
	}
	committed := uint64(n - failed)
	checkAuditHead(t, st, committed)
	view(t, st, func(tx store.Tx) error {
		if diff := cmp.Diff(seqRange(1, committed), auditSeqs(t, tx, 0)); diff != "" {
			t.Errorf("audit log after concurrent batches (-want +got):\n%s", diff)
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

func testAuditEarlyStop(t *testing.T, st store.Store) {
	update(t, st, func(tx store.Tx) error { return appendAudit(tx, 10) })
	errStop := errors.New("stop")
	var seen []uint64
	err := st.View(t.Context(), func(tx store.Tx) error {
		return tx.ForEachAudit(4, func(r *store.AuditRecord) error {
			seen = append(seen, r.Seq)
			if len(seen) == 3 {
				return errStop
			}
			return nil
		})
	})
	if !errors.Is(err, errStop) {
		t.Errorf("got error %v, want fn's", err)
	}
	if diff := cmp.Diff([]uint64{4, 5, 6}, seen); diff != "" {
		t.Errorf("records walked before the stop (-want +got):\n%s", diff)
	}
}

func testAuditDeleteBefore(t *testing.T, st store.Store) {
	update(t, st, func(tx store.Tx) error { return appendAudit(tx, 10) })
	steps := []struct {
		name        string
		before      uint64
		wantDeleted int
		appendAfter int
		want        []uint64
		wantHead    uint64
	}{
		{"nothing before the first", 1, 0, 0, seqRange(1, 10), 10},
		{"the oldest three", 4, 3, 0, seqRange(4, 10), 10},
		{"again", 4, 0, 0, seqRange(4, 10), 10},
		// Appends continue from the head.
		{"then append", 0, 0, 1, seqRange(4, 11), 11},
		// Even deleting every record keeps the head, so seqs and the
		// chain go on.
		{"everything", 100, 8, 0, nil, 11},
		{"append to an emptied log", 0, 0, 2, seqRange(12, 13), 13},
	}
	for _, s := range steps {
		update(t, st, func(tx store.Tx) error {
			n, err := tx.DeleteAuditBefore(s.before)
			if err != nil {
				return err
			}
			if n != s.wantDeleted {
				t.Errorf("%s: DeleteAuditBefore(%d) = %d, want %d", s.name, s.before, n, s.wantDeleted)
			}
			return appendAudit(tx, s.appendAfter)
		})
		view(t, st, func(tx store.Tx) error {
			if diff := cmp.Diff(s.want, auditSeqs(t, tx, 0)); diff != "" {
				t.Errorf("%s: records left (-want +got):\n%s", s.name, diff)
			}
			return nil
		})
		checkAuditHead(t, st, s.wantHead)
	}
}

func testSubscribeAudit(t *testing.T, st store.Store) {
	ch, cancel := st.SubscribeAudit()
	defer cancel()
	revs, cancelRevs := st.Subscribe()
	defer cancelRevs()
	quiet := func(ch <-chan struct{}, what, after string) {
		t.Helper()
		select {
		case <-ch:
			t.Errorf("%s fired after %s", what, after)
		default:
		}
	}
	fired := func(after string) {
		t.Helper()
		select {
		case _, ok := <-ch:
			if !ok {
				t.Fatalf("SubscribeAudit channel closed after %s", after)
			}
		case <-time.After(waitTimeout):
			t.Fatalf("SubscribeAudit did not fire within %v after %s", waitTimeout, after)
		}
	}

	update(t, st, func(tx store.Tx) error { _, err := tx.NextRevision(); return err })
	quiet(ch, "SubscribeAudit", "an Update with only NextRevision")
	<-revs

	update(t, st, func(tx store.Tx) error { return appendAudit(tx, 1) })
	fired("an Update with AppendAudit")
	// Issuance appends a record per SVID: agent streams must not wake.
	quiet(revs, "Subscribe", "an Update with only AppendAudit")

	if err := st.Batch(t.Context(), func(tx store.Tx) error { return appendAudit(tx, 1) }); err != nil {
		t.Fatalf("Batch: %v", err)
	}
	fired("a Batch with AppendAudit")

	_ = st.Update(t.Context(), func(tx store.Tx) error {
		if err := appendAudit(tx, 1); err != nil {
			return err
		}
		return errors.New("rolled back")
	})
	quiet(ch, "SubscribeAudit", "a rolled back AppendAudit")

	update(t, st, func(tx store.Tx) error { _, err := tx.DeleteAuditBefore(2); return err })
	quiet(ch, "SubscribeAudit", "DeleteAuditBefore")

	cancel()
	cancel()
	if _, ok := <-ch; ok {
		t.Errorf("received a value after cancel, want a closed channel")
	}
}
