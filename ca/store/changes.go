package store

import (
	"slices"
	"sync"
)

// Change says what one commit that took a revision changed, as far as the
// streams that push to agents care (Store.SubscribeChanges): an entry
// concerns the agents that read its parent, a node its own agent, and
// anything else (the bundle, the mTLS policies, federation, settings)
// every agent. A stream then reads only when a change can concern it, and
// a fleet of idle agents costs one lookup per change, not one read per
// agent. Kinds says which records changed, so that a change every agent
// sees (a new bundle) need not make each re-read its entries.
type Change struct {
	// All: the change may concern every agent, or the backend cannot
	// tell what it concerned.
	All bool
	// Keys, when not All, are the parent IDs of the entries that changed
	// (before and after the change) and the SPIFFE IDs of the nodes that
	// changed (superseded, evicted, deleted), sorted and without
	// duplicates.
	Keys []string
	// Kinds are the kinds of record the commit wrote; zero when the
	// backend cannot tell (a bare revision, a reload after a lost watch,
	// a commit of an older replica): then any kind may have changed.
	Kinds ChangeKind
}

// ChangeKind is a set of the kinds of record a commit wrote.
type ChangeKind uint8

const (
	// ChangeEntries: registration entries.
	ChangeEntries ChangeKind = 1 << iota
	// ChangeNodes: what a node's stream reads of its node record: its
	// existence (attested, evicted, deleted), incarnation, attestor and
	// selectors.
	ChangeNodes
	// ChangeNodeStatus: only what a node reports or renews (the serial
	// and expiry of its SVID, the bundle revision it applied, its
	// attestation key's hash): no stream reads it, so it concerns nobody.
	ChangeNodeStatus
	// ChangeShared: what every agent reads besides its entries: the
	// authorities (the bundle), the settings, the mTLS policies.
	ChangeShared
)

// EntriesUnchanged reports that the change wrote no entry and nothing a
// stream reads of a node record: a stream it wakes need not read its
// entries again, only what every agent shares.
func (c Change) EntriesUnchanged() bool {
	return c.Kinds != 0 && c.Kinds&(ChangeEntries|ChangeNodes) == 0
}

// nodeStatusOnly reports whether a node written as n over old changes
// only its status (ChangeNodeStatus), not what its stream reads.
func nodeStatusOnly(old, n *Node) bool {
	return old.SPIFFEID == n.SPIFFEID && old.Attestor == n.Attestor && old.Incarnation == n.Incarnation &&
		old.AttestedAt.Equal(n.AttestedAt) && old.EvictedAt.Equal(n.EvictedAt) && slices.Equal(old.Selectors, n.Selectors)
}

// NodeWriteKind is the kind of the write of node n over old (nil when the
// node did not exist), for the backends' Change.
func NodeWriteKind(old, n *Node) ChangeKind {
	if old != nil && n != nil && nodeStatusOnly(old, n) {
		return ChangeNodeStatus
	}
	return ChangeNodes
}

// changeScope collects what a transaction changed, for its Change.
type changeScope struct {
	all   bool
	keys  []string
	kinds ChangeKind
}

// touch records a write of kind that concerns the agents reading key.
func (c *changeScope) touch(kind ChangeKind, key string) {
	c.kinds |= kind
	c.keys = append(c.keys, key)
}

// touchAll records a write that concerns every agent.
func (c *changeScope) touchAll() {
	c.all = true
	c.kinds |= ChangeShared
}

// touchStatus records a write of a node's status: it concerns no agent.
func (c *changeScope) touchStatus() { c.kinds |= ChangeNodeStatus }

// merge adds o's writes to c.
func (c *changeScope) merge(o *changeScope) {
	c.all = c.all || o.all
	c.keys = append(c.keys, o.keys...)
	c.kinds |= o.kinds
}

// change is the Change of the writes collected.
func (c *changeScope) change() Change { return MakeChange(c.all, c.keys, c.kinds) }

// MakeChange is the Change of a commit that wrote records of kinds and
// whose writes concern every agent (all) or the agents reading keys. No
// key at all means every agent, unless kinds says the commit wrote only
// node status, which concerns nobody: a revision taken with no write
// that names whom it concerns is meant for everyone.
func MakeChange(all bool, keys []string, kinds ChangeKind) Change {
	if !all && len(keys) == 0 && kinds == ChangeNodeStatus {
		return Change{Kinds: kinds}
	}
	if all || len(keys) == 0 {
		return Change{All: true, Kinds: kinds}
	}
	keys = slices.Clone(keys)
	slices.Sort(keys)
	return Change{Keys: slices.Compact(keys), Kinds: kinds}
}

// ChangeFeed delivers Changes to the functions of SubscribeChanges.
// Backends share it; the zero value is ready to use.
type ChangeFeed struct {
	mu     sync.Mutex
	subs   map[*changeSub]struct{}
	closed bool
	done   chan struct{}
}

type changeSub struct{ fn func(Change) }

// doneChan is closed by Close; made on first use.
func (f *ChangeFeed) doneChan() chan struct{} {
	if f.done == nil {
		f.done = make(chan struct{})
	}
	return f.done
}

// Add implements SubscribeChanges for a backend.
func (f *ChangeFeed) Add(fn func(Change)) (<-chan struct{}, func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	done := f.doneChan()
	if f.closed {
		return done, func() {}
	}
	if f.subs == nil {
		f.subs = map[*changeSub]struct{}{}
	}
	s := &changeSub{fn: fn}
	f.subs[s] = struct{}{}
	return done, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		delete(f.subs, s)
	}
}

// Publish calls every subscriber's function with c. Subscribers are
// called with the feed locked: after cancel returns, fn is not called.
func (f *ChangeFeed) Publish(c Change) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for s := range f.subs {
		s.fn(c)
	}
}

// Close ends the feed: no call after it, and the channel Add returned is
// closed. It is idempotent.
func (f *ChangeFeed) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return
	}
	f.closed = true
	clear(f.subs)
	close(f.doneChan())
}
