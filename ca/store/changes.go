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
// agent.
type Change struct {
	// All: the change may concern every agent, or the backend cannot
	// tell what it concerned.
	All bool
	// Keys, when not All, are the parent IDs of the entries that changed
	// (before and after the change) and the SPIFFE IDs of the nodes that
	// changed (superseded, evicted, deleted), sorted and without
	// duplicates.
	Keys []string
}

// changeScope collects what a transaction changed, for its Change.
type changeScope struct {
	all  bool
	keys []string
}

// touch records a write that concerns the agents reading key.
func (c *changeScope) touch(key string) { c.keys = append(c.keys, key) }

// touchAll records a write that may concern every agent.
func (c *changeScope) touchAll() { c.all = true }

// merge adds o's writes to c.
func (c *changeScope) merge(o *changeScope) {
	c.all = c.all || o.all
	c.keys = append(c.keys, o.keys...)
}

// change is the Change of the writes collected.
func (c *changeScope) change() Change { return MakeChange(c.all, c.keys) }

// MakeChange is the Change of a commit whose writes concern every agent
// (all) or the agents reading keys. No key at all means every agent: a
// revision taken with no write that names whom it concerns is meant for
// everyone.
func MakeChange(all bool, keys []string) Change {
	if all || len(keys) == 0 {
		return Change{All: true}
	}
	keys = slices.Clone(keys)
	slices.Sort(keys)
	return Change{Keys: slices.Compact(keys)}
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
