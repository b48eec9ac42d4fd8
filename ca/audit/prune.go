package audit

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/signet-mesh/signet/ca/store"
)

// PruneResult is what Prune did.
type PruneResult struct {
	// Deleted is how many records it deleted.
	Deleted int
	// Anchor is the checkpoint the log now starts with (zero when
	// nothing was deleted).
	Anchor Record
	// Record is the audit.pruned record of the deletion (zero when
	// nothing was deleted).
	Record Record
}

// Prune deletes the oldest records of the log, up to (not including) the
// newest checkpoint that is older than before and covered by a complete
// export (Exported). That checkpoint, signed, becomes the first record: it
// vouches for the pruned head its prev_hash names, so the rest of the
// chain still verifies (see the package documentation). The deletion is
// recorded as an audit.pruned record by actor, in the same transaction.
//
// Prune deletes nothing when no such checkpoint is later than the first
// record, and fails with ErrNotExported when the log was never exported
// completely: records are removed only once they are safe elsewhere. It
// prunes at checkpoint boundaries, so records a little older than before
// may stay until the next checkpoint is old enough.
//
// The search for the checkpoint reads the exported records in chunks
// outside the write transaction; only the deletion holds the writer.
func Prune(ctx context.Context, st store.Store, before time.Time, actor string, now time.Time) (PruneResult, error) {
	anchor, n, err := planPrune(ctx, st, before)
	if err != nil || n == 0 {
		return PruneResult{}, err
	}

	var res PruneResult
	err = st.Update(ctx, func(tx store.Tx) error {
		// The anchor must still be there, unchanged; a concurrent Prune
		// may have deleted up to it or beyond.
		got, ok, err := first(tx, anchor.Seq)
		if err != nil {
			return err
		}
		if !ok || got.Seq != anchor.Seq || got.Hash != anchor.Hash {
			return wrapErr(fmt.Errorf("pruning: checkpoint %d changed during the prune", anchor.Seq))
		}
		n, err := tx.DeleteAuditBefore(anchor.Seq)
		if err != nil {
			return wrapErr(fmt.Errorf("pruning before record %d: %w", anchor.Seq, err))
		}
		if n == 0 {
			return nil
		}
		rec, err := Append(tx, Record{
			Type:    TypeAuditPruned,
			Outcome: OutcomeSuccess,
			Actor:   actor,
			Details: map[string]string{
				DetailBefore:   FormatTime(before),
				DetailDeleted:  strconv.Itoa(n),
				DetailFirstSeq: strconv.FormatUint(anchor.Seq, 10),
			},
		}, now)
		if err != nil {
			return err
		}
		res = PruneResult{Deleted: n, Anchor: anchor, Record: rec}
		return nil
	})
	return res, err
}

// PrunePreview returns how many records Prune would delete with the same
// before, deleting nothing (`signet audit prune --dry-run`). It fails with
// ErrNotExported as Prune does.
func PrunePreview(ctx context.Context, st store.Store, before time.Time) (int, error) {
	_, n, err := planPrune(ctx, st, before)
	return n, err
}

// planPrune finds the checkpoint Prune would keep as the log's first
// record, and how many records lie before it.
func planPrune(ctx context.Context, st store.Store, before time.Time) (anchor Record, n int, err error) {
	var exported uint64
	err = st.View(ctx, func(tx store.Tx) (err error) {
		exported, err = Exported(tx)
		return err
	})
	if err != nil {
		return Record{}, 0, err
	}
	if exported == 0 {
		return Record{}, 0, ErrNotExported
	}
	seen := 0
	err = Scan(ctx, st, 0, exported, func(r Record) error {
		if r.Type == TypeCheckpoint && r.Time.Before(before) {
			anchor, n = r, seen
		}
		seen++
		return nil
	})
	if err != nil {
		return Record{}, 0, err
	}
	return anchor, n, nil
}
