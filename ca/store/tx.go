package store

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.etcd.io/bbolt"
)

// boltTx implements Tx over one bbolt transaction.
type boltTx struct {
	tx *bbolt.Tx
	// revised records that NextRevision was called, so the commit wakes
	// subscribers.
	revised bool
	// audited records that AppendAudit was called, so the commit wakes
	// audit subscribers.
	audited bool
	// scope is what the writes concern, for the commit's Change.
	scope changeScope
}

var _ Tx = (*boltTx)(nil)

// writable fails writes in a View with ErrReadOnly before they touch
// anything, so a multi-bucket write never half happens.
func (t *boltTx) writable() error {
	if !t.tx.Writable() {
		return ErrReadOnly
	}
	return nil
}

// get returns the record of type T under key, ErrNotFound when there is
// none.
func get[T any](t *boltTx, bucket []byte, key string) (*T, error) {
	data := t.tx.Bucket(bucket).Get([]byte(key))
	if data == nil {
		return nil, ErrNotFound
	}
	v := new(T)
	if err := decodeRecord(bucket, []byte(key), data, v); err != nil {
		return nil, err
	}
	return v, nil
}

// put encodes v and stores it under key, refusing a record over
// MaxRecordBytes.
func put(t *boltTx, bucket []byte, key string, v any) error {
	data, err := encodeRecord(v)
	if err != nil {
		return err
	}
	if len(data) > MaxRecordBytes {
		return fmt.Errorf("%w: a %d-byte %s record, the limit is %d", ErrTooLarge, len(data), bucket, MaxRecordBytes)
	}
	return t.tx.Bucket(bucket).Put([]byte(key), data)
}

// list decodes every record of bucket, in key order.
func list[T any](t *boltTx, bucket []byte) ([]*T, error) {
	var out []*T
	err := t.tx.Bucket(bucket).ForEach(func(k, data []byte) error {
		v := new(T)
		if err := decodeRecord(bucket, k, data, v); err != nil {
			return err
		}
		out = append(out, v)
		return nil
	})
	return out, err
}

// create stores v under key unless the key is taken.
func create(t *boltTx, bucket []byte, key string, v any) error {
	if t.tx.Bucket(bucket).Get([]byte(key)) != nil {
		return ErrAlreadyExists
	}
	return put(t, bucket, key, v)
}

// remove deletes key, ErrNotFound when there is none.
func remove(t *boltTx, bucket []byte, key string) error {
	b := t.tx.Bucket(bucket)
	if b.Get([]byte(key)) == nil {
		return ErrNotFound
	}
	return b.Delete([]byte(key))
}

func (t *boltTx) GetAuthority(id string) (*Authority, error) {
	a, err := get[Authority](t, bucketAuthorities, id)
	if err != nil {
		return nil, fmt.Errorf("getting authority %q: %w", id, err)
	}
	return a, nil
}

func (t *boltTx) PutAuthority(a *Authority) error {
	if err := t.writable(); err != nil {
		return fmt.Errorf("putting authority %q: %w", a.ID, err)
	}
	t.scope.touchAll()
	if err := put(t, bucketAuthorities, a.ID, a); err != nil {
		return fmt.Errorf("putting authority %q: %w", a.ID, err)
	}
	return nil
}

func (t *boltTx) ListAuthorities() ([]*Authority, error) {
	as, err := list[Authority](t, bucketAuthorities)
	if err != nil {
		return nil, fmt.Errorf("listing authorities: %w", err)
	}
	slices.SortFunc(as, func(a, b *Authority) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID, b.ID))
	})
	return as, nil
}

func (t *boltTx) CreateEntry(e *Entry) error {
	if err := t.createEntry(e); err != nil {
		return fmt.Errorf("creating entry %q: %w", e.ID, err)
	}
	return nil
}

func (t *boltTx) createEntry(e *Entry) error {
	if err := t.writable(); err != nil {
		return err
	}
	if e.ID == "" {
		return errors.New("entry id is empty")
	}
	if t.tx.Bucket(bucketEntries).Get([]byte(e.ID)) != nil {
		return ErrAlreadyExists
	}
	n := normalizeEntry(e)
	key := entryKey(n)
	if other := t.tx.Bucket(bucketEntryKeys).Get(key); other != nil {
		return fmt.Errorf("entry %q has the same SPIFFE ID, parent ID and selectors: %w", other, ErrAlreadyExists)
	}
	return t.putEntry(n, key)
}

// putEntry writes n and its two index keys.
func (t *boltTx) putEntry(n *Entry, key []byte) error {
	t.scope.touch(ChangeEntries, n.ParentID)
	if err := put(t, bucketEntries, n.ID, n); err != nil {
		return err
	}
	if err := t.tx.Bucket(bucketEntryKeys).Put(key, []byte(n.ID)); err != nil {
		return fmt.Errorf("indexing entry: %w", err)
	}
	if err := t.tx.Bucket(bucketEntriesByParent).Put(parentKey(n), nil); err != nil {
		return fmt.Errorf("indexing entry by parent: %w", err)
	}
	return nil
}

// deleteEntryIndexes removes the index keys of old, as stored.
func (t *boltTx) deleteEntryIndexes(old *Entry) error {
	t.scope.touch(ChangeEntries, old.ParentID)
	if err := t.tx.Bucket(bucketEntryKeys).Delete(entryKey(old)); err != nil {
		return fmt.Errorf("unindexing entry: %w", err)
	}
	if err := t.tx.Bucket(bucketEntriesByParent).Delete(parentKey(old)); err != nil {
		return fmt.Errorf("unindexing entry by parent: %w", err)
	}
	return nil
}

func (t *boltTx) UpdateEntry(e *Entry) error {
	if err := t.updateEntry(e); err != nil {
		return fmt.Errorf("updating entry %q: %w", e.ID, err)
	}
	return nil
}

func (t *boltTx) updateEntry(e *Entry) error {
	if err := t.writable(); err != nil {
		return err
	}
	old, err := get[Entry](t, bucketEntries, e.ID)
	if err != nil {
		return err
	}
	n := normalizeEntry(e)
	key := entryKey(n)
	if other := t.tx.Bucket(bucketEntryKeys).Get(key); other != nil && string(other) != e.ID {
		return fmt.Errorf("entry %q has the same SPIFFE ID, parent ID and selectors: %w", other, ErrAlreadyExists)
	}
	if err := t.deleteEntryIndexes(old); err != nil {
		return err
	}
	return t.putEntry(n, key)
}

func (t *boltTx) GetEntry(id string) (*Entry, error) {
	e, err := getCached(t, entryCache, bucketEntries, id)
	if err != nil {
		return nil, fmt.Errorf("getting entry %q: %w", id, err)
	}
	return e, nil
}

func (t *boltTx) DeleteEntry(id string) error {
	if err := t.deleteEntry(id); err != nil {
		return fmt.Errorf("deleting entry %q: %w", id, err)
	}
	return nil
}

func (t *boltTx) deleteEntry(id string) error {
	if err := t.writable(); err != nil {
		return err
	}
	old, err := get[Entry](t, bucketEntries, id)
	if err != nil {
		return err
	}
	if err := t.deleteEntryIndexes(old); err != nil {
		return err
	}
	return t.tx.Bucket(bucketEntries).Delete([]byte(id))
}

func (t *boltTx) ListEntries(f EntryFilter) ([]*Entry, error) {
	var (
		entries []*Entry
		err     error
	)
	if f.ParentID == "" {
		entries, err = listAfter(t, bucketEntries, f.After, f.Limit, func(e *Entry) bool { return f.SPIFFEID == "" || e.SPIFFEID == f.SPIFFEID })
	} else {
		entries, err = t.entriesOfParent(f)
	}
	if err != nil {
		return nil, fmt.Errorf("listing entries: %w", err)
	}
	return entries, nil
}

// listAfter decodes the records of bucket with a key after after (from
// the first when it is empty), in key order, that keep accepts, until it
// holds limit (all when limit <= 0).
func listAfter[T any](t *boltTx, bucket []byte, after string, limit int, keep func(*T) bool) ([]*T, error) {
	var out []*T
	c := t.tx.Bucket(bucket).Cursor()
	k, data := c.First()
	if after != "" {
		k, data = c.Seek([]byte(after))
		if k != nil && string(k) == after {
			k, data = c.Next()
		}
	}
	for ; k != nil && (limit <= 0 || len(out) < limit); k, data = c.Next() {
		v := new(T)
		if err := decodeRecord(bucket, k, data, v); err != nil {
			return nil, err
		}
		if keep == nil || keep(v) {
			out = append(out, v)
		}
	}
	return out, nil
}

// entriesOfParent reads the entries of f's parent through the parent
// index, in ID order (the order of the index keys), from f.After on and up
// to f.Limit.
func (t *boltTx) entriesOfParent(f EntryFilter) ([]*Entry, error) {
	parentID := f.ParentID
	prefix := parentPrefix(parentID)
	var out []*Entry
	c := t.tx.Bucket(bucketEntriesByParent).Cursor()
	start := prefix
	if f.After != "" {
		start = append(bytes.Clone(prefix), f.After...)
		start = append(start, 0) // the key right after f.After's
	}
	for k, _ := c.Seek(start); k != nil && bytes.HasPrefix(k, prefix) && (f.Limit <= 0 || len(out) < f.Limit); k, _ = c.Next() {
		id := string(k[len(prefix):])
		e, err := get[Entry](t, bucketEntries, id)
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("parent index names missing entry %q: %w", id, ErrCorrupt)
		}
		if err != nil {
			return nil, err
		}
		if e.ParentID == parentID && (f.SPIFFEID == "" || e.SPIFFEID == f.SPIFFEID) {
			out = append(out, e)
		}
	}
	return out, nil
}

func (t *boltTx) PutNode(n *Node) error {
	if err := t.writable(); err != nil {
		return fmt.Errorf("putting node %q: %w", n.SPIFFEID, err)
	}
	// A write of the node's status only (ReportStatus, a renewal)
	// concerns no stream: its agent's is not woken to read again.
	old, err := get[Node](t, bucketNodes, n.SPIFFEID)
	switch {
	case err == nil && NodeWriteKind(old, n) == ChangeNodeStatus:
		t.scope.touchStatus()
	case err == nil || errors.Is(err, ErrNotFound):
		t.scope.touch(ChangeNodes, n.SPIFFEID)
	default:
		return fmt.Errorf("putting node %q: %w", n.SPIFFEID, err)
	}
	if err := put(t, bucketNodes, n.SPIFFEID, n); err != nil {
		return fmt.Errorf("putting node %q: %w", n.SPIFFEID, err)
	}
	if err := t.tx.Bucket(bucketEvictedNodes).Delete([]byte(n.SPIFFEID)); err != nil {
		return fmt.Errorf("putting node %q: dropping its eviction record: %w", n.SPIFFEID, err)
	}
	return nil
}

func (t *boltTx) EvictNode(spiffeID string, at time.Time) (*Node, error) {
	if err := t.writable(); err != nil {
		return nil, fmt.Errorf("evicting node %q: %w", spiffeID, err)
	}
	t.scope.touch(ChangeNodes, spiffeID)
	n, err := get[Node](t, bucketNodes, spiffeID)
	if err != nil {
		return nil, fmt.Errorf("evicting node %q: %w", spiffeID, err)
	}
	n.EvictedAt = at
	if err := put(t, bucketEvictedNodes, spiffeID, n); err != nil {
		return nil, fmt.Errorf("evicting node %q: %w", spiffeID, err)
	}
	if err := t.tx.Bucket(bucketNodes).Delete([]byte(spiffeID)); err != nil {
		return nil, fmt.Errorf("evicting node %q: %w", spiffeID, err)
	}
	return n, nil
}

func (t *boltTx) ListNodesAfter(after string, limit int) ([]*Node, error) {
	ns, err := listAfter[Node](t, bucketNodes, after, limit, nil)
	if err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	return ns, nil
}

func (t *boltTx) ListEvictedNodesAfter(after string, limit int) ([]*Node, error) {
	ns, err := listAfter[Node](t, bucketEvictedNodes, after, limit, nil)
	if err != nil {
		return nil, fmt.Errorf("listing evicted nodes: %w", err)
	}
	return ns, nil
}

func (t *boltTx) GetEvictedNode(spiffeID string) (*Node, error) {
	n, err := get[Node](t, bucketEvictedNodes, spiffeID)
	if err != nil {
		return nil, fmt.Errorf("getting evicted node %q: %w", spiffeID, err)
	}
	return n, nil
}

func (t *boltTx) ListEvictedNodes() ([]*Node, error) {
	ns, err := list[Node](t, bucketEvictedNodes)
	if err != nil {
		return nil, fmt.Errorf("listing evicted nodes: %w", err)
	}
	return ns, nil
}

func (t *boltTx) PruneEvictedNodes(before time.Time) (int, error) {
	if err := t.writable(); err != nil {
		return 0, fmt.Errorf("pruning evicted nodes: %w", err)
	}
	ns, err := t.ListEvictedNodes()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, node := range ns {
		if node.ExpiresAt.Before(before) {
			if err := t.tx.Bucket(bucketEvictedNodes).Delete([]byte(node.SPIFFEID)); err != nil {
				return n, fmt.Errorf("pruning evicted node %q: %w", node.SPIFFEID, err)
			}
			n++
		}
	}
	return n, nil
}

func (t *boltTx) GetNode(spiffeID string) (*Node, error) {
	n, err := getCached(t, nodeCache, bucketNodes, spiffeID)
	if err != nil {
		return nil, fmt.Errorf("getting node %q: %w", spiffeID, err)
	}
	return n, nil
}

func (t *boltTx) DeleteNode(spiffeID string) error {
	if err := t.writable(); err != nil {
		return fmt.Errorf("deleting node %q: %w", spiffeID, err)
	}
	t.scope.touch(ChangeNodes, spiffeID)
	if err := remove(t, bucketNodes, spiffeID); err != nil {
		return fmt.Errorf("deleting node %q: %w", spiffeID, err)
	}
	return nil
}

func (t *boltTx) ListNodes() ([]*Node, error) {
	ns, err := list[Node](t, bucketNodes)
	if err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	return ns, nil
}

func (t *boltTx) PutJoinToken(jt *JoinToken) error {
	if err := t.writable(); err != nil {
		return fmt.Errorf("putting join token %q: %w", jt.ID, err)
	}
	if err := create(t, bucketJoinTokens, jt.Hash, jt); err != nil {
		return fmt.Errorf("putting join token %q: %w", jt.ID, err)
	}
	return nil
}

func (t *boltTx) GetJoinToken(hash string) (*JoinToken, error) {
	jt, err := get[JoinToken](t, bucketJoinTokens, hash)
	if err != nil {
		// The hash is a credential's digest: errors name only its start.
		return nil, fmt.Errorf("getting join token %.8s...: %w", hash, err)
	}
	return jt, nil
}

func (t *boltTx) TakeJoinToken(hash string, at time.Time) (*JoinToken, error) {
	// The hash is a credential's digest: errors name only its start.
	if err := t.writable(); err != nil {
		return nil, fmt.Errorf("taking join token %.8s...: %w", hash, err)
	}
	jt, err := get[JoinToken](t, bucketJoinTokens, hash)
	if err == nil && !jt.UsedAt.IsZero() {
		err = ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("taking join token %.8s...: %w", hash, err)
	}
	used := *jt
	used.UsedAt = at
	if err := put(t, bucketJoinTokens, hash, &used); err != nil {
		return nil, fmt.Errorf("taking join token %q: %w", jt.ID, err)
	}
	return &used, nil
}

func (t *boltTx) DeleteJoinToken(hash string) error {
	if err := t.writable(); err != nil {
		return fmt.Errorf("deleting join token %.8s...: %w", hash, err)
	}
	jt, err := get[JoinToken](t, bucketJoinTokens, hash)
	if err == nil && !jt.UsedAt.IsZero() {
		err = ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("deleting join token %.8s...: %w", hash, err)
	}
	if err := t.tx.Bucket(bucketJoinTokens).Delete([]byte(hash)); err != nil {
		return fmt.Errorf("deleting join token %q: %w", jt.ID, err)
	}
	return nil
}

func (t *boltTx) ListJoinTokens() ([]*JoinToken, error) {
	ts, err := list[JoinToken](t, bucketJoinTokens)
	if err != nil {
		return nil, fmt.Errorf("listing join tokens: %w", err)
	}
	return slices.DeleteFunc(ts, func(jt *JoinToken) bool { return !jt.UsedAt.IsZero() }), nil
}

func (t *boltTx) PruneJoinTokens(before time.Time) (int, error) {
	if err := t.writable(); err != nil {
		return 0, fmt.Errorf("pruning join tokens: %w", err)
	}
	ts, err := list[JoinToken](t, bucketJoinTokens)
	if err != nil {
		return 0, fmt.Errorf("pruning join tokens: %w", err)
	}
	n := 0
	for _, jt := range ts {
		if jt.ExpiresAt.Before(before) {
			if err := t.tx.Bucket(bucketJoinTokens).Delete([]byte(jt.Hash)); err != nil {
				return n, fmt.Errorf("pruning join token %q: %w", jt.ID, err)
			}
			n++
		}
	}
	return n, nil
}

func (t *boltTx) NextRevision() (int64, error) {
	if err := t.writable(); err != nil {
		return 0, fmt.Errorf("taking next revision: %w", err)
	}
	rev, err := t.Revision()
	if err != nil {
		return 0, err
	}
	rev++
	if err := t.tx.Bucket(bucketMeta).Put([]byte(metaRevision), encodeUint64(uint64(rev))); err != nil {
		return 0, fmt.Errorf("taking next revision: %w", err)
	}
	t.revised = true
	return rev, nil
}

func (t *boltTx) Revision() (int64, error) {
	v, err := decodeUint64(t.tx.Bucket(bucketMeta).Get([]byte(metaRevision)))
	if err != nil {
		return 0, fmt.Errorf("reading revision: %w", err)
	}
	return int64(v), nil
}

func (t *boltTx) GetMeta(key string) ([]byte, error) {
	v := t.tx.Bucket(bucketMeta).Get([]byte(key))
	if v == nil {
		return nil, fmt.Errorf("getting meta %q: %w", key, ErrNotFound)
	}
	return bytes.Clone(v), nil
}

func (t *boltTx) PutMeta(key string, value []byte) error {
	if err := t.writable(); err != nil {
		return fmt.Errorf("putting meta %q: %w", key, err)
	}
	if key == metaSchemaVersion || key == metaRevision || key == metaAuditHead {
		return fmt.Errorf("putting meta %q: the key is reserved for the store itself", key)
	}
	t.scope.touchAll()
	// bbolt keeps the value slice until commit; the caller may reuse it.
	if err := t.tx.Bucket(bucketMeta).Put([]byte(key), bytes.Clone(value)); err != nil {
		return fmt.Errorf("putting meta %q: %w", key, err)
	}
	return nil
}
