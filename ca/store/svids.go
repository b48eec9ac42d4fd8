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
// keyed by expiry; the current index (bucketCurrentSVIDs) points, per entry
// and node, at the record of the newest one, kept by PutSVID in the same
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
	b := t.tx.Bucket(bucketSVIDs)
	b.FillPercent = svidsFillPercent
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	key := svidKey(r.NotAfter, seq)
	if err := b.Put(key, encodeSVID(r)); err != nil {
		return err
	}
	return setCurrent(t.tx.Bucket(bucketCurrentSVIDs), r, key)
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
// followed by the record's key in the SVID index (svidKey). The record
// itself is not copied: it is in the SVID index until both are pruned
// together, and a copy per entry and node took more of the store file
// than the whole rest of the index entry.
const (
	currentPrefix = 8
	currentLen    = currentPrefix + svidKeyLen
)

// setCurrent makes r, stored under svidsKey in the SVID index, the
// current SVID of its entry and node unless the current one was issued
// later (a later NotBefore). Of two issued at the same time, the one
// recorded last wins.
func setCurrent(b *bbolt.Bucket, r *SVIDRecord, svidsKey []byte) error {
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
	v := make([]byte, currentPrefix, currentLen)
	binary.BigEndian.PutUint64(v, uint64(nb))
	if err := b.Put(key, append(v, svidsKey...)); err != nil {
		return fmt.Errorf("indexing the current svid: %w", err)
	}
	return nil
}

// currentSVIDKey is the SVID index key a current index value points at.
func currentSVIDKey(key, data []byte) ([]byte, error) {
	if len(data) != currentLen {
		return nil, fmt.Errorf("decoding %s record %q: %w: %d bytes, want %d", bucketCurrentSVIDs, key, ErrCorrupt, len(data), currentLen)
	}
	return data[currentPrefix:], nil
}

// readCurrent decodes the record a current index value points at.
func readCurrent(svids *bbolt.Bucket, key, data []byte, r *SVIDRecord) error {
	sk, err := currentSVIDKey(key, data)
	if err != nil {
		return err
	}
	rec := svids.Get(sk)
	if rec == nil {
		return fmt.Errorf("decoding %s record %q: %w: it points at svid %x, which is not in the index", bucketCurrentSVIDs, key, ErrCorrupt, sk)
	}
	return decodeSVID(sk, rec, r)
}

func (t *boltTx) ForEachCurrentSVID(fn func(*SVIDRecord) error) error {
	svids := t.tx.Bucket(bucketSVIDs)
	c := t.tx.Bucket(bucketCurrentSVIDs).Cursor()
	for k, data := c.First(); k != nil; k, data = c.Next() {
		r := new(SVIDRecord)
		if err := readCurrent(svids, k, data, r); err != nil {
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
	k := make([]byte, svidKeyLen)
	binary.BigEndian.PutUint64(k, uint64(notAfter.Unix()))
	binary.BigEndian.PutUint64(k[8:], seq)
	return k
}

// svidKeyLen is the length of an SVID index key.
const svidKeyLen = 16

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
		if err := decodeSVID(k, data, r); err != nil {
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
	cur := t.tx.Bucket(bucketCurrentSVIDs)
	var expired, current [][]byte
	c := b.Cursor()
	for k, data := c.First(); k != nil && svidKeyExpiry(k) <= before.Unix(); k, data = c.Next() {
		r := new(SVIDRecord)
		if err := decodeSVID(k, data, r); err != nil {
			return 0, fmt.Errorf("pruning svids: %w", err)
		}
		if !r.NotAfter.Before(before) {
			continue
		}
		expired = append(expired, bytes.Clone(k))
		// The current index points at records of the SVID index: the
		// entry's or node's current SVID goes when its record goes.
		ck := currentKey(r.EntryID, r.NodeID)
		if v := cur.Get(ck); v != nil {
			sk, err := currentSVIDKey(ck, v)
			if err != nil {
				return 0, fmt.Errorf("pruning svids: %w", err)
			}
			if bytes.Equal(sk, k) {
				current = append(current, ck)
			}
		}
	}
	for _, k := range expired {
		if err := b.Delete(k); err != nil {
			return 0, fmt.Errorf("pruning svid %q: %w", k, err)
		}
	}
	for _, k := range current {
		if err := cur.Delete(k); err != nil {
			return 0, fmt.Errorf("pruning current svid %q: %w", k, err)
		}
	}
	return len(expired), nil
}
