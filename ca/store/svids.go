package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/bbolt"
)

// The SVID index (bucketSVIDs) holds a record of every issued certificate,
// keyed by expiry; the current index (bucketCurrentSVIDs) holds, per entry
// and node, the record of the newest one, kept by PutSVID in the same
// transaction. Questions about what agents serve now (may a root retire?)
// read the small current index, not every SVID ever issued.

func (t *boltTx) PutSVID(r *SVIDRecord) error {
	if err := t.putSVID(r); err != nil {
		return fmt.Errorf("putting svid %q: %w", r.Serial, err)
	}
	return nil
}

func (t *boltTx) putSVID(r *SVIDRecord) error {
	if err := t.writable(); err != nil {
		return err
	}
	data := encodeSVID(r)
	b := t.tx.Bucket(bucketSVIDs)
	b.FillPercent = svidsFillPercent
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	if err := b.Put(svidKey(r.NotAfter, seq), data); err != nil {
		return err
	}
	return setCurrent(t.tx.Bucket(bucketCurrentSVIDs), r, data)
}

// svidsFillPercent packs the SVID index's pages full, as the audit log's
// are. Its keys start with the expiry, and every SVID issued now expires
// after nearly all stored ones (one TTL from now), so issuance appends at
// the end of the key space, or at the end of the run of one TTL: bbolt's
// default of half-full pages, room for inserts in the middle, left the
// index, a record per SVID ever issued, at twice its size on disk and in
// the CA's mapped memory.
const svidsFillPercent = 1.0

// currentKey is the key of (entry, node) in bucketCurrentSVIDs. Entry IDs
// and SPIFFE IDs hold no NUL, so the pair is unambiguous; node SVIDs (no
// entry) sort first.
func currentKey(entryID, nodeID string) []byte {
	k := make([]byte, 0, len(entryID)+1+len(nodeID))
	k = append(k, entryID...)
	k = append(k, 0)
	return append(k, nodeID...)
}

// A current index value is the record's NotBefore (8 bytes, big-endian
// Unix nanoseconds), which PutSVID compares without decoding anything,
// followed by the record's JSON.
const currentPrefix = 8

// setCurrent makes r, encoded as data, the current SVID of its entry and
// node unless the current one was issued later (a later NotBefore). Of
// two issued at the same time, the one recorded last wins.
func setCurrent(b *bbolt.Bucket, r *SVIDRecord, data []byte) error {
	key := currentKey(r.EntryID, r.NodeID)
	nb := r.NotBefore.UnixNano()
	if old := b.Get(key); old != nil {
		if len(old) < currentPrefix {
			return fmt.Errorf("current svid %q: %d bytes: %w", key, len(old), ErrCorrupt)
		}
		if nb < int64(binary.BigEndian.Uint64(old)) {
			return nil
		}
	}
	v := make([]byte, currentPrefix, currentPrefix+len(data))
	binary.BigEndian.PutUint64(v, uint64(nb))
	if err := b.Put(key, append(v, data...)); err != nil {
		return fmt.Errorf("indexing the current svid: %w", err)
	}
	return nil
}

// decodeCurrent decodes a current index value.
func decodeCurrent(key, data []byte, r *SVIDRecord) error {
	if len(data) < currentPrefix {
		return fmt.Errorf("decoding %s record %q: %w: %d bytes", bucketCurrentSVIDs, key, ErrCorrupt, len(data))
	}
	return decodeRecord(bucketCurrentSVIDs, key, data[currentPrefix:], r)
}

func (t *boltTx) ForEachCurrentSVID(fn func(*SVIDRecord) error) error {
	c := t.tx.Bucket(bucketCurrentSVIDs).Cursor()
	for k, data := c.First(); k != nil; k, data = c.Next() {
		r := new(SVIDRecord)
		if err := decodeCurrent(k, data, r); err != nil {
			return fmt.Errorf("walking current svids: %w", err)
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

// svidKey orders the SVID index by expiry, then by order of issuance (the
// bucket's sequence). Every new SVID expires after nearly all stored ones,
// so issuance appends at the end of the bucket and a commit rewrites a page
// or two instead of one random page per certificate; pruning reads only
// the expired prefix.
func svidKey(notAfter time.Time, seq uint64) []byte {
	k := make([]byte, 16)
	binary.BigEndian.PutUint64(k, uint64(notAfter.Unix()))
	binary.BigEndian.PutUint64(k[8:], seq)
	return k
}

// svidKeyExpiry is the expiry (Unix seconds) a key sorts by.
func svidKeyExpiry(k []byte) int64 {
	if len(k) < 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(k[:8]))
}

// GetSVID walks the index: it is keyed by expiry for issuance and pruning,
// and lookups by serial are rare (an operator's question).
func (t *boltTx) GetSVID(serial string) (*SVIDRecord, error) {
	var found *SVIDRecord
	err := t.ForEachSVID(func(r *SVIDRecord) error {
		if r.Serial == serial {
			found = r
			return errStopWalk
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStopWalk) {
		return nil, fmt.Errorf("getting svid %q: %w", serial, err)
	}
	if found == nil {
		return nil, fmt.Errorf("getting svid %q: %w", serial, ErrNotFound)
	}
	return found, nil
}

var errStopWalk = errors.New("stop walk")

func (t *boltTx) ForEachSVID(fn func(*SVIDRecord) error) error {
	return t.forEachSVID(nil, fn)
}

func (t *boltTx) ForEachSVIDFrom(from time.Time, fn func(*SVIDRecord) error) error {
	return t.forEachSVID(svidKey(from, 0), fn)
}

// forEachSVID walks the index from key start (from the first when nil).
func (t *boltTx) forEachSVID(start []byte, fn func(*SVIDRecord) error) error {
	c := t.tx.Bucket(bucketSVIDs).Cursor()
	k, data := c.First()
	if start != nil {
		k, data = c.Seek(start)
	}
	for ; k != nil; k, data = c.Next() {
		r := new(SVIDRecord)
		if err := decodeRecord(bucketSVIDs, k, data, r); err != nil {
			return fmt.Errorf("walking svids: %w", err)
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

func (t *boltTx) PruneSVIDs(before time.Time) (int, error) {
	if err := t.writable(); err != nil {
		return 0, fmt.Errorf("pruning svids: %w", err)
	}
	// The index is ordered by expiry: read the expired prefix only.
	// Collect first, delete after: deleting under a moving cursor can
	// skip keys in bbolt.
	b := t.tx.Bucket(bucketSVIDs)
	var expired [][]byte
	c := b.Cursor()
	for k, data := c.First(); k != nil && svidKeyExpiry(k) <= before.Unix(); k, data = c.Next() {
		r := new(SVIDRecord)
		if err := decodeRecord(bucketSVIDs, k, data, r); err != nil {
			return 0, fmt.Errorf("pruning svids: %w", err)
		}
		if r.NotAfter.Before(before) {
			expired = append(expired, append([]byte(nil), k...))
		}
	}
	for _, k := range expired {
		if err := b.Delete(k); err != nil {
			return 0, fmt.Errorf("pruning svid %q: %w", k, err)
		}
	}
	if err := pruneCurrent(t.tx.Bucket(bucketCurrentSVIDs), before); err != nil {
		return 0, fmt.Errorf("pruning svids: %w", err)
	}
	return len(expired), nil
}

// pruneCurrent drops the current SVIDs that expired before t: the index
// has one record per entry and node, so it is read whole.
func pruneCurrent(b *bbolt.Bucket, before time.Time) error {
	var expired [][]byte
	err := b.ForEach(func(k, data []byte) error {
		var r SVIDRecord
		if err := decodeCurrent(k, data, &r); err != nil {
			return err
		}
		if r.NotAfter.Before(before) {
			expired = append(expired, bytes.Clone(k))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range expired {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}
