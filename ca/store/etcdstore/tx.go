package etcdstore

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/signet-mesh/signet/ca/store"
)

// etx implements store.Tx over a state of the mirror (the small tables)
// and ranges of etcd read at the state's revision (the large tables).
// Writes are buffered in the transaction and committed by Store.commit.
type etx struct {
	s        *Store
	ctx      context.Context // bounds the reads of the large tables
	snap     *state
	writable bool
	// readRev is the revision the large tables are read at: snap.rev, or
	// a later one with the same committed state when snap.rev has been
	// compacted (see rangeAt).
	readRev int64

	// What the transaction changed. Everything below is only set when
	// writable.
	rec              commitRecord // the counters, as moved by the transaction
	revised, audited bool
	w                [numTables]map[string]*item // nil item: deleted
	entryKeys        map[string]string           // overlay of snap.entryKeys; "" is freed
	big              bigWrites
	// journal undoes the writes since a savepoint, newest last.
	journal []func()
	// nOps and nBytes estimate the commit's etcd operations and request
	// bytes, without the commit key.
	nOps, nBytes int
}

// opOverhead is what an operation of a Txn costs on the wire besides its
// key and value (protobuf framing), rounded up.
const opOverhead = 16

var _ store.Tx = (*etx)(nil)

func (s *Store) newTx(ctx context.Context, snap *state, writable bool) *etx {
	t := &etx{s: s, ctx: ctx, snap: snap, writable: writable, readRev: snap.rev, rec: snap.commit}
	if writable {
		for i := range t.w {
			t.w[i] = map[string]*item{}
		}
		t.entryKeys = map[string]string{}
		t.big = bigWrites{
			keys:     map[string]*pack{},
			pre:      map[string]preimage{},
			openSVID: map[int64]string{},
		}
	}
	return t
}

// savepoint is the state of a transaction's buffer between two functions
// of a group commit.
type savepoint struct {
	journal          int
	rec              commitRecord
	revised, audited bool
	nOps, nBytes     int
	openAudit        string
	ranges           int
}

func (t *etx) savepoint() savepoint {
	return savepoint{
		journal: len(t.journal), rec: t.rec, revised: t.revised, audited: t.audited,
		nOps: t.nOps, nBytes: t.nBytes, openAudit: t.big.openAudit, ranges: len(t.big.ranges),
	}
}

// rollbackTo undoes every write since sp.
func (t *etx) rollbackTo(sp savepoint) {
	for i := len(t.journal) - 1; i >= sp.journal; i-- {
		t.journal[i]()
	}
	t.journal = t.journal[:sp.journal]
	t.rec, t.revised, t.audited = sp.rec, sp.revised, sp.audited
	t.nOps, t.nBytes = sp.nOps, sp.nBytes
	t.big.openAudit = sp.openAudit
	t.big.ranges = t.big.ranges[:sp.ranges]
}

// dirty reports whether the transaction has anything to commit.
func (t *etx) dirty() bool {
	return t.writable && (t.nOps > 0 || t.rec != t.snap.commit)
}

// setJ sets m[k] = v and journals the undo.
func setJ[K comparable, V any](t *etx, m map[K]V, k K, v V) {
	old, had := m[k]
	t.journal = append(t.journal, func() {
		if had {
			m[k] = old
		} else {
			delete(m, k)
		}
	})
	m[k] = v
}

// deleteJ deletes m[k] and journals the undo.
func deleteJ[K comparable, V any](t *etx, m map[K]V, k K) {
	old, had := m[k]
	if !had {
		return
	}
	t.journal = append(t.journal, func() { m[k] = old })
	delete(m, k)
}

func (t *etx) checkWritable() error {
	if !t.writable {
		return store.ErrReadOnly
	}
	return nil
}

// lookup returns the record id of tb as the transaction sees it, nil when
// there is none.
func (t *etx) lookup(tb table, id string) *item {
	if it, ok := t.w[tb][id]; ok {
		return it
	}
	return t.snap.tables[tb].items[id]
}

func itemSize(key string, it *item) int {
	if it == nil {
		return len(key) + opOverhead
	}
	return len(key) + len(it.raw) + opOverhead
}

// setItem buffers the write of id in tb (it nil: a delete).
func (t *etx) setItem(tb table, id string, it *item) {
	key := t.s.keys.record(tb, id)
	if old, had := t.w[tb][id]; had {
		t.nBytes -= itemSize(key, old)
	} else {
		t.nOps++
	}
	t.nBytes += itemSize(key, it)
	setJ(t, t.w[tb], id, it)
}

// put encodes v and buffers it as record id of tb.
func (t *etx) put(tb table, id string, v any) error {
	if id == "" {
		return errors.New("key required")
	}
	it, err := encodeItem(tb, id, v)
	if err != nil {
		return err
	}
	t.setItem(tb, id, it)
	return nil
}

// remove buffers the delete of id, ErrNotFound when there is none.
func (t *etx) remove(tb table, id string) error {
	if t.lookup(tb, id) == nil {
		return store.ErrNotFound
	}
	t.setItem(tb, id, nil)
	return nil
}

// get returns a clone of record id of tb.
func get[T any](t *etx, tb table, id string, clone func(*T) *T) (*T, error) {
	it := t.lookup(tb, id)
	if it == nil {
		return nil, store.ErrNotFound
	}
	if it.err != nil {
		return nil, it.err
	}
	return clone(it.val.(*T)), nil
}

// ids returns the ids of tb the transaction sees, in key order.
func (t *etx) ids(tb table) []string {
	base := t.snap.tables[tb].keys()
	if len(t.w[tb]) == 0 {
		return base
	}
	var out []string
	for _, id := range base {
		if it, ok := t.w[tb][id]; !ok || it != nil {
			out = append(out, id)
		}
	}
	for id, it := range t.w[tb] {
		if _, inBase := t.snap.tables[tb].items[id]; it != nil && !inBase {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// list returns clones of every record of tb, in key order.
func list[T any](t *etx, tb table, clone func(*T) *T) ([]*T, error) {
	var out []*T
	for _, id := range t.ids(tb) {
		it := t.lookup(tb, id)
		if it.err != nil {
			return nil, it.err
		}
		out = append(out, clone(it.val.(*T)))
	}
	return out, nil
}

func (t *etx) GetAuthority(id string) (*store.Authority, error) {
	a, err := get(t, tAuthorities, id, cloneAuthority)
	if err != nil {
		return nil, fmt.Errorf("getting authority %q: %w", id, err)
	}
	return a, nil
}

func (t *etx) PutAuthority(a *store.Authority) error {
	if err := t.checkWritable(); err != nil {
		return fmt.Errorf("putting authority %q: %w", a.ID, err)
	}
	if err := t.put(tAuthorities, a.ID, a); err != nil {
		return fmt.Errorf("putting authority %q: %w", a.ID, err)
	}
	return nil
}

func (t *etx) ListAuthorities() ([]*store.Authority, error) {
	as, err := list(t, tAuthorities, cloneAuthority)
	if err != nil {
		return nil, fmt.Errorf("listing authorities: %w", err)
	}
	slices.SortFunc(as, func(a, b *store.Authority) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID, b.ID))
	})
	return as, nil
}

// lookupEntryKey returns the ID of the entry with that unique key, "" when
// there is none.
func (t *etx) lookupEntryKey(k string) string {
	if id, ok := t.entryKeys[k]; ok {
		return id
	}
	return t.snap.entryKeys[k]
}

func (t *etx) CreateEntry(e *store.Entry) error {
	if err := t.createEntry(e); err != nil {
		return fmt.Errorf("creating entry %q: %w", e.ID, err)
	}
	return nil
}

func (t *etx) createEntry(e *store.Entry) error {
	if err := t.checkWritable(); err != nil {
		return err
	}
	if e.ID == "" {
		return errors.New("entry id is empty")
	}
	if t.lookup(tEntries, e.ID) != nil {
		return store.ErrAlreadyExists
	}
	n := store.NormalizeEntry(e)
	k := entryUniqueKey(n)
	if other := t.lookupEntryKey(k); other != "" {
		return fmt.Errorf("entry %q has the same SPIFFE ID, parent ID and selectors: %w", other, store.ErrAlreadyExists)
	}
	if err := t.put(tEntries, n.ID, n); err != nil {
		return err
	}
	setJ(t, t.entryKeys, k, n.ID)
	return nil
}

// storedEntry returns the entry id as stored (not a clone: do not modify).
func (t *etx) storedEntry(id string) (*store.Entry, error) {
	it := t.lookup(tEntries, id)
	if it == nil {
		return nil, store.ErrNotFound
	}
	if it.err != nil {
		return nil, it.err
	}
	return it.val.(*store.Entry), nil
}

func (t *etx) UpdateEntry(e *store.Entry) error {
	if err := t.updateEntry(e); err != nil {
		return fmt.Errorf("updating entry %q: %w", e.ID, err)
	}
	return nil
}

func (t *etx) updateEntry(e *store.Entry) error {
	if err := t.checkWritable(); err != nil {
		return err
	}
	old, err := t.storedEntry(e.ID)
	if err != nil {
		return err
	}
	n := store.NormalizeEntry(e)
	k := entryUniqueKey(n)
	if other := t.lookupEntryKey(k); other != "" && other != e.ID {
		return fmt.Errorf("entry %q has the same SPIFFE ID, parent ID and selectors: %w", other, store.ErrAlreadyExists)
	}
	if err := t.put(tEntries, n.ID, n); err != nil {
		return err
	}
	setJ(t, t.entryKeys, entryUniqueKey(old), "")
	setJ(t, t.entryKeys, k, n.ID)
	return nil
}

func (t *etx) GetEntry(id string) (*store.Entry, error) {
	e, err := get(t, tEntries, id, cloneEntry)
	if err != nil {
		return nil, fmt.Errorf("getting entry %q: %w", id, err)
	}
	return e, nil
}

func (t *etx) DeleteEntry(id string) error {
	if err := t.deleteEntry(id); err != nil {
		return fmt.Errorf("deleting entry %q: %w", id, err)
	}
	return nil
}

func (t *etx) deleteEntry(id string) error {
	if err := t.checkWritable(); err != nil {
		return err
	}
	old, err := t.storedEntry(id)
	if err != nil {
		return err
	}
	t.setItem(tEntries, id, nil)
	setJ(t, t.entryKeys, entryUniqueKey(old), "")
	return nil
}

func (t *etx) ListEntries(f store.EntryFilter) ([]*store.Entry, error) {
	var ids []string
	if f.ParentID == "" {
		ids = t.ids(tEntries)
	} else {
		ids = t.idsOfParent(f.ParentID)
	}
	entries, err := listIDs(t, tEntries, ids, f.After, f.Limit, cloneEntry, func(e *store.Entry) bool {
		return (f.ParentID == "" || e.ParentID == f.ParentID) && (f.SPIFFEID == "" || e.SPIFFEID == f.SPIFFEID)
	})
	if err != nil {
		return nil, fmt.Errorf("listing entries: %w", err)
	}
	return entries, nil
}

// idsOfParent returns the IDs of one parent's entries through the parent
// index (and of the entries the transaction wrote, whatever their parent:
// callers check it), in ID order.
func (t *etx) idsOfParent(parentID string) []string {
	ids := slices.Collect(maps.Keys(t.snap.byParent[parentID]))
	for id := range t.w[tEntries] {
		if _, ok := t.snap.byParent[parentID][id]; !ok {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// listIDs returns clones of the records of tb under ids (sorted) after
// after, that keep accepts, until it holds limit (all when limit <= 0):
// only the page is read and cloned.
func listIDs[T any](t *etx, tb table, ids []string, after string, limit int, clone func(*T) *T, keep func(*T) bool) ([]*T, error) {
	i := 0
	if after != "" {
		i, _ = slices.BinarySearch(ids, after)
		if i < len(ids) && ids[i] == after {
			i++
		}
	}
	var out []*T
	for _, id := range ids[i:] {
		if limit > 0 && len(out) >= limit {
			break
		}
		it := t.lookup(tb, id)
		if it == nil {
			continue
		}
		if it.err != nil {
			return nil, it.err
		}
		if v := it.val.(*T); keep == nil || keep(v) {
			out = append(out, clone(v))
		}
	}
	return out, nil
}

func (t *etx) ListNodesAfter(after string, limit int) ([]*store.Node, error) {
	ns, err := listIDs(t, tNodes, t.ids(tNodes), after, limit, cloneNode, nil)
	if err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	return ns, nil
}

func (t *etx) ListEvictedNodesAfter(after string, limit int) ([]*store.Node, error) {
	ns, err := listIDs(t, tEvicted, t.ids(tEvicted), after, limit, cloneNode, nil)
	if err != nil {
		return nil, fmt.Errorf("listing evicted nodes: %w", err)
	}
	return ns, nil
}

func (t *etx) PutNode(n *store.Node) error {
	if err := t.checkWritable(); err != nil {
		return fmt.Errorf("putting node %q: %w", n.SPIFFEID, err)
	}
	if err := t.put(tNodes, n.SPIFFEID, n); err != nil {
		return fmt.Errorf("putting node %q: %w", n.SPIFFEID, err)
	}
	if t.lookup(tEvicted, n.SPIFFEID) != nil {
		t.setItem(tEvicted, n.SPIFFEID, nil)
	}
	return nil
}

func (t *etx) EvictNode(spiffeID string, at time.Time) (*store.Node, error) {
	if err := t.checkWritable(); err != nil {
		return nil, fmt.Errorf("evicting node %q: %w", spiffeID, err)
	}
	n, err := get(t, tNodes, spiffeID, cloneNode)
	if err != nil {
		return nil, fmt.Errorf("evicting node %q: %w", spiffeID, err)
	}
	n.EvictedAt = at
	if err := t.put(tEvicted, spiffeID, n); err != nil {
		return nil, fmt.Errorf("evicting node %q: %w", spiffeID, err)
	}
	t.setItem(tNodes, spiffeID, nil)
	return cloneNode(n), nil
}

func (t *etx) GetEvictedNode(spiffeID string) (*store.Node, error) {
	n, err := get(t, tEvicted, spiffeID, cloneNode)
	if err != nil {
		return nil, fmt.Errorf("getting evicted node %q: %w", spiffeID, err)
	}
	return n, nil
}

func (t *etx) ListEvictedNodes() ([]*store.Node, error) {
	ns, err := list(t, tEvicted, cloneNode)
	if err != nil {
		return nil, fmt.Errorf("listing evicted nodes: %w", err)
	}
	return ns, nil
}

func (t *etx) PruneEvictedNodes(before time.Time) (int, error) {
	if err := t.checkWritable(); err != nil {
		return 0, fmt.Errorf("pruning evicted nodes: %w", err)
	}
	ns, err := t.ListEvictedNodes()
	if err != nil {
		return 0, fmt.Errorf("pruning evicted nodes: %w", err)
	}
	n := 0
	for _, node := range ns {
		if node.ExpiresAt.Before(before) {
			t.setItem(tEvicted, node.SPIFFEID, nil)
			n++
		}
	}
	return n, nil
}

func (t *etx) GetNode(spiffeID string) (*store.Node, error) {
	n, err := get(t, tNodes, spiffeID, cloneNode)
	if err != nil {
		return nil, fmt.Errorf("getting node %q: %w", spiffeID, err)
	}
	return n, nil
}

func (t *etx) DeleteNode(spiffeID string) error {
	if err := t.checkWritable(); err != nil {
		return fmt.Errorf("deleting node %q: %w", spiffeID, err)
	}
	if err := t.remove(tNodes, spiffeID); err != nil {
		return fmt.Errorf("deleting node %q: %w", spiffeID, err)
	}
	return nil
}

func (t *etx) ListNodes() ([]*store.Node, error) {
	ns, err := list(t, tNodes, cloneNode)
	if err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	return ns, nil
}

func (t *etx) PutJoinToken(jt *store.JoinToken) error {
	if err := t.checkWritable(); err != nil {
		return fmt.Errorf("putting join token %q: %w", jt.ID, err)
	}
	if t.lookup(tTokens, jt.Hash) != nil {
		return fmt.Errorf("putting join token %q: %w", jt.ID, store.ErrAlreadyExists)
	}
	if err := t.put(tTokens, jt.Hash, jt); err != nil {
		return fmt.Errorf("putting join token %q: %w", jt.ID, err)
	}
	return nil
}

func (t *etx) GetJoinToken(hash string) (*store.JoinToken, error) {
	jt, err := get(t, tTokens, hash, cloneToken)
	if err != nil {
		// The hash is a credential's digest: errors name only its start.
		return nil, fmt.Errorf("getting join token %.8s...: %w", hash, err)
	}
	return jt, nil
}

func (t *etx) TakeJoinToken(hash string, at time.Time) (*store.JoinToken, error) {
	// The hash is a credential's digest: errors name only its start.
	if err := t.checkWritable(); err != nil {
		return nil, fmt.Errorf("taking join token %.8s...: %w", hash, err)
	}
	jt, err := get(t, tTokens, hash, cloneToken)
	if err == nil && !jt.UsedAt.IsZero() {
		err = store.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("taking join token %.8s...: %w", hash, err)
	}
	jt.UsedAt = at
	if err := t.put(tTokens, hash, jt); err != nil {
		return nil, fmt.Errorf("taking join token %q: %w", jt.ID, err)
	}
	return cloneToken(jt), nil
}

func (t *etx) DeleteJoinToken(hash string) error {
	if err := t.checkWritable(); err != nil {
		return fmt.Errorf("deleting join token %.8s...: %w", hash, err)
	}
	jt, err := get(t, tTokens, hash, cloneToken)
	if err == nil && !jt.UsedAt.IsZero() {
		err = store.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("deleting join token %.8s...: %w", hash, err)
	}
	t.setItem(tTokens, hash, nil)
	return nil
}

func (t *etx) ListJoinTokens() ([]*store.JoinToken, error) {
	ts, err := list(t, tTokens, cloneToken)
	if err != nil {
		return nil, fmt.Errorf("listing join tokens: %w", err)
	}
	return slices.DeleteFunc(ts, func(jt *store.JoinToken) bool { return !jt.UsedAt.IsZero() }), nil
}

func (t *etx) PruneJoinTokens(before time.Time) (int, error) {
	if err := t.checkWritable(); err != nil {
		return 0, fmt.Errorf("pruning join tokens: %w", err)
	}
	ts, err := list(t, tTokens, cloneToken)
	if err != nil {
		return 0, fmt.Errorf("pruning join tokens: %w", err)
	}
	n := 0
	for _, jt := range ts {
		if jt.ExpiresAt.Before(before) {
			t.setItem(tTokens, jt.Hash, nil)
			n++
		}
	}
	return n, nil
}

func (t *etx) NextRevision() (int64, error) {
	if err := t.checkWritable(); err != nil {
		return 0, fmt.Errorf("taking next revision: %w", err)
	}
	t.rec.Revision++
	t.revised = true
	return t.rec.Revision, nil
}

func (t *etx) Revision() (int64, error) { return t.rec.Revision, nil }

func (t *etx) GetMeta(key string) ([]byte, error) {
	it := t.lookup(tMeta, key)
	if it == nil || store.IsReservedMeta(key) {
		return nil, fmt.Errorf("getting meta %q: %w", key, store.ErrNotFound)
	}
	return bytes.Clone(it.raw), nil
}

func (t *etx) PutMeta(key string, value []byte) error {
	if err := t.checkWritable(); err != nil {
		return fmt.Errorf("putting meta %q: %w", key, err)
	}
	if store.IsReservedMeta(key) {
		return fmt.Errorf("putting meta %q: the key is reserved for the store itself", key)
	}
	if key == "" {
		return fmt.Errorf("putting meta %q: key required", key)
	}
	v := bytes.Clone(value)
	if v == nil {
		v = []byte{}
	}
	t.setItem(tMeta, key, &item{raw: v, val: v})
	return nil
}

func (t *etx) PutMTLSPolicy(p *store.MTLSPolicy) error {
	if err := t.checkWritable(); err != nil {
		return fmt.Errorf("putting mtls policy %q: %w", p.ID, err)
	}
	if p.ID == "" {
		return errors.New("putting mtls policy: id is empty")
	}
	if err := t.put(tMTLS, p.ID, p); err != nil {
		return fmt.Errorf("putting mtls policy %q: %w", p.ID, err)
	}
	return nil
}

func (t *etx) GetMTLSPolicy(id string) (*store.MTLSPolicy, error) {
	p, err := get(t, tMTLS, id, clonePolicy)
	if err != nil {
		return nil, fmt.Errorf("getting mtls policy %q: %w", id, err)
	}
	return p, nil
}

func (t *etx) DeleteMTLSPolicy(id string) error {
	if err := t.checkWritable(); err != nil {
		return fmt.Errorf("deleting mtls policy %q: %w", id, err)
	}
	if err := t.remove(tMTLS, id); err != nil {
		return fmt.Errorf("deleting mtls policy %q: %w", id, err)
	}
	return nil
}

func (t *etx) ListMTLSPolicies() ([]*store.MTLSPolicy, error) {
	ps, err := list(t, tMTLS, clonePolicy)
	if err != nil {
		return nil, fmt.Errorf("listing mtls policies: %w", err)
	}
	return ps, nil
}
