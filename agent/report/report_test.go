package report

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/signet-mesh/signet/internal/backoff"
	"github.com/signet-mesh/signet/internal/clock"
	"github.com/signet-mesh/signet/internal/nodeapi"
	agentv1 "github.com/signet-mesh/signet/proto/signet/agent/v1"
	nodev1 "github.com/signet-mesh/signet/proto/signet/node/v1"
)

func TestConnectionCounts(t *testing.T) {
	r := New(Config{})
	web := "spiffe://example.org/web"
	r.AddConnections([]*agentv1.ConnectionCounts{
		{SpiffeId: web, Port: 8443, Mtls: 2, Plaintext: 1, PlaintextSources: []string{"10.0.0.1"}},
		{SpiffeId: web, Port: 8443, Plaintext: 2, Refused: 1, PlaintextSources: []string{"10.0.0.1", "10.0.0.2"}},
		{SpiffeId: web, Port: 9090, Mtls: 5},
	})
	got := r.takeCounts()
	slices.SortFunc(got, func(x, y *nodev1.ConnectionCounts) int { return int(x.Port) - int(y.Port) })
	want := []*nodev1.ConnectionCounts{
		{SpiffeId: web, Port: 8443, Mtls: 2, Plaintext: 3, Refused: 1, PlaintextSources: []string{"10.0.0.1", "10.0.0.2"}},
		{SpiffeId: web, Port: 9090, Mtls: 5},
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Fatalf("summed counts (-want +got):\n%s", diff)
	}
	if again := r.takeCounts(); again != nil {
		t.Fatalf("counts after take: %v", again)
	}
	// A failed report puts them back, added to what came meanwhile.
	r.AddConnections([]*agentv1.ConnectionCounts{{SpiffeId: web, Port: 9090, Mtls: 1}})
	r.putBack(want[1:])
	if got := r.takeCounts(); len(got) != 1 || got[0].Mtls != 6 {
		t.Fatalf("after put back: %v", got)
	}

	// Bounds: pairs and sources.
	var many []*agentv1.ConnectionCounts
	for i := range MaxPendingCounts + 10 {
		many = append(many, &agentv1.ConnectionCounts{SpiffeId: web, Port: uint32(i + 1), Plaintext: 1, PlaintextSources: []string{fmt.Sprint(i)}})
	}
	r.AddConnections(many)
	var sources []string
	for i := range MaxPendingSources + 10 {
		sources = append(sources, fmt.Sprint("10.1.0.", i))
	}
	r.AddConnections([]*agentv1.ConnectionCounts{{SpiffeId: web, Port: 1, PlaintextSources: sources}})
	got = r.takeCounts()
	if len(got) != MaxPendingCounts {
		t.Fatalf("held %d pairs, want the limit %d", len(got), MaxPendingCounts)
	}
	for _, c := range got {
		if len(c.PlaintextSources) > MaxPendingSources {
			t.Fatalf("held %d sources, want at most %d", len(c.PlaintextSources), MaxPendingSources)
		}
	}
}

// recordingCA is a hand-written CA that records reports and fails while
// err is set.
type recordingCA struct {
	mu      sync.Mutex
	err     error
	reports []call
	got     chan struct{}
}

type call struct {
	revision int64
	counts   int
}

func (c *recordingCA) ReportConnections(_ context.Context, rev int64, counts []*nodev1.ConnectionCounts) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reports = append(c.reports, call{rev, len(counts)})
	c.got <- struct{}{}
	return c.err
}

func (c *recordingCA) setErr(err error) {
	c.mu.Lock()
	c.err = err
	c.mu.Unlock()
}

func (c *recordingCA) wait(t *testing.T) call {
	t.Helper()
	select {
	case <-c.got:
	case <-time.After(10 * time.Second):
		t.Fatal("no report")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reports[len(c.reports)-1]
}

// TestRun: a new bundle is reported at once, with the revision served
// then; counts go every interval when there are any, and come back for the
// next report when one fails; a node rejection ends Run with it.
func TestRun(t *testing.T) {
	clk := clock.NewFake(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
	ca := &recordingCA{got: make(chan struct{}, 10)}
	var rev int64 = 7
	r := New(Config{CA: ca, BundleRevision: func() int64 { return rev }, Clock: clk})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()

	r.BundleApplied(0)
	if got := ca.wait(t); got != (call{revision: 7}) {
		t.Fatalf("bundle report = %+v, want revision 7 and no counts", got)
	}
	tick := func() {
		for clk.Waiters() == 0 {
			time.Sleep(time.Millisecond)
		}
		clk.Advance(ConnectionReportInterval)
	}
	r.AddConnections([]*agentv1.ConnectionCounts{{SpiffeId: "spiffe://example.org/web", Port: 1, Mtls: 1}})
	ca.setErr(errors.New("CA unreachable"))
	tick()
	if got := ca.wait(t); got.counts != 1 {
		t.Fatalf("count report = %+v, want 1 count", got)
	}
	ca.setErr(nil)
	r.AddConnections([]*agentv1.ConnectionCounts{{SpiffeId: "spiffe://example.org/db", Port: 1, Mtls: 1}})
	tick()
	if got := ca.wait(t); got.counts != 2 {
		t.Fatalf("report after a failed one = %+v, want its count back plus the new one", got)
	}

	ca.setErr(nodeapi.RejectNode(nodeapi.ReasonEvicted, "evicted"))
	r.BundleApplied(0)
	ca.wait(t)
	select {
	case err := <-done:
		if reason, ok := nodeapi.NodeRejection(err); !ok || reason != nodeapi.ReasonEvicted {
			t.Fatalf("Run = %v, want the node rejection", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run went on after the CA rejected the node")
	}
}

// TestRunRetriesBundleReport: bundles applied together are reported
// once; a bundle report that fails is tried again after the backoff, with
// the revision served by then, until one gets through, and then no more.
func TestRunRetriesBundleReport(t *testing.T) {
	clk := clock.NewFake(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
	ca := &recordingCA{got: make(chan struct{}, 10)}
	var rev atomic.Int64
	rev.Store(7)
	r := New(Config{CA: ca, BundleRevision: rev.Load, Clock: clk,
		Backoff: backoff.Config{Initial: time.Second, Max: time.Second, Rand: backoff.NewRand(1)}})
	ca.setErr(status.Error(codes.Unavailable, "CA busy"))
	for range 3 {
		r.BundleApplied(0)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx)

	if got := ca.wait(t); got != (call{revision: 7}) {
		t.Fatalf("first bundle report = %+v, want revision 7", got)
	}
	if n := len(r.applied); n != 0 {
		t.Fatalf("%d bundle reports still queued after three bundles were reported in one", n)
	}
	// The ticker and the retry.
	waitTimers(t, clk, 2)
	clk.Advance(2 * time.Second)
	if got := ca.wait(t); got != (call{revision: 7}) {
		t.Fatalf("second try = %+v, want revision 7", got)
	}
	waitTimers(t, clk, 2)
	rev.Store(8) // applied while the CA was busy; its report is the retry
	ca.setErr(nil)
	clk.Advance(2 * time.Second)
	if got := ca.wait(t); got != (call{revision: 8}) {
		t.Fatalf("report once the CA answers = %+v, want revision 8", got)
	}
	waitTimers(t, clk, 1) // only the ticker: nothing left to retry
}

// TestRunSpreadsBundleReport: with a spread from the CA, a new bundle is
// reported at a random point of it, once for the bundles applied
// meanwhile and with the revision served then; a count report that goes
// first carries the revision and leaves nothing to report.
func TestRunSpreadsBundleReport(t *testing.T) {
	const spread = 20 * time.Second
	clk := clock.NewFake(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
	ca := &recordingCA{got: make(chan struct{}, 10)}
	var rev atomic.Int64
	rev.Store(7)
	rnd := backoff.NewRand(1)
	delay := time.Duration(backoff.NewRand(1)() * float64(spread)) // the first draw of rnd
	if delay >= ConnectionReportInterval {
		t.Fatalf("seed gives a delay of %s: the test needs one before the first count report", delay)
	}
	r := New(Config{CA: ca, BundleRevision: rev.Load, Clock: clk, Backoff: backoff.Config{Rand: rnd}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := clk.Now()
	go r.Run(ctx)
	reports := func() int {
		ca.mu.Lock()
		defer ca.mu.Unlock()
		return len(ca.reports)
	}

	r.BundleApplied(spread)
	waitTimers(t, clk, 2) // the ticker and the spread's delay
	rev.Store(8)
	r.BundleApplied(spread) // a second bundle while the first waits
	clk.Advance(delay - time.Millisecond)
	if n := reports(); n != 0 {
		t.Fatalf("%d reports before the spread's delay of %s", n, delay)
	}
	clk.Advance(time.Millisecond)
	if got := ca.wait(t); got != (call{revision: 8}) {
		t.Fatalf("spread bundle report = %+v, want revision 8", got)
	}
	waitTimers(t, clk, 1) // only the ticker: the second bundle went with the first
	if n := reports(); n != 1 {
		t.Fatalf("%d reports for two bundles applied together, want 1", n)
	}

	// A count report before the delay carries the new revision.
	rev.Store(9)
	r.BundleApplied(spread)
	waitTimers(t, clk, 2)
	r.AddConnections([]*agentv1.ConnectionCounts{{SpiffeId: "spiffe://example.org/web", Port: 1, Mtls: 1}})
	clk.Advance(start.Add(ConnectionReportInterval).Sub(clk.Now())) // the first tick; the second delay is longer
	if got := ca.wait(t); got != (call{revision: 9, counts: 1}) {
		t.Fatalf("count report = %+v, want revision 9 with 1 count", got)
	}
	waitTimers(t, clk, 1) // the bundle's report is done
}

// waitTimers waits, up to a deadline, until n timers are armed on clk:
// Run's goroutine has acted on what the test did.
func waitTimers(t *testing.T, clk *clock.Fake, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for clk.Waiters() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d timers armed, want %d", clk.Waiters(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestRunStoresBeforeReport: the CA hears of a bundle only after the node
// stored it; a failed store holds the report back, and is tried again
// after the backoff; a bundle still unreported when Run ends is stored on
// the way out.
func TestRunStoresBeforeReport(t *testing.T) {
	clk := clock.NewFake(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
	ca := &recordingCA{got: make(chan struct{}, 10)}
	var (
		rev      atomic.Int64
		mu       sync.Mutex
		stored   int64 // the revision served when Store last succeeded
		storeErr = errors.New("disk full")
	)
	rev.Store(7)
	storedRev := func() int64 { mu.Lock(); defer mu.Unlock(); return stored }
	r := New(Config{CA: ca, BundleRevision: rev.Load, Clock: clk,
		Store: func() error {
			mu.Lock()
			defer mu.Unlock()
			if storeErr != nil {
				return storeErr
			}
			stored = rev.Load()
			return nil
		},
		Backoff: backoff.Config{Initial: time.Second, Max: time.Second, Rand: backoff.NewRand(1)}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()

	r.BundleApplied(0)
	waitTimers(t, clk, 2) // the ticker and the retry after the failed store
	if n := len(ca.reports); n != 0 {
		t.Fatalf("%d reports although the bundle could not be stored", n)
	}
	mu.Lock()
	storeErr = nil
	mu.Unlock()
	clk.Advance(2 * time.Second)
	if got := ca.wait(t); got != (call{revision: 7}) || storedRev() != 7 {
		t.Fatalf("report after the store worked = %+v with revision %d stored, want revision 7 stored then reported", got, storedRev())
	}
	waitTimers(t, clk, 1)

	// Applied, not reported yet (the spread's delay), when the agent stops.
	rev.Store(8)
	r.BundleApplied(time.Hour)
	waitTimers(t, clk, 2)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := storedRev(); got != 8 {
		t.Fatalf("stored revision after Run ended = %d, want 8", got)
	}
	if n := len(ca.reports); n != 1 {
		t.Fatalf("%d reports, want 1", n)
	}
}
