package clock_test

import (
	"testing"
	"time"

	"github.com/signet-mesh/signet/internal/clock"
)

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// fired reports whether c has a value ready, without waiting: the fake
// delivers synchronously inside Advance and Set.
func fired(c <-chan time.Time) (time.Time, bool) {
	select {
	case v := <-c:
		return v, true
	default:
		return time.Time{}, false
	}
}

func TestFakeNowAndAdvance(t *testing.T) {
	f := clock.NewFake(t0)
	if !f.Now().Equal(t0) {
		t.Fatalf("Now = %v, want %v", f.Now(), t0)
	}
	f.Advance(90 * time.Second)
	if want := t0.Add(90 * time.Second); !f.Now().Equal(want) {
		t.Fatalf("Now after Advance = %v, want %v", f.Now(), want)
	}
	f.Set(t0)
	if !f.Now().Equal(t0) {
		t.Fatalf("Now after Set = %v, want %v", f.Now(), t0)
	}
}

func TestFakeTimer(t *testing.T) {
	tests := []struct {
		name     string
		delay    time.Duration
		steps    []time.Duration // successive Advance calls
		wantFire int             // index of the step after which it fires; -1 never
	}{
		{name: "fires at its deadline", delay: time.Minute, steps: []time.Duration{59 * time.Second, time.Second}, wantFire: 1},
		{name: "fires past its deadline", delay: time.Minute, steps: []time.Duration{time.Hour}, wantFire: 0},
		{name: "zero delay fires on any advance", delay: 0, steps: []time.Duration{0}, wantFire: 0},
		{name: "not before its deadline", delay: time.Minute, steps: []time.Duration{30 * time.Second, 29 * time.Second}, wantFire: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := clock.NewFake(t0)
			tm := f.NewTimer(tt.delay)
			got := -1
			for i, d := range tt.steps {
				f.Advance(d)
				if v, ok := fired(tm.C()); ok {
					if got != -1 {
						t.Fatalf("fired twice")
					}
					got = i
					if !v.Equal(f.Now()) {
						t.Errorf("fired with %v, want the clock's time %v", v, f.Now())
					}
				}
			}
			if got != tt.wantFire {
				t.Errorf("fired after step %d, want %d", got, tt.wantFire)
			}
			// A one-shot timer fires once: later advances deliver nothing
			// more (and one that has not fired yet fires now).
			f.Advance(10 * time.Hour)
			if _, ok := fired(tm.C()); ok == (got != -1) {
				t.Errorf("after a 10h advance, fired = %v; want %v", ok, got == -1)
			}
		})
	}
}

func TestFakeTimerStopAndReset(t *testing.T) {
	f := clock.NewFake(t0)
	tm := f.NewTimer(time.Minute)
	if f.Waiters() != 1 {
		t.Fatalf("Waiters = %d, want 1", f.Waiters())
	}
	if !tm.Stop() {
		t.Error("Stop of an active timer = false, want true")
	}
	if tm.Stop() {
		t.Error("Stop of a stopped timer = true, want false")
	}
	if f.Waiters() != 0 {
		t.Errorf("Waiters after Stop = %d, want 0", f.Waiters())
	}
	f.Advance(time.Hour)
	if _, ok := fired(tm.C()); ok {
		t.Fatal("stopped timer fired")
	}

	// Reset counts from the current time, not from creation.
	if tm.Reset(time.Minute) {
		t.Error("Reset of a stopped timer = true, want false")
	}
	f.Advance(59 * time.Second)
	if _, ok := fired(tm.C()); ok {
		t.Fatal("reset timer fired early")
	}
	f.Advance(time.Second)
	if _, ok := fired(tm.C()); !ok {
		t.Fatal("reset timer did not fire at its new deadline")
	}
	if f.Waiters() != 0 {
		t.Errorf("Waiters after the timer fired = %d, want 0", f.Waiters())
	}
}

func TestFakeTicker(t *testing.T) {
	f := clock.NewFake(t0)
	tk := f.NewTicker(10 * time.Second)
	defer tk.Stop()
	for i := range 3 {
		f.Advance(9 * time.Second)
		if _, ok := fired(tk.C()); ok {
			t.Fatalf("tick %d: fired early", i)
		}
		f.Advance(time.Second)
		if _, ok := fired(tk.C()); !ok {
			t.Fatalf("tick %d: did not fire at its period", i)
		}
	}
	// A long jump delivers one tick (as time.Ticker drops ticks for slow
	// receivers) and keeps the ticker on its original phase.
	f.Advance(35 * time.Second)
	if _, ok := fired(tk.C()); !ok {
		t.Fatal("no tick after a long jump")
	}
	if _, ok := fired(tk.C()); ok {
		t.Fatal("more than one tick buffered")
	}
	f.Advance(4 * time.Second) // to t0+69s: the next tick is due at +70s
	if _, ok := fired(tk.C()); ok {
		t.Fatal("ticker lost its phase: fired at +69s")
	}
	f.Advance(time.Second)
	if _, ok := fired(tk.C()); !ok {
		t.Fatal("ticker lost its phase: no tick at +70s")
	}
	if f.Waiters() != 1 {
		t.Errorf("Waiters with a running ticker = %d, want 1", f.Waiters())
	}
	tk.Stop()
	f.Advance(time.Hour)
	if _, ok := fired(tk.C()); ok {
		t.Fatal("stopped ticker fired")
	}
	if f.Waiters() != 0 {
		t.Errorf("Waiters after Stop = %d, want 0", f.Waiters())
	}
}

// TestFakeSetBackwards: moving the clock back fires nothing, and a timer
// still fires at its deadline afterwards.
func TestFakeSetBackwards(t *testing.T) {
	f := clock.NewFake(t0)
	tm := f.NewTimer(time.Minute)
	f.Set(t0.Add(-time.Hour))
	if _, ok := fired(tm.C()); ok {
		t.Fatal("timer fired when the clock went back")
	}
	f.Set(t0.Add(time.Minute))
	if _, ok := fired(tm.C()); !ok {
		t.Fatal("timer did not fire when Set reached its deadline")
	}
}

// TestFakeConcurrent: timers made and stopped while another goroutine
// advances the clock (run with -race).
func TestFakeConcurrent(t *testing.T) {
	f := clock.NewFake(t0)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 1000 {
			f.Advance(time.Millisecond)
		}
	}()
	for range 1000 {
		tm := f.NewTimer(time.Millisecond)
		tm.Reset(2 * time.Millisecond)
		tm.Stop()
		_ = f.Now()
	}
	<-done
	if want := t0.Add(time.Second); !f.Now().Equal(want) {
		t.Errorf("Now = %v, want %v", f.Now(), want)
	}
}

func TestReal(t *testing.T) {
	c := clock.OrReal(nil)
	before := time.Now()
	if now := c.Now(); now.Before(before) || now.Sub(before) > time.Minute {
		t.Fatalf("Real Now = %v, want about %v", now, before)
	}
	tm := c.NewTimer(time.Millisecond)
	select {
	case <-tm.C():
	case <-time.After(10 * time.Second):
		t.Fatal("real timer did not fire")
	}
	tk := c.NewTicker(time.Millisecond)
	defer tk.Stop()
	for range 2 {
		select {
		case <-tk.C():
		case <-time.After(10 * time.Second):
			t.Fatal("real ticker did not tick")
		}
	}
	f := clock.NewFake(t0)
	if clock.OrReal(f) != clock.Clock(f) {
		t.Error("OrReal replaced a non-nil clock")
	}
}
