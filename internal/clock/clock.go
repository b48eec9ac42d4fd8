// Package clock is the one clock interface of signet. Components take a Clock
// in their Config and default it to Real; tests pass a *Fake and move time by
// hand, so renewal and expiry decisions never depend on the wall clock.
package clock

import (
	"sync"
	"time"
)

// Clock tells the time and makes timers. Implementations are safe for
// concurrent use.
type Clock interface {
	Now() time.Time
	// NewTimer returns a timer that fires once after d.
	NewTimer(d time.Duration) Timer
	// NewTicker returns a ticker that fires every d.
	NewTicker(d time.Duration) Ticker
}

// Timer is a one-shot timer, as time.Timer.
type Timer interface {
	C() <-chan time.Time
	Stop() bool
	Reset(d time.Duration) bool
}

// Ticker is a periodic timer, as time.Ticker.
type Ticker interface {
	C() <-chan time.Time
	Stop()
}

// Real is the wall clock.
type Real struct{}

func (Real) Now() time.Time                   { return time.Now() }
func (Real) NewTimer(d time.Duration) Timer   { return realTimer{time.NewTimer(d)} }
func (Real) NewTicker(d time.Duration) Ticker { return realTicker{time.NewTicker(d)} }

type realTimer struct{ t *time.Timer }

func (r realTimer) C() <-chan time.Time        { return r.t.C }
func (r realTimer) Stop() bool                 { return r.t.Stop() }
func (r realTimer) Reset(d time.Duration) bool { return r.t.Reset(d) }

type realTicker struct{ t *time.Ticker }

func (r realTicker) C() <-chan time.Time { return r.t.C }
func (r realTicker) Stop()               { r.t.Stop() }

// OrReal returns c, or Real when c is nil: constructors use it to default
// their Config's Clock.
func OrReal(c Clock) Clock {
	if c == nil {
		return Real{}
	}
	return c
}

// Fake is a manually advanced clock for tests. Timers and tickers fire when
// Advance moves the time past their deadline.
type Fake struct {
	mu      sync.Mutex
	now     time.Time
	waiters []*fakeWaiter
}

// NewFake returns a Fake set to now.
func NewFake(now time.Time) *Fake { return &Fake{now: now} }

func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// Advance moves the clock forward by d and fires every due timer and ticker.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	now := f.now
	waiters := append([]*fakeWaiter(nil), f.waiters...)
	f.mu.Unlock()
	for _, w := range waiters {
		w.fireIfDue(now)
	}
}

// Set moves the clock to t (which may be in the past) and fires due timers.
func (f *Fake) Set(t time.Time) {
	f.mu.Lock()
	f.now = t
	waiters := append([]*fakeWaiter(nil), f.waiters...)
	f.mu.Unlock()
	for _, w := range waiters {
		w.fireIfDue(t)
	}
}

// Waiters reports how many timers and tickers are active: tests wait for a
// component to arm its timer before advancing the clock.
func (f *Fake) Waiters() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, w := range f.waiters {
		if w.active() {
			n++
		}
	}
	return n
}

func (f *Fake) NewTimer(d time.Duration) Timer   { return f.add(d, false) }
func (f *Fake) NewTicker(d time.Duration) Ticker { return fakeTicker{f.add(d, true)} }

type fakeTicker struct{ w *fakeWaiter }

func (t fakeTicker) C() <-chan time.Time { return t.w.C() }
func (t fakeTicker) Stop()               { t.w.Stop() }

func (f *Fake) add(d time.Duration, periodic bool) *fakeWaiter {
	f.mu.Lock()
	defer f.mu.Unlock()
	w := &fakeWaiter{clock: f, c: make(chan time.Time, 1), period: d, periodic: periodic, deadline: f.now.Add(d), on: true}
	f.waiters = append(f.waiters, w)
	return w
}

type fakeWaiter struct {
	clock    *Fake
	mu       sync.Mutex
	c        chan time.Time
	deadline time.Time
	period   time.Duration
	periodic bool
	on       bool
}

func (w *fakeWaiter) active() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.on
}

func (w *fakeWaiter) fireIfDue(now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.on || now.Before(w.deadline) {
		return
	}
	select {
	case w.c <- now:
	default:
	}
	if w.periodic {
		for !now.Before(w.deadline) {
			w.deadline = w.deadline.Add(w.period)
		}
		return
	}
	w.on = false
}

func (w *fakeWaiter) C() <-chan time.Time { return w.c }

func (w *fakeWaiter) Stop() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	was := w.on
	w.on = false
	return was
}

func (w *fakeWaiter) Reset(d time.Duration) bool {
	now := w.clock.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	was := w.on
	w.on = true
	w.period = d
	w.deadline = now.Add(d)
	return was
}
