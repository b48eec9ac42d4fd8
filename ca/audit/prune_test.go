package audit_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/signet-mesh/signet/ca/audit"
	"github.com/signet-mesh/signet/ca/store"
)

func TestPrune(t *testing.T) {
	st := openStore(t)
	s := newSigner(t)
	admin := audit.AdminActor(1000, "alice")
	prune := func(before, now time.Time) (audit.PruneResult, error) {
		t.Helper()
		return audit.Prune(t.Context(), st, before, admin, now)
	}
	firstSeq := func() uint64 { return scanAll(t, st)[0].Seq }

	appendRecords(t, st, 0, 5)                   // 1-5
	checkpoint(t, st, s, t0.Add(10*time.Second)) // 6
	appendRecords(t, st, 11, 3)                  // 7-9

	if _, err := prune(t0.Add(time.Hour), t0.Add(time.Hour)); !errors.Is(err, audit.ErrNotExported) {
		t.Fatalf("Prune of a log never exported: got error %v, want ErrNotExported", err)
	}
	export1, _ := export(t, st, s, audit.ExportParams{}, t0.Add(time.Minute)) // 10
	appendRecords(t, st, 70, 2)                                               // 11-12
	// A checkpoint that is old enough, but not exported: not an anchor.
	checkpoint(t, st, s, t0.Add(80*time.Second)) // 13

	// A dry run counts what would go and deletes nothing.
	if n, err := audit.PrunePreview(t.Context(), st, t0.Add(30*time.Second)); err != nil || n != 5 {
		t.Errorf("PrunePreview = %d, %v; want 5", n, err)
	}
	if got := firstSeq(); got != 1 {
		t.Errorf("the log starts at %d after a dry run, want 1", got)
	}

	// Up to the periodic checkpoint: records 1-5 go.
	res, err := prune(t0.Add(30*time.Second), t0.Add(90*time.Second))
	if err != nil {
		t.Fatalf("Prune: %v", err)
	}
	if res.Deleted != 5 || res.Anchor.Seq != 6 || res.Record.Seq != 14 {
		t.Errorf("Prune deleted %d records up to anchor %d, recorded as %d; want 5, 6, 14", res.Deleted, res.Anchor.Seq, res.Record.Seq)
	}
	wantRecord := audit.Record{
		Seq:      14,
		Time:     t0.Add(90 * time.Second),
		Type:     audit.TypeAuditPruned,
		Outcome:  audit.OutcomeSuccess,
		Actor:    admin,
		Details:  map[string]string{"before": audit.FormatTime(t0.Add(30 * time.Second)), "deleted": "5", "first_seq": "6"},
		PrevHash: res.Record.PrevHash,
		Hash:     res.Record.Hash,
	}
	if diff := cmp.Diff(wantRecord, res.Record); diff != "" {
		t.Errorf("audit.pruned record (-want +got):\n%s", diff)
	}
	if got := firstSeq(); got != 6 {
		t.Errorf("the log starts at %d after the prune, want 6", got)
	}

	// Up to the export's checkpoint, 10; 13 is newer than the export.
	res, err = prune(t0.Add(100*time.Second), t0.Add(95*time.Second))
	if err != nil {
		t.Fatalf("Prune: %v", err)
	}
	if res.Deleted != 4 || res.Anchor.Seq != 10 || res.Record.Seq != 15 {
		t.Errorf("Prune deleted %d records up to anchor %d, recorded as %d; want 4, 10, 15", res.Deleted, res.Anchor.Seq, res.Record.Seq)
	}

	// Again: nothing left to prune, and nothing recorded.
	res, err = prune(t0.Add(100*time.Second), t0.Add(96*time.Second))
	if err != nil || res.Deleted != 0 || res.Record.Seq != 0 {
		t.Errorf("Prune with nothing to prune = %+v, %v; want nothing done", res, err)
	}
	if got := firstSeq(); got != 10 {
		t.Errorf("the log starts at %d, want 10", got)
	}

	// The rest of the chain verifies, live and exported.
	rep, err := audit.VerifyStore(t.Context(), st, s.keys)
	if err != nil {
		t.Fatalf("VerifyStore after prune: %v", err)
	}
	if want := (audit.Report{Records: 6, FirstSeq: 10, LastSeq: 15, Checkpoints: 2, Pruned: true}); !cmp.Equal(want, rep) {
		t.Errorf("VerifyStore report %+v, want %+v", rep, want)
	}
	export2, res2 := export(t, st, s, audit.ExportParams{}, t0.Add(2*time.Minute)) // 16
	rep, err = audit.Verify(bytes.NewReader(export2), s.keys)
	if err != nil {
		t.Fatalf("Verify of an export after prune: %v", err)
	}
	if want := (audit.Report{Records: 7, FirstSeq: 10, LastSeq: 16, Checkpoints: 3, Pruned: true, Final: res2.Checkpoint}); !cmp.Equal(want, rep) {
		t.Errorf("Verify report %+v, want %+v", rep, want)
	}
	// The export made before the prune still verifies on its own.
	if _, err := audit.Verify(bytes.NewReader(export1), s.keys); err != nil {
		t.Errorf("Verify of the export from before the prune: %v", err)
	}
	// Without its anchor, the pruned export misses its start.
	_, err = audit.Verify(bytes.NewReader(join(lines(export2)[1:])), s.keys)
	if ve := (*audit.VerifyError)(nil); !errors.As(err, &ve) || !errors.Is(err, audit.ErrMissing) || ve.Line != 1 || ve.Seq != 11 {
		t.Errorf("Verify of a pruned export without its anchor: %v, want missing records at line 1, seq 11", err)
	}
}

// TestPruneNeverLeavesAnUnanchoredLog checks that Prune keeps the
// checkpoint it prunes up to, so the log's first record is always seq 1
// or a signed checkpoint.
func TestPruneNeverLeavesAnUnanchoredLog(t *testing.T) {
	st := openStore(t)
	s := newSigner(t)
	appendRecords(t, st, 0, 3)
	export(t, st, s, audit.ExportParams{}, t0.Add(time.Minute)) // 4
	res, err := audit.Prune(t.Context(), st, t0.Add(time.Hour), "", t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if res.Deleted != 3 {
		t.Errorf("deleted %d records, want 3", res.Deleted)
	}
	var first audit.Record
	err = st.View(t.Context(), func(tx store.Tx) error {
		return tx.ForEachAudit(0, func(r *store.AuditRecord) error {
			first = audit.Record{Seq: r.Seq, Type: r.Type}
			return errors.New("stop")
		})
	})
	if first.Seq != 4 || first.Type != audit.TypeCheckpoint {
		t.Errorf("the pruned log starts with record %d, a %s; want the checkpoint 4 (%v)", first.Seq, first.Type, err)
	}
}
