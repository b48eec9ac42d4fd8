package agent

import (
	"context"
	"testing"
	"time"

	"github.com/signet-mesh/signet/internal/backoff"
	"github.com/signet-mesh/signet/internal/clock"
)

// TestMintRetryDelay: a failed mint of an SVID close to expiry is retried
// within a quarter of its remaining life, however far the backoff has
// grown; a long-lived SVID keeps the backoff's delay.
func TestMintRetryDelay(t *testing.T) {
	clk := clock.NewFake(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
	f := newRotateNowFixture(t, t.TempDir(), clk)
	grown := func() *backoff.Backoff {
		return backoff.New(backoff.Config{Initial: 20 * time.Second, Max: 20 * time.Second, Rand: func() float64 { return 0.99 }})
	}
	// "short" has 30 s of life: 24 s left after 6 s.
	clk.Advance(6 * time.Second)
	if d := f.a.mintRetryDelay(grown(), []string{"short", "long"}); d > 6*time.Second {
		t.Errorf("retry delay with 24 s of SVID life left: %v, want at most 6 s", d)
	}
	if d := f.a.mintRetryDelay(grown(), []string{"long"}); d < 19*time.Second {
		t.Errorf("retry delay for an hour-long SVID: %v, want the backoff's ~20 s", d)
	}
	if d := f.a.mintRetryDelay(grown(), []string{"new-entry"}); d < 19*time.Second {
		t.Errorf("retry delay for an entry without an SVID: %v, want the backoff's ~20 s", d)
	}
}

// TestMintRetryWokenByReconnect: when the entry sync stream reconnects
// (the CA is back), a mint retry waiting out its backoff goes at once.
func TestMintRetryWokenByReconnect(t *testing.T) {
	clk := clock.NewFake(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
	f := newRotateNowFixture(t, t.TempDir(), clk)
	b := backoff.New(backoff.Config{})
	b.Next()
	b.Next()
	done := make(chan bool, 1)
	go func() { done <- f.a.waitMintRetry(context.Background(), b, time.Hour) }()
	f.a.caBack <- struct{}{}
	select {
	case ok := <-done:
		if !ok {
			t.Error("waitMintRetry reported a cancelled context")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a reconnection did not end the wait")
	}
	if d := b.Next(); d > backoff.DefaultInitial {
		t.Errorf("after the reconnection the backoff was not reset: next delay %v", d)
	}
}
