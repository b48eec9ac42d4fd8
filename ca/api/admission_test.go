package api

import (
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/signet-mesh/signet/internal/clock"
	"github.com/signet-mesh/signet/internal/nodeapi"
)

// TestGate: calls past the bound are refused at once with a hint that
// grows with the crowd refused and the time a call takes, within its
// floor and cap; a released slot is taken again.
func TestGate(t *testing.T) {
	clk := clock.NewFake(time.Now())
	g := newGate("mint batches", 2, 500*time.Millisecond, clk, nil)
	r1, err := g.enter()
	if err != nil {
		t.Fatal(err)
	}
	r2, err := g.enter()
	if err != nil {
		t.Fatal(err)
	}
	// Each admitted call takes 100 ms.
	clk.Advance(100 * time.Millisecond)
	r1.done()
	r2.done()
	var hints []time.Duration
	msgs := map[string]bool{}
	hold := []*admitted{}
	for range 2 {
		r, err := g.enter()
		if err != nil {
			t.Fatal(err)
		}
		hold = append(hold, r)
	}
	for range 40 {
		_, err := g.enter()
		if status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("enter past the bound = %v, want ResourceExhausted", err)
		}
		hints = append(hints, nodeapi.RetryHint(err))
		msgs[status.Convert(err).Message()] = true
	}
	// The hint is in the RetryInfo only: a message that carried it too
	// would be one more header each agent connection's HPACK table keeps.
	if len(msgs) != 1 {
		t.Errorf("refusals with hints %v ... %v carried %d messages, want one: %v", hints[0], hints[39], len(msgs), msgs)
	}
	for m := range msgs {
		if !strings.Contains(m, "limit of 2 concurrent mint batches") {
			t.Errorf("refusal message %q does not name the bound (2 concurrent mint batches)", m)
		}
	}
	// Each refused call queues 100 ms / 2 slots = 50 ms behind the ones
	// before it, and is hinted two thirds of its wait (the agent waits the
	// hint to twice the hint): the first ones the floor, the 40th 2 s of
	// queue, a 1.5 s hint once rounded.
	if hints[0] != 500*time.Millisecond || hints[39] != 1500*time.Millisecond {
		t.Errorf("hints %v ... %v, want 500ms (the floor) ... 1.5s (2/3 of 40 x 100ms / 2 slots)", hints[0], hints[39])
	}
	for range 1000 {
		_, err = g.enter()
	}
	if h := nodeapi.RetryHint(err); h != MaxRetryAfter {
		t.Errorf("hint for a huge crowd %v, want the cap %v", h, MaxRetryAfter)
	}
	// A second later the crowd is still ahead of a newcomer, who is not
	// told to come back into it.
	clk.Advance(1100 * time.Millisecond)
	if _, err := g.enter(); nodeapi.RetryHint(err) != MaxRetryAfter {
		t.Errorf("hint a second after a huge crowd = %v, want the cap %v", nodeapi.RetryHint(err), MaxRetryAfter)
	}
	// Once the crowd is due back, a refusal is hinted the floor again.
	clk.Advance(MaxRetryAfter * 3 / 2)
	if _, err := g.enter(); nodeapi.RetryHint(err) != 500*time.Millisecond {
		t.Errorf("hint once the crowd is due back = %v, want the floor", nodeapi.RetryHint(err))
	}
	hold[0].done()
	if _, err := g.enter(); err != nil {
		t.Errorf("enter after a release = %v, want a slot", err)
	}
}

// TestGateCommitting: a call waiting on its commit holds no work slot,
// so the work bound admits the next call at once; the calls in flight are
// still bounded, at InFlightFactor times the work bound, and a crowd
// refused there is hinted at the pace the commits allow.
func TestGateCommitting(t *testing.T) {
	clk := clock.NewFake(time.Now())
	refusals := map[string]int{}
	g := newGate("mint batches", 2, 100*time.Millisecond, clk, func(bound string) { refusals[bound]++ })
	var waiting []*admitted
	for i := range 2 * InFlightFactor {
		a, err := g.enter()
		if err != nil {
			t.Fatalf("call %d, every earlier one committing: %v, want a slot", i, err)
		}
		a.committing()
		a.committing() // a second call changes nothing
		waiting = append(waiting, a)
	}
	_, err := g.enter()
	inFlight := 2 * InFlightFactor
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), fmt.Sprintf("%d mint batches in flight", inFlight)) {
		t.Fatalf("enter with %d calls committing = %v, want ResourceExhausted at the in-flight bound", inFlight, err)
	}
	// Calls of 1 s in flight, inFlight at a time: twice as many refused
	// need 2 s, two thirds of which is the hint (1.5 s once rounded).
	clk.Advance(time.Second)
	for _, a := range waiting {
		a.done()
	}
	hold := make([]*admitted, 0, 2*InFlightFactor)
	for range 2 * InFlightFactor {
		a, err := g.enter()
		if err != nil {
			t.Fatal(err)
		}
		a.committing()
		hold = append(hold, a)
	}
	clk.Advance(1100 * time.Millisecond) // the one refused above is due back
	var hint time.Duration
	for range 2 * inFlight {
		_, err := g.enter()
		hint = nodeapi.RetryHint(err)
	}
	if hint != 1500*time.Millisecond {
		t.Errorf("hint after %d refused = %v, want 1.5s (2/3 of %d x 1s / %d in flight)", 2*inFlight, hint, 2*inFlight, inFlight)
	}
	// Two calls still signing fill the work bound whatever is in flight.
	for _, a := range hold {
		a.done()
	}
	w1, _ := g.enter()
	w2, _ := g.enter()
	if _, err := g.enter(); status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "2 concurrent mint batches") {
		t.Fatalf("enter with 2 calls signing = %v, want ResourceExhausted at the work bound", err)
	}
	w1.committing()
	if _, err := g.enter(); err != nil {
		t.Errorf("enter after a call committed = %v, want its work slot", err)
	}
	w2.done()
	if want := map[string]int{BoundInFlight: 1 + 2*inFlight, BoundSigning: 1}; !maps.Equal(refusals, want) {
		t.Errorf("refusals counted %v, want %v", refusals, want)
	}
}

// TestRoundHint: hints are rounded to a few values per decade, the
// nearest on a log scale, so that an agent connection sees few distinct
// trailer values however many refusals it gets.
func TestRoundHint(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   time.Duration
		want time.Duration
	}{
		{name: "zero", in: 0, want: 0},
		{name: "a step", in: 2 * time.Second, want: 2 * time.Second},
		{name: "just above a step", in: 2100 * time.Millisecond, want: 2 * time.Second},
		{name: "between 2 and 3", in: 2600 * time.Millisecond, want: 3 * time.Second},
		{name: "below a decade", in: 9600 * time.Millisecond, want: 10 * time.Second},
		{name: "milliseconds", in: 523 * time.Millisecond, want: 600 * time.Millisecond},
		{name: "sub-millisecond precision", in: 1123456 * time.Microsecond, want: 1 * time.Second},
		{name: "fifteen seconds", in: 14 * time.Second, want: 15 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := roundHint(tc.in); got != tc.want {
				t.Errorf("roundHint(%v) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
	seen := map[time.Duration]bool{}
	for d := 500 * time.Millisecond; d <= MaxRetryAfter; d += time.Millisecond {
		seen[roundHint(d)] = true
	}
	if len(seen) > 12 {
		t.Errorf("%d distinct hints between 500ms and %v, want at most 12", len(seen), MaxRetryAfter)
	}
}
