package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"

	"github.com/signet-mesh/signet/ca/store"
)

// maxBatchSize bounds the calls one group commit takes, as Bolt's does.
// A group is also cut where its writes would no longer fit in one Txn.
const maxBatchSize = 1000

// Batch implements store.Store with group commit: callers queue their fn;
// a caller that finds no commit in flight starts a leader, which runs
// everything queued in one transaction and commits it in one etcd Txn,
// while the callers wait. Each fn runs on a savepoint of the group's
// transaction: one that fails (or panics) loses its own writes only, and
// its caller gets its error (a panic is re-raised in its goroutine). When
// the commit conflicts with another instance's, the group runs again on
// the new state, so fn may run more than once.
//
// ctx bounds the wait: a caller whose ctx ends gets its ctx error, and
// when its fn was already taken the group's commit may still carry it.
func (s *Store) Batch(ctx context.Context, fn func(store.Tx) error) error {
	if err := s.usable(ctx); err != nil {
		return err
	}
	call := &batchCall{ctx: ctx, fn: fn, done: make(chan batchResult, 1)}
	s.mu.Lock()
	s.queue = append(s.queue, call)
	s.mu.Unlock()
	for {
		select {
		case r := <-call.done:
			return r.get()
		case s.writer <- struct{}{}:
			select {
			case r := <-call.done: // taken by the leader just gone
				s.releaseWriter()
				return r.get()
			default:
			}
			// The leader runs on its own goroutine, so that this caller
			// can still leave when its ctx ends.
			go s.lead()
		case <-ctx.Done():
			if s.dequeue(call) {
				return ctx.Err()
			}
			select {
			case r := <-call.done:
				return r.get()
			default:
				return fmt.Errorf("etcd: waiting for the group commit: %w", ctx.Err())
			}
		case <-s.ctx.Done():
			if s.dequeue(call) {
				return store.ErrClosed
			}
			select { // taken: the leader delivers
			case r := <-call.done:
				return r.get()
			case <-ctx.Done():
				return fmt.Errorf("etcd: waiting for the group commit: %w", ctx.Err())
			}
		}
	}
}

// batchCall is one queued Batch.
type batchCall struct {
	ctx  context.Context
	fn   func(store.Tx) error
	done chan batchResult // buffered: delivering never blocks the leader
}

func (c *batchCall) deliver(r batchResult) {
	select {
	case c.done <- r:
	default:
	}
}

type batchResult struct {
	err   error
	panic *batchPanic
}

func (r batchResult) get() error {
	if r.panic != nil {
		panic(r.panic)
	}
	return r.err
}

func (r batchResult) failed() bool { return r.err != nil || r.panic != nil }

// batchPanic is what Batch panics with when its fn panicked on the
// leader's goroutine.
type batchPanic struct {
	value any
	stack []byte
}

func (p *batchPanic) Error() string {
	return fmt.Sprintf("store: panic in Batch function: %v\n\n%s", p.value, p.stack)
}

func (p *batchPanic) Unwrap() error {
	err, _ := p.value.(error)
	return err
}

func runFn(fn func(store.Tx) error, t store.Tx) (r batchResult) {
	defer func() {
		if v := recover(); v != nil {
			r = batchResult{panic: &batchPanic{value: v, stack: debug.Stack()}}
		}
	}()
	return batchResult{err: fn(t)}
}

func (s *Store) dequeue(call *batchCall) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.Index(s.queue, call)
	if i < 0 {
		return false
	}
	s.queue = slices.Delete(s.queue, i, i+1)
	return true
}

func (s *Store) take() []*batchCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := min(len(s.queue), maxBatchSize)
	group := slices.Clone(s.queue[:n])
	s.queue = slices.Delete(s.queue, 0, n)
	return group
}

// requeue puts calls back at the head of the queue, for the next group.
func (s *Store) requeue(calls []*batchCall) {
	if len(calls) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queue = append(slices.Clone(calls), s.queue...)
}

// lead runs one group commit; the caller holds the writer, which lead
// releases. A panic outside the functions (a bug of the store) fails the
// group's calls and crashes the process.
func (s *Store) lead() {
	defer s.releaseWriter()
	group := s.take()
	defer func() {
		if r := recover(); r != nil {
			for _, c := range group {
				c.deliver(batchResult{err: fmt.Errorf("store: group commit failed: %v", r)})
			}
			panic(r)
		}
	}()
	var calls []*batchCall
	for _, c := range group {
		if err := c.ctx.Err(); err != nil {
			c.deliver(batchResult{err: err})
			continue
		}
		calls = append(calls, c)
	}
	// The group's requests are bounded by the store's life and
	// RequestTimeout, not by one caller's ctx.
	ctx := s.ctx
	for attempt := 1; len(calls) > 0; attempt++ {
		snap, err := s.waitWritable(ctx)
		if err != nil {
			deliverAll(calls, err)
			return
		}
		t := s.newTx(ctx, snap, true)
		var ran, later []*batchCall
		for i, c := range calls {
			sp := t.savepoint()
			if r := runFn(c.fn, t); r.failed() {
				t.rollbackTo(sp)
				c.deliver(r)
				continue
			}
			if len(ran) > 0 && !s.fits(t) {
				// The rest waits for the next group: this one stays
				// within one Txn.
				t.rollbackTo(sp)
				later = calls[i:]
				break
			}
			ran = append(ran, c)
		}
		s.requeue(later)
		calls = ran
		if len(calls) == 0 {
			return
		}
		if !t.dirty() {
			deliverAll(calls, nil)
			return
		}
		next, err := s.commit(ctx, t)
		var ce *conflictError
		if errors.As(err, &ce) && attempt < maxCommitAttempts {
			if err := s.waitSeen(ctx, ce.seen); err != nil {
				deliverAll(calls, err)
				return
			}
			continue
		}
		if err == nil {
			s.install(snap.rev, next)
			if s.onGroupCommit != nil {
				s.onGroupCommit(len(calls))
			}
		}
		deliverAll(calls, err)
		return
	}
}

func deliverAll(calls []*batchCall, err error) {
	for _, c := range calls {
		c.deliver(batchResult{err: err})
	}
}
