package store

import (
	"errors"
	"fmt"
	"slices"

	"go.etcd.io/bbolt"
)

// Hooks for the tests of package store_test, which cannot be in package
// store because they import storetest.

var (
	DecodeRecord  = decodeRecord
	EncodeRecord  = encodeRecord
	EncodeAudit   = encodeAudit
	DecodeAudit   = decodeAuditValue
	EncodeSVID    = encodeSVID
	DecodeSVID    = decodeSVID
	SchemaVersion = schemaVersion
)

const (
	MetaSchemaVersionKey = metaSchemaVersion
)

// QueueLen is how many Batch calls wait for a leader.
func (b *Bolt) QueueLen() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queue)
}

// TxID is the bbolt transaction ID behind tx. Successive commits have
// successive IDs, so tests can count commits.
func TxID(tx Tx) int { return tx.(*boltTx).tx.ID() }

// Check verifies bbolt's page structure, that every record decodes, that
// the entry indexes match the entries exactly, and that the audit records
// follow each other up to the audit head.
func (b *Bolt) Check() error {
	return b.db.View(func(tx *bbolt.Tx) error {
		var errs []error
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		t := &boltTx{tx: tx}
		if _, err := list[Authority](t, bucketAuthorities); err != nil {
			errs = append(errs, err)
		}
		if _, err := list[Node](t, bucketNodes); err != nil {
			errs = append(errs, err)
		}
		if _, err := list[Node](t, bucketEvictedNodes); err != nil {
			errs = append(errs, err)
		}
		if _, err := list[JoinToken](t, bucketJoinTokens); err != nil {
			errs = append(errs, err)
		}
		if err := t.ForEachSVID(func(*SVIDRecord) error { return nil }); err != nil {
			errs = append(errs, err)
		}
		errs = append(errs, t.checkAudit()...)
		errs = append(errs, t.checkCurrent()...)
		entries, err := list[Entry](t, bucketEntries)
		if err != nil {
			return errors.Join(append(errs, err)...)
		}
		for _, e := range entries {
			if !slices.Equal(e.Selectors, normalizeEntry(e).Selectors) {
				errs = append(errs, fmt.Errorf("entry %q: selectors %q are not normalized", e.ID, e.Selectors))
			}
			if got := tx.Bucket(bucketEntryKeys).Get(entryKey(e)); string(got) != e.ID {
				errs = append(errs, fmt.Errorf("entry %q: unique index names %q", e.ID, got))
			}
			if tx.Bucket(bucketEntriesByParent).Get(parentKey(e)) == nil {
				errs = append(errs, fmt.Errorf("entry %q: missing from parent index", e.ID))
			}
		}
		for _, name := range [][]byte{bucketEntryKeys, bucketEntriesByParent} {
			if n := tx.Bucket(name).Stats().KeyN; n != len(entries) {
				errs = append(errs, fmt.Errorf("index %s has %d keys for %d entries", name, n, len(entries)))
			}
		}
		return errors.Join(errs...)
	})
}

// checkAudit checks that the audit records have consecutive seqs, that
// each names its predecessor's hash, and that the newest is the head.
func (t *boltTx) checkAudit() []error {
	var (
		errs []error
		prev *AuditRecord
	)
	err := t.ForEachAudit(0, func(r *AuditRecord) error {
		if prev != nil && (r.Seq != prev.Seq+1 || r.PrevHash != prev.Hash) {
			errs = append(errs, fmt.Errorf("audit record %d (prev hash %q) does not follow record %d (hash %q)", r.Seq, r.PrevHash, prev.Seq, prev.Hash))
		}
		prev = r
		return nil
	})
	if err != nil {
		return append(errs, err)
	}
	seq, hash, err := t.AuditHead()
	if err != nil {
		return append(errs, err)
	}
	if prev != nil && (prev.Seq != seq || prev.Hash != hash) {
		errs = append(errs, fmt.Errorf("newest audit record is %d (hash %q), the head %d (hash %q)", prev.Seq, prev.Hash, seq, hash))
	}
	return errs
}

// checkCurrent checks the current-SVID index against the SVID index: one
// record per entry and node that has SVIDs, the one PutSVID would have
// kept.
func (t *boltTx) checkCurrent() []error {
	want := map[string]string{}
	nb := map[string]int64{}
	err := t.tx.Bucket(bucketSVIDs).ForEach(func(k, data []byte) error {
		var r SVIDRecord
		if err := decodeSVID(k, data, &r); err != nil {
			return err
		}
		key := string(currentKey(r.EntryID, r.NodeID))
		if old, ok := nb[key]; !ok || r.NotBefore.UnixNano() >= old {
			want[key], nb[key] = r.Serial, r.NotBefore.UnixNano()
		}
		return nil
	})
	if err != nil {
		return []error{err}
	}
	var errs []error
	got := map[string]string{}
	err = t.ForEachCurrentSVID(func(r *SVIDRecord) error {
		got[string(currentKey(r.EntryID, r.NodeID))] = r.Serial
		return nil
	})
	if err != nil {
		return []error{err}
	}
	for k, serial := range got {
		if w, ok := want[k]; ok && w != serial {
			errs = append(errs, fmt.Errorf("current svid of %q is %s, want %s", k, serial, w))
		}
	}
	for k, serial := range want {
		if _, ok := got[k]; !ok {
			errs = append(errs, fmt.Errorf("svid %s of %q is missing from the current index", serial, k))
		}
	}
	return errs
}
