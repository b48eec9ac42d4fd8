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
	SchemaVersion = schemaVersion
)

const (
	MaxBatchSize         = maxBatchSize
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

// Check verifies bbolt's page structure, that every record decodes, and
// that the entry indexes match the entries exactly.
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
		if _, err := list[JoinToken](t, bucketJoinTokens); err != nil {
			errs = append(errs, err)
		}
		if _, err := list[SVIDRecord](t, bucketSVIDs); err != nil {
			errs = append(errs, err)
		}
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
