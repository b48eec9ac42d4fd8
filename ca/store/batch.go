package store

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"

	"go.etcd.io/bbolt"
)

// Batch implements Store with group commit. Callers queue their fn; a
// caller that finds no commit in flight becomes the leader, takes what is
// queued (its own fn or not) and runs it all in one read-write transaction
// with one fsync, while the others wait. Commits thus follow each other
// back to back, each carrying whatever arrived during the previous one: a
// lone caller pays no delay, and under load one fsync serves many callers.
// When the store is busy (the previous commit carried more than one
// caller), the leader first waits a little for more to join (see gather).
//
// A fn that fails (or panics) makes the leader roll back and rerun the
// group without it, so its writes are discarded and the others commit.
// Its error is returned to its own caller only; a panic is re-raised in
// its caller's goroutine, wrapped with the stack where it happened.
//
// ctx bounds the wait: a caller whose ctx ends before a leader takes its fn
// gets ctx.Err() and fn does not run. Once taken, fn runs and the caller
// waits for the commit.
func (b *Bolt) Batch(ctx context.Context, fn func(Tx) error) error {
	if err := b.usable(ctx); err != nil {
		return err
	}
	call := &batchCall{ctx: ctx, fn: fn, done: make(chan batchResult, 1)}
	b.mu.Lock()
	b.queue = append(b.queue, call)
	b.mu.Unlock()
	for {
		select {
		case r := <-call.done:
			return r.get()
		case b.writer <- struct{}{}:
			select {
			case r := <-call.done: // taken by the leader just gone
				b.releaseWriter()
				return r.get()
			default:
			}
			b.lead()
		case <-ctx.Done():
			if b.dequeue(call) {
				return ctx.Err()
			}
			return (<-call.done).get() // already taken: it runs
		}
	}
}

// batchCall is one queued Batch.
type batchCall struct {
	ctx  context.Context
	fn   func(Tx) error
	done chan batchResult // buffered: delivering never blocks the leader
}

// deliver hands r to the caller. Only the first result counts.
func (c *batchCall) deliver(r batchResult) {
	select {
	case c.done <- r:
	default:
	}
}

// batchResult is what a Batch caller gets back.
type batchResult struct {
	err error
	// panic is set when fn panicked; Batch re-raises it.
	panic *batchPanic
}

func (r batchResult) get() error {
	if r.panic != nil {
		panic(r.panic)
	}
	return r.err
}

func (r batchResult) failed() bool { return r.err != nil || r.panic != nil }

// batchPanic is the value Batch panics with when its fn panicked, since the
// fn ran on another caller's goroutine (the group's leader).
type batchPanic struct {
	value any    // what fn panicked with
	stack []byte // the leader goroutine's stack at the panic
}

func (p *batchPanic) Error() string {
	return fmt.Sprintf("store: panic in Batch function: %v\n\n%s", p.value, p.stack)
}

// Unwrap returns the panic value when it is an error.
func (p *batchPanic) Unwrap() error {
	err, _ := p.value.(error)
	return err
}

// dequeue removes call from the queue, reporting whether it was still
// there (not yet taken by a leader).
func (b *Bolt) dequeue(call *batchCall) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	i := slices.Index(b.queue, call)
	if i < 0 {
		return false
	}
	b.queue = slices.Delete(b.queue, i, i+1)
	return true
}

// take removes up to Options.MaxBatchSize calls from the head of the
// queue.
func (b *Bolt) take() []*batchCall {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := min(len(b.queue), b.maxBatchSize)
	group := slices.Clone(b.queue[:n])
	b.queue = slices.Delete(b.queue, 0, n)
	return group
}

// lead runs one group commit; the caller holds the writer, which lead
// releases. The group's callers get their results first; then the writer
// is released, and only then are the subscribers woken: a commit that
// took a revision wakes every stream it concerns (thousands of agents'
// after a bundle change), and neither its callers nor the next group
// need wait for that.
func (b *Bolt) lead() {
	if n := b.commitGroup(); n != nil {
		b.notify(n.revised, n.audited, &n.scope)
	}
}

// groupNotice is what a committed group changed, for notify.
type groupNotice struct {
	revised, audited bool
	scope            changeScope
}

// commitGroup runs one group commit and delivers its results; it releases
// the writer. It returns what to notify, nil when nothing committed.
func (b *Bolt) commitGroup() *groupNotice {
	defer b.releaseWriter()
	b.gather()
	group := b.take()
	b.lastGroupSize = len(group)
	start := b.clock.Now()
	defer func() { b.lastCommit = b.clock.Now().Sub(start) }()
	// Should anything below panic outside a fn, or a fn end the leader's
	// goroutine (runtime.Goexit, as a test's t.Fatal does: an Update's
	// fn runs on whichever caller leads its group), nobody may wait
	// forever. deliver keeps the first result, so a call already answered
	// keeps its own.
	ended := false
	defer func() {
		if ended {
			return
		}
		r := recover()
		err := fmt.Errorf("store: group commit failed: %v", r)
		if r == nil {
			err = errors.New("store: group commit failed: its leader's goroutine exited")
		}
		for _, c := range group {
			c.deliver(batchResult{err: err})
		}
		if r != nil {
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
	for len(calls) > 0 {
		n := &groupNotice{}
		failed, res, err := b.runGroup(calls, n)
		if failed >= 0 {
			b.log.Debug("rerunning group commit without a failed function", logKeyGroupSize, len(calls), logKeyError, res.err)
			calls[failed].deliver(res)
			calls = slices.Delete(calls, failed, failed+1)
			continue
		}
		err = b.txErr("committing batch", err)
		for _, c := range calls {
			c.deliver(batchResult{err: err})
		}
		ended = true
		if err != nil {
			return nil
		}
		if b.onGroupCommit != nil {
			b.onGroupCommit(len(calls))
		}
		return n
	}
	ended = true
	return nil
}

// gather waits, before a busy store's commit, for more callers to join
// it: twice as long as the previous commit took, at most Options.MaxBatchDelay.
// A commit's fsync blocks the Go scheduler's P that issued it (the runtime
// rarely takes back a P from a syscall this short), so each commit takes
// one CPU out of service for as long as it syncs: measured here, half the
// time of a loaded CA with back-to-back commits. Waiting twice a commit's
// time (the wait holds no CPU) leaves the fsync a third of the time and
// lets about three times as many callers share each one. This is
// PostgreSQL's commit_delay, applied only under load: after a commit of
// one caller, nobody waits.
func (b *Bolt) gather() {
	if b.maxBatchDelay < 0 || b.lastGroupSize < 2 {
		return
	}
	d := min(2*b.lastCommit, b.maxBatchDelay)
	if d <= 0 {
		return
	}
	t := b.clock.NewTimer(d)
	defer t.Stop()
	<-t.C()
}

// errFnFailed makes bbolt roll back the group's transaction.
var errFnFailed = errors.New("a batch function failed")

// runGroup runs calls in one transaction and commits it unless one fails;
// then it returns that one's index and result, and nothing is written.
// err is bbolt's (begin or commit); n collects what the functions changed:
// whether one took a revision, whether one appended to the audit log, and
// what those that took a revision wrote.
func (b *Bolt) runGroup(calls []*batchCall, n *groupNotice) (failed int, res batchResult, err error) {
	failed = -1
	b.touched.Store(true)
	err = b.db.Update(func(tx *bbolt.Tx) error {
		for i, c := range calls {
			t := &boltTx{tx: tx}
			if r := runFn(c.fn, t); r.failed() {
				failed, res = i, r
				return errFnFailed
			}
			n.revised = n.revised || t.revised
			if t.revised {
				n.scope.merge(&t.scope)
			}
			n.audited = n.audited || t.audited
		}
		return nil
	})
	if failed >= 0 {
		err = nil
	}
	return failed, res, err
}

// runFn calls fn, turning a panic into a result so the leader can carry on
// with the rest of the group.
func runFn(fn func(Tx) error, t Tx) (r batchResult) {
	defer func() {
		if v := recover(); v != nil {
			r = batchResult{panic: &batchPanic{value: v, stack: debug.Stack()}}
		}
	}()
	return batchResult{err: fn(t)}
}
