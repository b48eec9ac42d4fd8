package api

import (
	"slices"
	"sync"
	"time"
)

// Traffic window defaults.
const (
	// DefaultMTLSWindow is how far back `mtls status` and the STRICT
	// readiness check look (DESIGN.md: "plaintext seen in the last 10
	// minutes").
	DefaultMTLSWindow = 10 * time.Minute
	// trafficSlots is how many buckets a window is cut into: counts leave
	// the window one slot at a time, a twentieth of it.
	trafficSlots = 20
	// maxTrafficSources bounds the plaintext sources kept per workload
	// and port: enough to name the clients to migrate, not a log.
	maxTrafficSources = 32
	// maxTrafficKeys bounds the (workload, port) pairs held, so agents
	// reporting junk cannot grow the CA without bound.
	maxTrafficKeys = 100000
)

// trafficKey is one workload's port.
type trafficKey struct {
	spiffeID string
	port     uint32
}

// trafficCounts are connection counts by kind.
type trafficCounts struct {
	mtls, plaintext, refused int64
	// sources of plaintext connections, sorted, at most maxTrafficSources.
	sources []string
}

// trafficSlot holds the counts reported during one slot of time.
type trafficSlot struct {
	index int64 // slot number since the epoch; 0 is unused
	trafficCounts
}

// trafficRing is one key's slots, indexed by slot number modulo its length.
type trafficRing [trafficSlots + 1]trafficSlot

// mtlsTraffic keeps the inbound connection counts agents report, per
// workload and port, over a sliding window. Reports are deltas: each adds
// to the slot of the time it arrived. A count stays in the window for at
// least the window and at most one slot longer. It lives in memory only: a
// restarted CA knows nothing until agents report again, which errs on the
// side of "ready" for at most one reporting interval.
type mtlsTraffic struct {
	mu     sync.Mutex
	window time.Duration
	rings  map[trafficKey]*trafficRing
}

func newMTLSTraffic() *mtlsTraffic {
	return &mtlsTraffic{window: DefaultMTLSWindow, rings: map[trafficKey]*trafficRing{}}
}

func (t *mtlsTraffic) setWindow(d time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if d <= 0 {
		d = DefaultMTLSWindow
	}
	t.window = d
}

func (t *mtlsTraffic) getWindow() time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.window
}

func (t *mtlsTraffic) slotOf(now time.Time) int64 {
	d := max(t.window/trafficSlots, time.Millisecond)
	return now.UnixNano()/int64(d) + 1
}

// add records a report that arrived at now.
func (t *mtlsTraffic) add(now time.Time, k trafficKey, c trafficCounts) {
	if c.mtls <= 0 && c.plaintext <= 0 && c.refused <= 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	r, ok := t.rings[k]
	if !ok {
		if len(t.rings) >= maxTrafficKeys {
			t.pruneLocked(now)
			if len(t.rings) >= maxTrafficKeys {
				return
			}
		}
		r = &trafficRing{}
		t.rings[k] = r
	}
	idx := t.slotOf(now)
	s := &r[idx%int64(len(r))]
	if s.index != idx {
		*s = trafficSlot{index: idx}
	}
	s.mtls += max(c.mtls, 0)
	s.plaintext += max(c.plaintext, 0)
	s.refused += max(c.refused, 0)
	s.sources = mergeSources(s.sources, c.sources)
}

// live reports whether slot s is inside the window ending at slot now.
func live(s *trafficSlot, now int64) bool {
	return s.index != 0 && s.index > now-int64(trafficSlots+1) && s.index <= now
}

// snapshot sums each key's counts over the window ending at now, and
// forgets keys with nothing left in it.
func (t *mtlsTraffic) snapshot(now time.Time) map[trafficKey]trafficCounts {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pruneLocked(now)
	idx := t.slotOf(now)
	out := make(map[trafficKey]trafficCounts, len(t.rings))
	for k, r := range t.rings {
		var c trafficCounts
		for i := range r {
			if s := &r[i]; live(s, idx) {
				c.mtls += s.mtls
				c.plaintext += s.plaintext
				c.refused += s.refused
				c.sources = mergeSources(c.sources, s.sources)
			}
		}
		out[k] = c
	}
	return out
}

func (t *mtlsTraffic) pruneLocked(now time.Time) {
	idx := t.slotOf(now)
	for k, r := range t.rings {
		if !slices.ContainsFunc(r[:], func(s trafficSlot) bool { return live(&s, idx) }) {
			delete(t.rings, k)
		}
	}
}

// mergeSources adds b to the sorted set a, keeping at most
// maxTrafficSources. It never modifies b.
func mergeSources(a, b []string) []string {
	for _, s := range b {
		if s == "" {
			continue
		}
		i, found := slices.BinarySearch(a, s)
		if found || len(a) >= maxTrafficSources {
			continue
		}
		a = slices.Insert(a, i, s)
	}
	return a
}

// SetMTLSWindow sets how far back connection counts reach (for
// `mtls status` and the STRICT readiness check); 0 means
// DefaultMTLSWindow. Set it before agents report: counts already held
// are cut into slots of the old size.
func (c *Connections) SetMTLSWindow(d time.Duration) { c.traffic.setWindow(d) }

// MTLSWindow returns the window of connection counts.
func (c *Connections) MTLSWindow() time.Duration { return c.traffic.getWindow() }
