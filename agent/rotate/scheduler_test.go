package rotate_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/signet-mesh/signet/agent/rotate"
	"github.com/signet-mesh/signet/internal/backoff"
	"github.com/signet-mesh/signet/internal/clock"
)

// leaf is enough of a certificate for the schedule: a validity period.
func leaf(t *testing.T, notBefore time.Time, ttl time.Duration) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(notBefore.UnixNano()), NotBefore: notBefore, NotAfter: notBefore.Add(ttl)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// noCache is a cache without SVIDs.
type noCache struct{}

func (noCache) PruneExpired() int       { return 0 }
func (noCache) Stats() (int, time.Time) { return 0, time.Time{} }
func newScheduler(clk clock.Clock, file string, r backoff.Rand) *rotate.Scheduler {
	return rotate.NewScheduler(rotate.SchedulerConfig{Cache: noCache{}, GenerationFile: file, Clock: clk, Rand: r})
}

// TestScheduleJitter: times follow RotateAt with the injected Rand, so the
// same seed gives the same schedule, and the lifetime counts from when the
// agent got the certificate, not from its backdated NotBefore.
func TestScheduleJitter(t *testing.T) {
	clk := clock.NewFake(time.Date(2030, 1, 2, 3, 0, 0, 0, time.UTC))
	now := clk.Now()
	cert := leaf(t, now.Add(-time.Minute), time.Hour+time.Minute) // backdated a minute
	schedule := func(seed uint64) []time.Time {
		s := newScheduler(clk, "", backoff.NewRand(seed))
		var out []time.Time
		for _, id := range []string{"a", "b", "c"} {
			s.Schedule(id, cert)
			at, _ := s.At(id)
			out = append(out, at)
		}
		return out
	}
	first := schedule(1)
	if diff := cmp.Diff(first, schedule(1)); diff != "" {
		t.Errorf("same seed, different schedule (-first +second):\n%s", diff)
	}
	if diff := cmp.Diff(first, schedule(2)); diff == "" {
		t.Errorf("different seeds, same schedule %v", first)
	}
	for _, at := range first {
		if lo, hi := now.Add(24*time.Minute), now.Add(30*time.Minute); at.Before(lo) || at.After(hi) {
			t.Errorf("renewal at %v, want within [%v, %v] (40-50%% of the hour left from now)", at, lo, hi)
		}
	}
}

// TestRunDispatches: Run hands due entries to Due and a due node SVID to
// NodeDue, at their time and not before, and a forgotten entry to neither.
func TestRunDispatches(t *testing.T) {
	clk := clock.NewFake(time.Date(2030, 1, 2, 3, 0, 0, 0, time.UTC))
	due := make(chan []string, 10)
	nodeDue := make(chan struct{}, 10)
	s := rotate.NewScheduler(rotate.SchedulerConfig{
		Cache:   noCache{},
		Due:     func(ids []string) { slices.Sort(ids); due <- ids },
		NodeDue: func() { nodeDue <- struct{}{} },
		Clock:   clk, Rand: func() float64 { return 0 }, // due at exactly half life
	})
	now := clk.Now()
	s.Schedule("a", leaf(t, now, 10*time.Minute))
	s.Schedule("b", leaf(t, now, 10*time.Minute))
	s.Schedule("gone", leaf(t, now, 10*time.Minute))
	s.Forget("gone")
	s.ScheduleNode(leaf(t, now, time.Hour))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	advance := func(d time.Duration) {
		deadline := time.Now().Add(10 * time.Second)
		for clk.Waiters() == 0 {
			if time.Now().After(deadline) {
				t.Fatal("Run armed no timer")
			}
			time.Sleep(time.Millisecond)
		}
		clk.Advance(d)
	}
	advance(5*time.Minute - time.Second)
	select {
	case ids := <-due:
		t.Fatalf("%v due a second early", ids)
	case <-time.After(50 * time.Millisecond):
	}
	advance(time.Second)
	select {
	case ids := <-due:
		if diff := cmp.Diff([]string{"a", "b"}, ids); diff != "" {
			t.Errorf("due entries (-want +got):\n%s", diff)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("entries not due at half life")
	}
	if _, ok := s.At("a"); ok {
		t.Error("a due entry is still scheduled: it is being minted")
	}
	advance(25 * time.Minute)
	select {
	case <-nodeDue:
	case <-time.After(10 * time.Second):
		t.Fatal("node SVID not due at half life")
	}
	if _, ok := s.NodeAt(); ok {
		t.Error("a due node SVID is still scheduled")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v, want nil on cancellation", err)
	}
}

// TestRotateNow: the CA's rotate generation pulls every SVID, the node's
// too, into its rotate-now window, once per generation, across restarts.
func TestRotateNow(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "rotate-generation")
	clk := clock.NewFake(time.Now().Truncate(time.Second))
	now := clk.Now()
	r := backoff.NewRand(7)
	s := newScheduler(clk, file, r)
	short, long, node := leaf(t, now, 30*time.Second), leaf(t, now, time.Hour), leaf(t, now, time.Hour)
	s.Schedule("short", short)
	s.Schedule("long", long)
	s.ScheduleNode(node)
	at := func(s *rotate.Scheduler, id string) time.Duration {
		a, ok := s.At(id)
		if !ok {
			t.Fatalf("%s not scheduled", id)
		}
		return a.Sub(now)
	}
	normalNode, _ := s.NodeAt()

	// Generation 0 (no activation with --rotate-now yet) changes nothing.
	s.ApplyGeneration(0, 0)
	if d := at(s, "long"); d < 24*time.Minute {
		t.Fatalf("long SVID due at +%v before any rotate-now", d)
	}

	s.ApplyGeneration(1, 0)
	for _, tc := range []struct {
		id     string
		spread time.Duration
	}{{"short", 3 * time.Second}, {"long", rotate.RotateNowMaxSpread}} {
		if d := at(s, tc.id); d < 0 || d >= tc.spread {
			t.Errorf("%s: re-mint at +%v, want within [0, %v)", tc.id, d, tc.spread)
		}
	}
	if nodeAt, _ := s.NodeAt(); nodeAt.Sub(now) < 0 || nodeAt.Sub(now) >= rotate.RotateNowMaxSpread {
		t.Errorf("node SVID: renewal at +%v, want within [0, %v)", nodeAt.Sub(now), rotate.RotateNowMaxSpread)
	}
	// A renewed node SVID is back on its normal schedule.
	s.ScheduleNode(leaf(t, now, time.Hour))
	if nodeAt, _ := s.NodeAt(); nodeAt.Sub(now) < 24*time.Minute {
		t.Errorf("renewed node SVID due at +%v (normal: +%v), want its normal schedule", nodeAt.Sub(now), normalNode.Sub(now))
	}
	data, err := os.ReadFile(file)
	if err != nil || strings.TrimSpace(string(data)) != "1" {
		t.Errorf("saved generation %q, %v; want 1", data, err)
	}

	// The same generation again (a reconnect's full message) is ignored.
	s.Schedule("long", long)
	s.ApplyGeneration(1, 0)
	if d := at(s, "long"); d < 24*time.Minute {
		t.Errorf("generation 1 acted on twice")
	}

	// So it is after a restart, but a later generation is acted on.
	g := newScheduler(clk, file, r)
	g.Schedule("long", long)
	g.ApplyGeneration(1, 0)
	if d := at(g, "long"); d < 24*time.Minute {
		t.Errorf("generation 1 acted on again after a restart")
	}
	g.ApplyGeneration(2, 0)
	if d := at(g, "long"); d >= rotate.RotateNowMaxSpread {
		t.Errorf("generation 2 not acted on: long SVID due at +%v", d)
	}
}

// TestRotateNowCASpread: the window the CA sizes to its signing capacity
// replaces the default cap, still within a tenth of each SVID's lifetime
// so that none expires on the way (issue 16).
func TestRotateNowCASpread(t *testing.T) {
	tests := []struct {
		name     string
		caSpread time.Duration
		ttl      time.Duration
		want     time.Duration // the window the re-mint falls in
	}{
		{name: "CA asks for longer than the default", caSpread: 90 * time.Second, ttl: time.Hour, want: 90 * time.Second},
		{name: "CA asks for shorter", caSpread: 2 * time.Second, ttl: time.Hour, want: 2 * time.Second},
		{name: "a tenth of the lifetime caps it", caSpread: 90 * time.Second, ttl: 5 * time.Minute, want: 30 * time.Second},
		{name: "no CA window: the default", caSpread: 0, ttl: time.Hour, want: rotate.RotateNowMaxSpread},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := clock.NewFake(time.Now().Truncate(time.Second))
			now := clk.Now()
			s := newScheduler(clk, "", backoff.NewRand(seedOf(t)))
			for i := range 50 {
				s.Schedule(strconv.Itoa(i), leaf(t, now, tt.ttl))
			}
			s.ApplyGeneration(1, tt.caSpread)
			var latest time.Duration
			for i := range 50 {
				at, _ := s.At(strconv.Itoa(i))
				d := at.Sub(now)
				if d < 0 || d >= tt.want {
					t.Fatalf("SVID %d re-minted at +%v, want within [0, %v)", i, d, tt.want)
				}
				latest = max(latest, d)
			}
			if latest < tt.want/2 {
				t.Errorf("50 re-mints all within +%v of a %v window: not spread", latest, tt.want)
			}
		})
	}
}

// seedOf derives a seed from the test's name.
func seedOf(t *testing.T) uint64 {
	var h uint64 = 14695981039346656037
	for _, c := range []byte(t.Name()) {
		h = (h ^ uint64(c)) * 1099511628211
	}
	return h
}
