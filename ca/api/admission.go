package api

import (
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/signet-mesh/signet/internal/clock"
	"github.com/signet-mesh/signet/internal/nodeapi"
)

// Admission bounds the work a fleet can put on one CA at once. A call
// over a bound is not queued: it gets ResourceExhausted at once with a
// google.rpc.RetryInfo (nodeapi.Overloaded), and the agent waits at least
// that long, jittered (internal/backoff), so a fleet that arrives together
// (a CA restart, a root rotated now) is spread out instead of queued up.
// The hint is the time the CA needs to serve the calls it refused in the
// last second at the pace it serves them now, so a larger crowd is spread
// over a longer window.
type Admission struct {
	// MaxAttestations bounds concurrent AttestNode calls; 0 means
	// 4 x GOMAXPROCS.
	MaxAttestations int
	// MaxMintBatches bounds concurrent MintX509SVIDs and RenewNodeSVID
	// calls (each signs up to MaxMintBatch certificates on every core);
	// 0 means 4 x GOMAXPROCS.
	MaxMintBatches int
	// RetryAfter is the smallest retry hint; 0 means DefaultRetryAfter.
	RetryAfter time.Duration
}

const (
	// DefaultRetryAfter is the retry hint of a call refused while few are.
	DefaultRetryAfter = 500 * time.Millisecond
	// MaxRetryAfter caps the hint: a crowd of any size is spread over at
	// most twice this (the agent's jitter doubles it at most).
	MaxRetryAfter = 15 * time.Second
)

// gate is one bound of Admission.
type gate struct {
	what  string
	slots chan struct{}
	base  time.Duration
	clock clock.Clock

	mu          sync.Mutex
	windowStart time.Time
	refused     int
	// cost is a moving average of how long an admitted call holds its
	// slot.
	cost time.Duration
}

func newGate(what string, limit int, base time.Duration, clk clock.Clock) *gate {
	if limit <= 0 {
		limit = 4 * runtime.GOMAXPROCS(0)
	}
	if base <= 0 {
		base = DefaultRetryAfter
	}
	return &gate{what: what, slots: make(chan struct{}, limit), base: base, clock: clk}
}

// enter takes a slot, or refuses with nodeapi.Overloaded. The caller
// calls release when its work is done.
func (g *gate) enter() (release func(), err error) {
	select {
	case g.slots <- struct{}{}:
		start := g.clock.Now()
		return func() {
			<-g.slots
			g.observe(g.clock.Now().Sub(start))
		}, nil
	default:
	}
	hint := g.refusal()
	return nil, nodeapi.Overloaded(fmt.Sprintf("the CA is at its limit of %d concurrent %s; retry in %s", cap(g.slots), g.what, hint), hint)
}

func (g *gate) observe(d time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cost == 0 {
		g.cost = d
		return
	}
	g.cost += (d - g.cost) / 16
}

// refusal counts a refusal and returns its hint: the time the slots need
// for the calls refused in the last second, at least the base.
func (g *gate) refusal() time.Duration {
	now := g.clock.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if now.Sub(g.windowStart) > time.Second {
		g.windowStart, g.refused = now, 0
	}
	g.refused++
	need := time.Duration(g.refused) * g.cost / time.Duration(cap(g.slots))
	return min(max(g.base, roundHint(need)), MaxRetryAfter)
}
