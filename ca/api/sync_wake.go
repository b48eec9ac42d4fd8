package api

import (
	"sync"
	"sync/atomic"

	"github.com/signet-mesh/signet/ca/store"
)

// syncWaker wakes the entry sync streams a change concerns, and only
// those. Streams are indexed by what an entry or node change can reach:
// the entry parents a node reads (its own SPIFFE ID and, for a Kubernetes
// node, its cluster's), which are also the keys of its node record. A
// change to the bundle, the policies, federation or settings reaches
// every stream. With 10,000 agents connected, an entry for one node costs
// one read, not 10,000. A change that wrote no entry and no node (a new
// bundle) tells the streams so: they send what changed without reading
// their entries again.
type syncWaker struct {
	mu    sync.Mutex
	byKey map[string]map[*syncWaiter]struct{}
	all   map[*syncWaiter]struct{}
	// closed is closed when the store closes: streams end.
	closed <-chan struct{}
	// wakes counts the streams woken by a change, coalesced or not: the
	// work a change costs (tests read it).
	wakes atomic.Int64
}

// syncWaiter is one stream: ch receives a value when a change concerns
// it, coalesced (buffer 1).
type syncWaiter struct {
	ch   chan struct{}
	keys []string
	// entries is set, before ch is signalled, by a change that may have
	// changed the stream's entries or node; the stream takes it
	// (takeEntries) after receiving from ch.
	entries atomic.Bool
}

// takeEntries reports whether a change since the last call may have
// changed the stream's entries or node, and clears it. Call it after
// receiving from ch: a change after the call signals ch again.
func (w *syncWaiter) takeEntries() bool { return w.entries.Swap(false) }

// newSyncWaker subscribes to st's changes. The subscription lasts as long
// as the store.
func newSyncWaker(st store.Store) *syncWaker {
	w := &syncWaker{byKey: map[string]map[*syncWaiter]struct{}{}, all: map[*syncWaiter]struct{}{}}
	w.closed, _ = st.SubscribeChanges(w.publish)
	return w
}

// add registers a stream reading keys; call it before the stream's first
// read, so that no change after that read is missed. remove unregisters.
func (w *syncWaker) add(keys []string) (waiter *syncWaiter, remove func()) {
	waiter = &syncWaiter{ch: make(chan struct{}, 1), keys: keys}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.all[waiter] = struct{}{}
	for _, k := range keys {
		set := w.byKey[k]
		if set == nil {
			set = map[*syncWaiter]struct{}{}
			w.byKey[k] = set
		}
		set[waiter] = struct{}{}
	}
	return waiter, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		delete(w.all, waiter)
		for _, k := range keys {
			delete(w.byKey[k], waiter)
			if len(w.byKey[k]) == 0 {
				delete(w.byKey, k)
			}
		}
	}
}

// publish wakes the streams c concerns. It runs on the committer's
// goroutine: non-blocking sends only.
func (w *syncWaker) publish(c store.Change) {
	w.mu.Lock()
	defer w.mu.Unlock()
	entries := !c.EntriesUnchanged()
	if c.All {
		for waiter := range w.all {
			w.wake(waiter, entries)
		}
		return
	}
	// A stream indexed under two of the keys is woken once.
	var seen map[*syncWaiter]bool
	if len(c.Keys) > 1 {
		seen = map[*syncWaiter]bool{}
	}
	for _, k := range c.Keys {
		for waiter := range w.byKey[k] {
			if seen != nil {
				if seen[waiter] {
					continue
				}
				seen[waiter] = true
			}
			w.wake(waiter, entries)
		}
	}
}

// wake signals waiter; entries: the change may have changed its entries.
func (w *syncWaker) wake(waiter *syncWaiter, entries bool) {
	w.wakes.Add(1)
	if entries {
		waiter.entries.Store(true)
	}
	select {
	case waiter.ch <- struct{}{}:
	default:
	}
}

// syncWaker returns the service's waker, subscribing on first use.
func (s *NodeService) syncWaker() *syncWaker {
	s.syncWakeOnce.Do(func() { s.syncWake = newSyncWaker(s.cfg.Store) })
	return s.syncWake
}

// SyncWakes is how many times a change woke a sync stream: each wake
// costs the stream a read of its node's state. A change reaches only the
// streams it concerns.
func (s *NodeService) SyncWakes() int64 { return s.syncWaker().wakes.Load() }
