// Package backoff is signet's one retry policy: exponential backoff with full
// jitter, capped. Every component that retries a remote call (the agent
// talking to the CA, the SDS client talking to the agent) uses it, so
// retries behave the same everywhere and are tuned in one place.
//
//	b := backoff.New(backoff.Config{})
//	for {
//		if err := call(); err == nil {
//			b.Reset()
//			break
//		}
//		if err := backoff.Sleep(ctx, clk, b.Next()); err != nil {
//			return err // ctx done
//		}
//	}
//
// or, the same loop in one call:
//
//	err := backoff.Retry(ctx, clk, b, call, func(err error, d time.Duration) {
//		log.Warn("call failed; retrying", "error", err, "retry_in", d)
//	})
//
// The jitter comes from a Rand, the one source of randomness for spreading
// retries and renewals: components take one in their Config (tests pass
// NewRand with a fixed seed, so every delay is reproducible) and default to
// SystemRand.
package backoff

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/signet-mesh/signet/internal/clock"
)

// Defaults, chosen so that an agent reconnects within a second of a brief
// blip but a fleet of agents never hammers a CA that is down.
const (
	DefaultInitial = 200 * time.Millisecond
	DefaultMax     = 30 * time.Second
)

// Config tunes a Backoff. Zero values take the defaults above.
type Config struct {
	// Initial is the ceiling of the first delay.
	Initial time.Duration
	// Max caps the ceiling; delays never exceed it.
	Max time.Duration
	// Rand draws the jitter; nil uses SystemRand. Tests pass NewRand.
	Rand Rand
	// Hint reads, from a failed call's error, how long the server asked
	// callers to wait before retrying (0: it did not say). NextFor honours
	// it: the delay is then at least the hint, jittered over [hint,
	// 2*hint] so that callers refused together do not come back together.
	// Nil means no hints.
	Hint func(error) time.Duration
}

// Backoff yields successive delays. It is safe for concurrent use.
type Backoff struct {
	mu      sync.Mutex
	cfg     Config
	attempt int
}

// New returns a Backoff with cfg's zero fields defaulted.
func New(cfg Config) *Backoff {
	if cfg.Initial <= 0 {
		cfg.Initial = DefaultInitial
	}
	if cfg.Max <= 0 {
		cfg.Max = DefaultMax
	}
	if cfg.Max < cfg.Initial {
		cfg.Max = cfg.Initial
	}
	cfg.Rand = OrSystem(cfg.Rand)
	return &Backoff{cfg: cfg}
}

// ceiling is the upper bound of the delay for attempt n (0-based):
// min(Max, Initial*2^n).
func (b *Backoff) ceiling(n int) time.Duration {
	c := b.cfg.Initial
	for i := 0; i < n; i++ {
		c *= 2
		if c >= b.cfg.Max || c <= 0 {
			return b.cfg.Max
		}
	}
	return c
}

// Next returns the next delay, uniformly random in [0, ceiling] ("full
// jitter"), and advances the attempt count.
func (b *Backoff) Next() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.ceiling(b.attempt)
	if c < b.cfg.Max {
		b.attempt++
	}
	return time.Duration(b.cfg.Rand() * float64(c))
}

// NextFor is Next after a failure err: when Config.Hint reads a retry
// hint from err, the delay is uniformly random in [hint, 2*hint] (capped
// at 2*Max), else it is Next(). Either way the attempt count advances.
func (b *Backoff) NextFor(err error) time.Duration {
	d := b.Next()
	if b.cfg.Hint == nil || err == nil {
		return d
	}
	hint := min(b.cfg.Hint(err), b.cfg.Max)
	if hint <= 0 {
		return d
	}
	return hint + time.Duration(b.cfg.Rand()*float64(hint))
}

// Ceiling reports the current cap on the next delay, for metrics.
func (b *Backoff) Ceiling() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ceiling(b.attempt)
}

// Reset starts over after a success.
func (b *Backoff) Reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.attempt = 0
}

// Sleep waits d on clk, or returns ctx.Err() when ctx ends first.
func Sleep(ctx context.Context, clk clock.Clock, d time.Duration) error {
	t := clock.OrReal(clk).NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C():
		return nil
	}
}

// Retry calls fn until it returns nil, a permanent error (see Permanent), or
// ctx ends, sleeping b.NextFor(err) between attempts. onRetry, if set, is told of
// each failure and the delay before the next attempt. It returns nil, the
// error Permanent wrapped, or ctx.Err().
func Retry(ctx context.Context, clk clock.Clock, b *Backoff, fn func(context.Context) error, onRetry func(err error, delay time.Duration)) error {
	for {
		err := fn(ctx)
		if err == nil {
			b.Reset()
			return nil
		}
		if p := (*permanentError)(nil); errors.As(err, &p) {
			return p.err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		d := b.NextFor(err)
		if onRetry != nil {
			onRetry(err, d)
		}
		if err := Sleep(ctx, clk, d); err != nil {
			return err
		}
	}
}

// permanentError marks an error that Retry must not retry.
type permanentError struct{ err error }

func (p *permanentError) Error() string { return p.err.Error() }
func (p *permanentError) Unwrap() error { return p.err }

// Permanent wraps err so that Retry returns it (unwrapped) at once instead
// of retrying, even when fn wraps the result further. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}
