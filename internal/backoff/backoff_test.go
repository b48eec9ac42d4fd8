package backoff_test

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/signet-mesh/signet/internal/backoff"
	"github.com/signet-mesh/signet/internal/clock"
)

// seed derives a test's random seed from its name, so every run of a test
// draws the same jitter.
func seed(t *testing.T) uint64 {
	h := fnv.New64a()
	h.Write([]byte(t.Name()))
	return h.Sum64()
}

// constRand always draws v: the delay is then exactly v × ceiling.
func constRand(v float64) backoff.Rand { return func() float64 { return v } }

func TestCeilingGrowsToMax(t *testing.T) {
	tests := []struct {
		name string
		cfg  backoff.Config
		want []time.Duration // successive ceilings
	}{
		{
			name: "defaults",
			cfg:  backoff.Config{},
			want: []time.Duration{200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, 1600 * time.Millisecond, 3200 * time.Millisecond, 6400 * time.Millisecond, 12800 * time.Millisecond, 25600 * time.Millisecond, 30 * time.Second, 30 * time.Second},
		},
		{
			name: "custom",
			cfg:  backoff.Config{Initial: time.Second, Max: 5 * time.Second},
			want: []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second},
		},
		{
			name: "max below initial is raised to initial",
			cfg:  backoff.Config{Initial: time.Second, Max: time.Millisecond},
			want: []time.Duration{time.Second, time.Second},
		},
		{
			name: "huge max does not overflow",
			cfg:  backoff.Config{Initial: time.Hour, Max: 1<<63 - 1},
			want: []time.Duration{time.Hour, 2 * time.Hour, 4 * time.Hour},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Rand = constRand(1 - 1e-12) // just under the ceiling
			b := backoff.New(tt.cfg)
			var ceilings, delays []time.Duration
			for range tt.want {
				ceilings = append(ceilings, b.Ceiling())
				delays = append(delays, b.Next())
			}
			if diff := cmp.Diff(tt.want, ceilings); diff != "" {
				t.Errorf("ceilings (-want +got):\n%s", diff)
			}
			for i, d := range delays {
				if d > tt.want[i] || d < tt.want[i]-tt.want[i]/1000 {
					t.Errorf("delay %d = %v, want just under the ceiling %v", i, d, tt.want[i])
				}
			}
		})
	}
}

// TestFullJitter: delays are spread over [0, ceiling], not bunched at the
// ceiling, and the same seed gives the same delays.
func TestFullJitter(t *testing.T) {
	draw := func() []time.Duration {
		b := backoff.New(backoff.Config{Initial: time.Second, Max: time.Second, Rand: backoff.NewRand(seed(t))})
		out := make([]time.Duration, 1000)
		for i := range out {
			out[i] = b.Next()
		}
		return out
	}
	first := draw()
	var low, high int
	for _, d := range first {
		if d < 0 || d > time.Second {
			t.Fatalf("delay %v outside [0, 1s]", d)
		}
		if d < 250*time.Millisecond {
			low++
		}
		if d > 750*time.Millisecond {
			high++
		}
	}
	if low < 150 || high < 150 {
		t.Errorf("of 1000 delays, %d under 250ms and %d over 750ms: want both about 250", low, high)
	}
	if diff := cmp.Diff(first, draw()); diff != "" {
		t.Errorf("same seed, different delays (-first +second):\n%s", diff)
	}
}

func TestReset(t *testing.T) {
	b := backoff.New(backoff.Config{Initial: time.Second, Max: time.Minute, Rand: constRand(0.5)})
	for range 5 {
		b.Next()
	}
	if c := b.Ceiling(); c != 32*time.Second {
		t.Fatalf("ceiling after 5 attempts = %v, want 32s", c)
	}
	b.Reset()
	if d := b.Next(); d != 500*time.Millisecond {
		t.Errorf("first delay after Reset = %v, want 500ms", d)
	}
}

func TestNewRand(t *testing.T) {
	a, b, c := backoff.NewRand(1), backoff.NewRand(1), backoff.NewRand(2)
	same, differ := true, false
	for range 100 {
		x, y, z := a(), b(), c()
		if x < 0 || x >= 1 {
			t.Fatalf("draw %v outside [0, 1)", x)
		}
		same = same && x == y
		differ = differ || x != z
	}
	if !same {
		t.Error("two Rands with the same seed drew differently")
	}
	if !differ {
		t.Error("two Rands with different seeds drew the same 100 numbers")
	}
	if backoff.SystemRand()() == backoff.SystemRand()() {
		t.Error("two system Rands drew the same first number")
	}
}

// retryHarness runs backoff.Retry on a fake clock in a goroutine.
type retryHarness struct {
	clk     *clock.Fake
	done    chan error
	delays  chan time.Duration
	retried []error
}

func startRetry(t *testing.T, ctx context.Context, fn func(context.Context) error) *retryHarness {
	t.Helper()
	h := &retryHarness{clk: clock.NewFake(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)), done: make(chan error, 1), delays: make(chan time.Duration, 100)}
	b := backoff.New(backoff.Config{Initial: time.Second, Max: 4 * time.Second, Rand: constRand(0.5)})
	go func() {
		h.done <- backoff.Retry(ctx, h.clk, b, fn, func(err error, d time.Duration) {
			h.retried = append(h.retried, err)
			h.delays <- d
		})
	}()
	return h
}

// sleepThrough waits for Retry to start sleeping d, then moves the clock
// past it.
func (h *retryHarness) sleepThrough(t *testing.T, want time.Duration) {
	t.Helper()
	select {
	case d := <-h.delays:
		if d != want {
			t.Fatalf("retry delay %v, want %v", d, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Retry did not retry")
	}
	deadline := time.Now().Add(10 * time.Second)
	for h.clk.Waiters() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("Retry did not start its timer")
		}
		time.Sleep(time.Millisecond)
	}
	h.clk.Advance(want)
}

func (h *retryHarness) result(t *testing.T) error {
	t.Helper()
	select {
	case err := <-h.done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Retry did not return")
		return nil
	}
}

func TestRetry(t *testing.T) {
	errDown := errors.New("CA unreachable")
	errBad := errors.New("bad token")
	tests := []struct {
		name    string
		results []error // what fn returns, call by call
		delays  []time.Duration
		wantErr string
	}{
		{name: "first call succeeds", results: []error{nil}},
		{name: "succeeds after two failures", results: []error{errDown, errDown, nil}, delays: []time.Duration{500 * time.Millisecond, time.Second}},
		{name: "delays grow to the cap", results: []error{errDown, errDown, errDown, errDown, nil}, delays: []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 2 * time.Second}},
		{name: "permanent stops at once", results: []error{backoff.Permanent(errBad)}, wantErr: "bad token"},
		{name: "wrapped permanent stops too", results: []error{errDown, fmt.Errorf("attesting: %w", backoff.Permanent(errBad))}, delays: []time.Duration{500 * time.Millisecond}, wantErr: "bad token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			h := startRetry(t, context.Background(), func(context.Context) error {
				calls++
				return tt.results[calls-1]
			})
			for _, d := range tt.delays {
				h.sleepThrough(t, d)
			}
			err := h.result(t)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Retry = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Retry = %v, want an error containing %q", err, tt.wantErr)
			}
			if tt.wantErr != "" && !errors.Is(err, errBad) {
				t.Errorf("Retry = %v, want the permanent error itself (errors.Is)", err)
			}
			if calls != len(tt.results) {
				t.Errorf("fn called %d times, want %d", calls, len(tt.results))
			}
			if len(h.retried) != len(tt.delays) {
				t.Errorf("onRetry called %d times, want %d", len(h.retried), len(tt.delays))
			}
		})
	}
}

// TestRetryCancelled: Retry returns ctx.Err() when the context ends during
// its sleep, without calling fn again.
func TestRetryCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	h := startRetry(t, ctx, func(context.Context) error { calls++; return errors.New("down") })
	<-h.delays
	cancel()
	if err := h.result(t); !errors.Is(err, context.Canceled) {
		t.Fatalf("Retry = %v, want context.Canceled", err)
	}
	if calls != 1 {
		t.Errorf("fn called %d times, want 1", calls)
	}
}

func TestSleep(t *testing.T) {
	clk := clock.NewFake(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	done := make(chan error, 1)
	go func() { done <- backoff.Sleep(context.Background(), clk, time.Minute) }()
	for clk.Waiters() == 0 {
		time.Sleep(time.Millisecond)
	}
	clk.Advance(59 * time.Second)
	select {
	case err := <-done:
		t.Fatalf("Sleep returned %v a second early", err)
	case <-time.After(20 * time.Millisecond):
	}
	clk.Advance(time.Second)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Sleep = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Sleep did not return after its delay")
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := backoff.Sleep(ctx, clk, time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("Sleep with a cancelled context = %v, want context.Canceled", err)
	}
}

func TestPermanentNil(t *testing.T) {
	if err := backoff.Permanent(nil); err != nil {
		t.Errorf("Permanent(nil) = %v, want nil", err)
	}
}

// hintErr is an error carrying a server's retry hint.
type hintErr time.Duration

func (h hintErr) Error() string { return fmt.Sprintf("busy, retry in %s", time.Duration(h)) }

func TestNextForHonoursHint(t *testing.T) {
	hint := func(err error) time.Duration {
		var h hintErr
		if errors.As(err, &h) {
			return time.Duration(h)
		}
		return 0
	}
	tests := []struct {
		name     string
		rand     float64
		err      error
		want     time.Duration
		noHinter bool
	}{
		{name: "no hint: the backoff", rand: 0.5, err: errors.New("down"), want: 100 * time.Millisecond},
		{name: "hint at its low end", rand: 0, err: fmt.Errorf("minting: %w", hintErr(3*time.Second)), want: 3 * time.Second},
		{name: "hint jittered", rand: 0.5, err: hintErr(2 * time.Second), want: 3 * time.Second},
		{name: "hint capped at Max", rand: 1, err: hintErr(time.Hour), want: 60 * time.Second},
		{name: "hints ignored without a reader", rand: 0.5, err: hintErr(2 * time.Second), want: 100 * time.Millisecond, noHinter: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := backoff.Config{Rand: constRand(tt.rand), Hint: hint}
			if tt.noHinter {
				cfg.Hint = nil
			}
			if got := backoff.New(cfg).NextFor(tt.err); got != tt.want {
				t.Errorf("NextFor = %s, want %s", got, tt.want)
			}
		})
	}
}
