package store

import (
	"encoding/binary"
	"fmt"

	"go.etcd.io/bbolt"
)

// Bucket names. Every record bucket is keyed by the record's natural ID; the
// index buckets hold only keys that point back at entries.
var (
	bucketAuthorities = []byte("authorities") // Authority.ID -> JSON
	bucketEntries     = []byte("entries")     // Entry.ID -> JSON
	// bucketEntryKeys makes (SPIFFE ID, parent ID, selector set) unique:
	// entryKey(e) -> Entry.ID.
	bucketEntryKeys = []byte("entry_keys")
	// bucketEntriesByParent lets ListEntries with a ParentID read only that
	// node's entries: ParentID NUL Entry.ID -> empty.
	bucketEntriesByParent = []byte("entries_by_parent")
	bucketNodes           = []byte("nodes")       // Node.SPIFFEID -> JSON
	bucketJoinTokens      = []byte("join_tokens") // JoinToken.Hash -> JSON
	// bucketSVIDs is the SVID index: svidKey(NotAfter, sequence) ->
	// binary record (encodeSVID), or JSON when written before schema 6.
	bucketSVIDs = []byte("svids")
	// bucketMeta holds the schema version, the revision counter and the
	// singletons of GetMeta/PutMeta.
	bucketMeta = []byte("meta")
	// bucketAudit is the hash-chained audit log, written in the same
	// transaction as the change each record records: big-endian
	// AuditRecord.Seq -> binary record (encodeAudit), so key order is seq
	// order.
	bucketAudit = []byte("audit")
	// bucketMTLSPolicies holds the mTLS policies: MTLSPolicy.ID -> JSON.
	bucketMTLSPolicies = []byte("mtls_policies")
	// bucketCurrentSVIDs points at the newest SVID of each entry and node:
	// currentKey(EntryID, NodeID) -> its NotBefore and its key in
	// bucketSVIDs (node SVIDs have no entry; see setCurrent). PutSVID
	// keeps it, PruneSVIDs prunes it.
	bucketCurrentSVIDs = []byte("svids_current")
	// bucketEvictedNodes holds the eviction records of nodes:
	// Node.SPIFFEID -> JSON Node with EvictedAt.
	bucketEvictedNodes = []byte("evicted_nodes")
)

// Keys of bucketMeta that the store owns. PutMeta refuses them so a caller
// cannot corrupt the schema version, rewind the revision counter or fork
// the audit chain. The first two hold an 8-byte big-endian unsigned
// integer; metaAuditHead holds the head's seq that way, followed by its
// hash. An absent metaAuditHead is an empty log, so files of schema 1
// written before the audit log need no migration.
const (
	metaSchemaVersion = "schema_version"
	metaRevision      = "revision"
	metaAuditHead     = "audit_head"
)

// migrations[i] moves a store file from schema version i to version i+1; a
// new, empty file is at version 0. To change the layout, append a function:
// Open runs the missing ones in order, in the same transaction that records
// the new version, so a failed migration leaves the file as it was.
var migrations = []func(tx *bbolt.Tx) error{
	// Version 1: the initial layout.
	func(tx *bbolt.Tx) error {
		return createBuckets(tx,
			bucketAuthorities, bucketEntries, bucketEntryKeys, bucketEntriesByParent,
			bucketNodes, bucketJoinTokens, bucketSVIDs, bucketMeta, bucketAudit)
	},
	// Version 2: mTLS policies.
	func(tx *bbolt.Tx) error { return createBuckets(tx, bucketMTLSPolicies) },
	// Version 3: the SVID index keyed by expiry then serial (svidKey).
	rekeySVIDs,
	// Version 4: the current SVID of each entry and node, and eviction
	// records of nodes.
	func(tx *bbolt.Tx) error {
		if err := createBuckets(tx, bucketEvictedNodes); err != nil {
			return err
		}
		return indexCurrentSVIDs(tx)
	},
	// Version 5: the current index points at records of the SVID index
	// instead of holding copies of them; audit records appended from now
	// on pack their hex (auditEncodingV2), which an older signet would
	// read as corrupt, so it must refuse the file.
	func(tx *bbolt.Tx) error {
		if err := tx.DeleteBucket(bucketCurrentSVIDs); err != nil {
			return fmt.Errorf("dropping the copies of current svids: %w", err)
		}
		return indexCurrentSVIDs(tx)
	},
	// Version 6: SVID index records written from now on are binary
	// (svidEncodingBinary), which an older signet would read as corrupt,
	// so it must refuse the file. Records written before stay JSON and
	// are read as such: every record is pruned a day after its SVID
	// expires, so they are gone within a day and a TTL, and rewriting
	// them at start would copy the whole index, the file's second
	// largest bucket, in one transaction for no lasting gain.
	func(tx *bbolt.Tx) error { return nil },
}

// indexCurrentSVIDs builds bucketCurrentSVIDs from the SVID index, as
// PutSVID would have kept it: records in issuance order (the index's
// sequence, which follows the bucket's key order within one expiry
// second) and the newest NotBefore wins.
func indexCurrentSVIDs(tx *bbolt.Tx) error {
	cur, err := tx.CreateBucketIfNotExists(bucketCurrentSVIDs)
	if err != nil {
		return fmt.Errorf("creating bucket %s: %w", bucketCurrentSVIDs, err)
	}
	err = tx.Bucket(bucketSVIDs).ForEach(func(k, data []byte) error {
		var r SVIDRecord
		if err := decodeSVID(k, data, &r); err != nil {
			return err
		}
		return setCurrent(cur, &r, k)
	})
	if err != nil {
		return fmt.Errorf("indexing current svids: %w", err)
	}
	return nil
}

// rekeySVIDs moves every SVID record from its serial key to svidKey.
func rekeySVIDs(tx *bbolt.Tx) error {
	b := tx.Bucket(bucketSVIDs)
	type kv struct{ old, new, data []byte }
	var moves []kv
	err := b.ForEach(func(k, data []byte) error {
		var r SVIDRecord
		if err := decodeSVID(k, data, &r); err != nil {
			return err
		}
		moves = append(moves, kv{old: append([]byte(nil), k...), new: nil, data: append([]byte(nil), data...)})
		moves[len(moves)-1].new = svidKey(r.NotAfter, 0) // sequence below
		return nil
	})
	if err != nil {
		return fmt.Errorf("rekeying svids: %w", err)
	}
	for _, m := range moves {
		if err := b.Delete(m.old); err != nil {
			return fmt.Errorf("rekeying svids: %w", err)
		}
	}
	for _, m := range moves {
		seq, err := b.NextSequence()
		if err != nil {
			return fmt.Errorf("rekeying svids: %w", err)
		}
		binary.BigEndian.PutUint64(m.new[8:], seq)
		if err := b.Put(m.new, m.data); err != nil {
			return fmt.Errorf("rekeying svids: %w", err)
		}
	}
	return nil
}

func createBuckets(tx *bbolt.Tx, names ...[]byte) error {
	for _, name := range names {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("creating bucket %s: %w", name, err)
		}
	}
	return nil
}

// allBuckets is every bucket of the current layout (a migration that adds
// one adds it here too). Open checks they all exist, so transaction code
// can use tx.Bucket without nil checks.
var allBuckets = [][]byte{
	bucketAuthorities, bucketEntries, bucketEntryKeys, bucketEntriesByParent,
	bucketNodes, bucketJoinTokens, bucketSVIDs, bucketMeta, bucketAudit,
	bucketMTLSPolicies, bucketCurrentSVIDs, bucketEvictedNodes,
}

// schemaVersion is the layout this code reads and writes.
var schemaVersion = uint64(len(migrations))

// migrate brings the file up to schemaVersion. It refuses a file written by
// a newer signet rather than guess at a layout it does not know.
func migrate(tx *bbolt.Tx, logger logFunc, onMigrate func(tx Tx, from, to uint64) error) error {
	version, err := readSchemaVersion(tx)
	if err != nil {
		return err
	}
	if version > schemaVersion {
		return fmt.Errorf("store schema version %d is newer than version %d, the newest this signet supports: use a newer signet", version, schemaVersion)
	}
	for v := version; v < schemaVersion; v++ {
		logger("migrating store schema", logKeyFromVersion, v, logKeyToVersion, v+1)
		if err := migrations[v](tx); err != nil {
			return fmt.Errorf("migrating store schema from version %d to %d: %w", v, v+1, err)
		}
	}
	if version != schemaVersion {
		if err := tx.Bucket(bucketMeta).Put([]byte(metaSchemaVersion), encodeUint64(schemaVersion)); err != nil {
			return fmt.Errorf("recording schema version %d: %w", schemaVersion, err)
		}
	}
	for _, name := range allBuckets {
		if tx.Bucket(name) == nil {
			return fmt.Errorf("bucket %s is missing: %w", name, ErrCorrupt)
		}
	}
	if version != 0 && version != schemaVersion && onMigrate != nil {
		if err := onMigrate(&boltTx{tx: tx}, version, schemaVersion); err != nil {
			return fmt.Errorf("recording the migration from schema version %d to %d: %w", version, schemaVersion, err)
		}
	}
	return nil
}

// logFunc is slog.Logger.Info's shape, so migrate needs no logger plumbing.
type logFunc func(msg string, args ...any)

// readSchemaVersion returns 0 for a file that has no meta bucket yet.
func readSchemaVersion(tx *bbolt.Tx) (uint64, error) {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return 0, nil
	}
	v, err := decodeUint64(meta.Get([]byte(metaSchemaVersion)))
	if err != nil {
		return 0, fmt.Errorf("reading schema version: %w", err)
	}
	return v, nil
}

func encodeUint64(v uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, v)
}

// decodeUint64 reads a counter of bucketMeta; an absent key is 0.
func decodeUint64(b []byte) (uint64, error) {
	if b == nil {
		return 0, nil
	}
	if len(b) != 8 {
		return 0, fmt.Errorf("%d-byte counter, want 8: %w", len(b), ErrCorrupt)
	}
	return binary.BigEndian.Uint64(b), nil
}
