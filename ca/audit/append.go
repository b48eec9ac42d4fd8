package audit

import (
	"errors"
	"fmt"
	"time"

	"github.com/signet-mesh/signet/ca/store"
)

// Append adds r to the audit log in tx, the transaction of the change r
// records, and returns it as stored. It sets Seq, Time (now, in UTC),
// PrevHash and Hash; the caller sets Type, Outcome, Actor, Subject and
// Details. Strings that are not valid UTF-8 are stored with U+FFFD in
// place of the bad bytes.
//
// Call it from inside the Update or Batch function that makes the change,
// and return its error from that function: the change then commits only
// with its record, and a rolled back change leaves no record. Append
// fails with ErrInvalidRecord for a record it would not store (an unknown
// outcome, a type or detail key that is not a lower-case name, a
// checkpoint: use Checkpoint), and with the store's error when tx cannot
// take the write.
func Append(tx store.Tx, r Record, now time.Time) (Record, error) {
	if r.Type == TypeCheckpoint || r.KeyID != "" || r.Signature != "" {
		return Record{}, invalidf("checkpoints are written by Checkpoint")
	}
	r, err := prepare(r, now)
	if err != nil {
		return Record{}, err
	}
	if err := chain(tx, &r); err != nil {
		return Record{}, err
	}
	return commit(tx, r)
}

// chain sets r's Seq and PrevHash to follow the head of tx's log.
func chain(tx store.Tx, r *Record) error {
	seq, hash, err := tx.AuditHead()
	if err != nil {
		return wrapErr(fmt.Errorf("reading the head: %w", err))
	}
	r.Seq, r.PrevHash = seq+1, hash
	if seq == 0 {
		r.PrevHash = GenesisHash
	}
	return nil
}

// commit hashes r, which chain has placed, and stores it.
func commit(tx store.Tx, r Record) (Record, error) {
	hash, n := hashCanonical(&r)
	if n > maxRecordBytes {
		return Record{}, invalidf("%d-byte record, more than %d", n, maxRecordBytes)
	}
	r.Hash = hash
	if err := tx.AppendAudit(toStore(&r)); err != nil {
		return Record{}, wrapErr(fmt.Errorf("appending %s record: %w", r.Type, err))
	}
	return r, nil
}

// Head returns the newest record of tx's log; ok is false when the log is
// empty. A periodic checkpoint can be skipped when the head is one.
func Head(tx store.Tx) (r Record, ok bool, err error) {
	seq, _, err := tx.AuditHead()
	if err != nil || seq == 0 {
		return Record{}, false, wrapErr(err)
	}
	r, ok, err = first(tx, seq)
	if err == nil && (!ok || r.Seq != seq) {
		return Record{}, false, wrapErr(fmt.Errorf("the head, record %d, is not in the log", seq))
	}
	return r, ok, err
}

// first returns the first record with Seq >= from; ok is false when there
// is none.
func first(tx store.Tx, from uint64) (r Record, ok bool, err error) {
	err = tx.ForEachAudit(from, func(sr *store.AuditRecord) error {
		r, ok = fromStore(sr), true
		return errStop
	})
	if err != nil && !errors.Is(err, errStop) {
		return Record{}, false, wrapErr(fmt.Errorf("reading record %d: %w", from, err))
	}
	return r, ok, nil
}

// errStop ends a store walk early; it never leaves the package.
var errStop = errors.New("stop")
