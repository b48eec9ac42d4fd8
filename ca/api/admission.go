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
// The hint gives each refused call a place behind the calls refused
// before it and not yet due back, at the pace the CA serves them now (see
// refusal), so a larger crowd is spread over a longer window.
//
// Each bound counts the calls checking requests and signing: the work
// that takes the cores. A call whose certificates are signed gives its
// slot back before it waits for its durable commit (one group commit, one
// fsync for many calls), which costs the CA no CPU: held through that
// wait, the slots ran out while the cores were idle, and a rotate-now's
// re-mint was refused tens of thousands of times. Calls waiting on their
// commit are bounded too, at InFlightFactor times the bound.
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
	// InFlightFactor is how many calls of a kind may be in flight (signing
	// or waiting on their commit) per slot of its bound. At 16, a
	// 10,000-agent rotate-now saw 57,000 mint calls refused while their
	// commits queued, each refusal a round trip and a request decoded for
	// nothing; a call waiting holds some 30 KB (its CSRs and
	// certificates), so 512 of them on two cores are 15 MB.
	InFlightFactor = 64
)

// gate is one bound of Admission.
type gate struct {
	what string
	// work holds the calls checking and signing; calls holds every call
	// admitted and not done, working or waiting on its commit.
	work  chan struct{}
	calls chan struct{}
	base  time.Duration
	clock clock.Clock
	// busyMsg and fullMsg are the messages of a refusal at the work
	// bound and at the in-flight bound: fixed per gate, so each agent
	// connection's HTTP/2 header table indexes each once (see roundHint).
	// The hint travels in the RetryInfo.
	busyMsg, fullMsg string
	// onRefuse, if set, counts each refusal by the bound that refused it
	// (BoundSigning, BoundInFlight).
	onRefuse func(bound string)

	mu sync.Mutex
	// dueEnd is when the calls refused so far are due back: the end of the
	// queue of refused calls, which drains at the gate's pace.
	dueEnd time.Time
	// workCost and callCost are moving averages of how long an admitted
	// call holds its work slot, and how long it is in flight.
	workCost, callCost time.Duration
}

// Bounds of a gate, for NodeMetrics.AdmissionRefused.
const (
	BoundSigning  = "signing"
	BoundInFlight = "in_flight"
)

func newGate(what string, limit int, base time.Duration, clk clock.Clock, onRefuse func(bound string)) *gate {
	if limit <= 0 {
		limit = 4 * runtime.GOMAXPROCS(0)
	}
	if base <= 0 {
		base = DefaultRetryAfter
	}
	return &gate{
		what: what, work: make(chan struct{}, limit), calls: make(chan struct{}, InFlightFactor*limit),
		base: base, clock: clk, onRefuse: onRefuse,
		busyMsg: fmt.Sprintf("the CA is at its limit of %d concurrent %s; retry after the delay in the RetryInfo", limit, what),
		fullMsg: fmt.Sprintf("the CA is at its limit of %d %s in flight; retry after the delay in the RetryInfo", InFlightFactor*limit, what),
	}
}

// admitted is a call a gate let in.
type admitted struct {
	g       *gate
	start   time.Time
	working bool
}

// enter admits a call, or refuses it with nodeapi.Overloaded. The caller
// calls committing once its certificates are signed, if it then waits on
// a durable commit, and done when it returns.
func (g *gate) enter() (*admitted, error) {
	select {
	case g.calls <- struct{}{}:
	default:
		return nil, nodeapi.Overloaded(g.fullMsg, g.refusal(BoundInFlight))
	}
	select {
	case g.work <- struct{}{}:
		return &admitted{g: g, start: g.clock.Now(), working: true}, nil
	default:
	}
	<-g.calls
	return nil, nodeapi.Overloaded(g.busyMsg, g.refusal(BoundSigning))
}

// committing gives the call's work slot back: what is left is the wait on
// its durable commit.
func (a *admitted) committing() {
	if !a.working {
		return
	}
	a.working = false
	<-a.g.work
	a.g.observe(&a.g.workCost, a.g.clock.Now().Sub(a.start))
}

// done ends the call.
func (a *admitted) done() {
	a.committing()
	<-a.g.calls
	a.g.observe(&a.g.callCost, a.g.clock.Now().Sub(a.start))
}

func (g *gate) observe(cost *time.Duration, d time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if *cost == 0 {
		*cost = d
		return
	}
	*cost += (d - *cost) / 16
}

// refusal counts a refusal and returns its hint. The refused call takes
// the next place in the queue of calls refused before it and not yet due
// back, which drains at the pace of the gate's slower bound; the hint is
// the wait for that place, at least the base. An agent waits the hint to
// twice the hint (internal/backoff), one and a half times on average, so
// the hint is two thirds of the wait: the fleet comes back around its
// places, not after them.
//
// A count of the calls refused in the last second, which the hint was
// before, forgot the crowd every second: in a 10,000-agent rotate-now each
// second's first refusals got the floor and came back into the next
// second's crowd, about five refusals for each call admitted.
func (g *gate) refusal(bound string) time.Duration {
	if g.onRefuse != nil {
		g.onRefuse(bound)
	}
	now := g.clock.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	perCall := max(g.workCost/time.Duration(cap(g.work)), g.callCost/time.Duration(cap(g.calls)))
	if g.dueEnd.Before(now) {
		g.dueEnd = now
	}
	// The queue is never longer than the longest hint allows: past it,
	// the calls come back at the cap and are refused again.
	g.dueEnd = g.dueEnd.Add(perCall)
	if longest := now.Add(MaxRetryAfter * 3 / 2); g.dueEnd.After(longest) {
		g.dueEnd = longest
	}
	wait := g.dueEnd.Sub(now) * 2 / 3
	return min(max(g.base, roundHint(wait)), MaxRetryAfter)
}
