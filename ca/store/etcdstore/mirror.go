package etcdstore

import (
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/signet-mesh/signet/ca/store"
)

// state is the committed state of the mirrored tables at one revision. It
// is immutable: a commit makes a new state that shares the tables it did
// not change, so readers hold a state without locks.
type state struct {
	// rev is the mod revision of the commit key: the etcd revision of
	// this committed state, which reads of the large tables use.
	rev    int64
	commit commitRecord // Intent is always nil here
	tables [numTables]*tableSnap
	// entryKeys maps entryUniqueKey to the entry's ID; byParent lists the
	// IDs of each parent's entries.
	entryKeys map[string]string
	byParent  map[string]map[string]struct{}
}

// tableSnap is one table of a state.
type tableSnap struct {
	items  map[string]*item
	once   sync.Once
	sorted []string // the ids in key order, made on first use
}

func (t *tableSnap) keys() []string {
	t.once.Do(func() {
		t.sorted = slices.Sorted(maps.Keys(t.items))
	})
	return t.sorted
}

func emptyState() *state {
	s := &state{entryKeys: map[string]string{}, byParent: map[string]map[string]struct{}{}}
	for i := range s.tables {
		s.tables[i] = &tableSnap{items: map[string]*item{}}
	}
	return s
}

// with returns the state after changes (nil item: deleted) at rev.
func (s *state) with(rev int64, rec commitRecord, changes *[numTables]map[string]*item) *state {
	n := *s
	n.rev, n.commit = rev, rec
	n.commit.Intent = nil
	for t := range numTables {
		ch := changes[t]
		if len(ch) == 0 {
			continue
		}
		items := maps.Clone(s.tables[t].items)
		if table(t) == tEntries {
			n.entryKeys = maps.Clone(s.entryKeys)
			n.byParent = maps.Clone(s.byParent)
		}
		copied := map[string]bool{} // parents whose ID set n owns
		for id, it := range ch {
			if table(t) == tEntries {
				n.unindexEntry(items[id], id, copied)
				n.indexEntry(it, id, copied)
			}
			if it == nil {
				delete(items, id)
			} else {
				items[id] = it
			}
		}
		n.tables[t] = &tableSnap{items: items}
	}
	return &n
}

func (n *state) unindexEntry(old *item, id string, copied map[string]bool) {
	if old == nil || old.err != nil {
		return
	}
	e := old.val.(*store.Entry)
	if n.entryKeys[entryUniqueKey(e)] == id {
		delete(n.entryKeys, entryUniqueKey(e))
	}
	ids := n.parentIDs(e.ParentID, copied)
	delete(ids, id)
	if len(ids) == 0 {
		delete(n.byParent, e.ParentID)
	}
}

func (n *state) indexEntry(it *item, id string, copied map[string]bool) {
	if it == nil || it.err != nil {
		return
	}
	e := it.val.(*store.Entry)
	n.entryKeys[entryUniqueKey(e)] = id
	n.parentIDs(e.ParentID, copied)[id] = struct{}{}
}

// parentIDs returns the ID set of parent that n may change.
func (n *state) parentIDs(parent string, copied map[string]bool) map[string]struct{} {
	ids := n.byParent[parent]
	if !copied[parent] {
		ids = maps.Clone(ids)
		if ids == nil {
			ids = map[string]struct{}{}
		}
		n.byParent[parent] = ids
		copied[parent] = true
	}
	return ids
}

// pendingIntent is a commit key with an intent, as the watch saw it.
type pendingIntent struct {
	modRev int64
	rec    commitRecord
}

// mirror holds the committed state of the mirrored tables at the newest
// commit this instance knows, kept current by the watch (and by this
// instance's own commits, which apply their writes at once).
type mirror struct {
	cur atomic.Pointer[state]

	mu sync.Mutex
	// intent is the in-flight chunked commit, if any.
	intent *pendingIntent
	// changed is closed (and replaced) whenever cur or intent changes.
	changed chan struct{}
	// pending are the watch's events of mirrored keys newer than cur that
	// no commit has published yet (the chunks of a chunked commit), in
	// revision order.
	pending []*mvccpb.Event
	// watchRev is the newest revision the watch has delivered.
	watchRev int64
}

func newMirror(s *state, in *pendingIntent, watchRev int64) *mirror {
	m := &mirror{intent: in, changed: make(chan struct{}), watchRev: watchRev}
	m.cur.Store(s)
	return m
}

func (m *mirror) snapshot() *state { return m.cur.Load() }

// view returns the current state, the intent and the channel closed on
// the next change.
func (m *mirror) view() (*state, *pendingIntent, <-chan struct{}) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cur.Load(), m.intent, m.changed
}

// seenAndChanged returns the newest mod revision of the commit key the
// mirror knows, and the channel closed on the next change.
func (m *mirror) seenAndChanged() (int64, <-chan struct{}) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.intent != nil {
		return m.intent.modRev, m.changed
	}
	return m.cur.Load().rev, m.changed
}

// broadcast wakes the waiters on changed; m.mu is held.
func (m *mirror) broadcast() {
	close(m.changed)
	m.changed = make(chan struct{})
}

// advance installs next, the state this instance's own commit made from
// the state at base. It reports whether it did: when the watch delivered
// the commit first, next is already there.
func (m *mirror) advance(base int64, next *state) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur := m.cur.Load()
	if cur.rev >= next.rev || cur.rev != base {
		return false
	}
	m.cur.Store(next)
	m.intent = nil
	m.dropPending(next.rev)
	m.broadcast()
	return true
}

// dropPending forgets the pending events up to rev; m.mu is held.
func (m *mirror) dropPending(rev int64) {
	i := 0
	for i < len(m.pending) && m.pending[i].Kv.ModRevision <= rev {
		i++
	}
	m.pending = slices.Delete(m.pending, 0, i)
}

// reset replaces everything after a reload.
func (m *mirror) reset(s *state, in *pendingIntent, watchRev int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cur.Store(s)
	m.intent = in
	m.pending = nil
	m.watchRev = watchRev
	m.broadcast()
}

// watchFrom is the revision the watch resumes at.
func (m *mirror) watchFrom() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.watchRev + 1
}

// apply takes the events of one watch response (of mirrored keys, in
// revision order). Record events wait in pending
// until the commit key publishes them; a commit record with an intent is
// remembered, one without publishes every pending event up to its
// revision. It returns the commit records published, for the wake-ups.
func (m *mirror) apply(ks keyspace, evs []*mvccpb.Event) (published []commitRecord, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	changed := false
	// A Txn's events share one revision and arrive in one response.
	delivered := m.watchRev
	for _, ev := range evs {
		if ev.Kv.ModRevision <= delivered {
			continue // delivered again after a reconnect
		}
		m.watchRev = max(m.watchRev, ev.Kv.ModRevision)
		if ev.Kv.ModRevision <= m.cur.Load().rev {
			// Written by this instance's own commit, already applied
			// (its records, its intent, its commit record).
			m.dropPending(ev.Kv.ModRevision)
			continue
		}
		if string(ev.Kv.Key) != ks.commit() {
			m.pending = append(m.pending, ev)
			continue
		}
		if ev.Type != mvccpb.PUT {
			continue // the commit key is never deleted by a writer
		}
		rec, err := decodeCommit(ev.Kv.Value)
		if err != nil {
			return published, err
		}
		cur := m.cur.Load()
		changed = true
		if rec.Intent != nil {
			m.intent = &pendingIntent{modRev: ev.Kv.ModRevision, rec: rec}
			continue
		}
		var changes [numTables]map[string]*item
		i := 0
		for ; i < len(m.pending) && m.pending[i].Kv.ModRevision <= ev.Kv.ModRevision; i++ {
			pe := m.pending[i]
			t, id, ok := ks.parseRecord(string(pe.Kv.Key))
			if !ok {
				continue
			}
			if changes[t] == nil {
				changes[t] = map[string]*item{}
			}
			if pe.Type == mvccpb.DELETE {
				changes[t][id] = nil
			} else {
				changes[t][id] = decodeItem(t, id, pe.Kv.Value)
			}
		}
		m.pending = slices.Delete(m.pending, 0, i)
		m.cur.Store(cur.with(ev.Kv.ModRevision, rec, &changes))
		m.intent = nil
		published = append(published, rec)
	}
	if changed {
		m.broadcast()
	}
	return published, nil
}
