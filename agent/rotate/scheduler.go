package rotate

import (
	"cmp"
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/signet-mesh/signet/agent/internal/logkey"
	"github.com/signet-mesh/signet/internal/backoff"
	"github.com/signet-mesh/signet/internal/clock"
	"github.com/signet-mesh/signet/internal/fileutil"
)

// RotateNowMaxSpread bounds the window over which an agent spreads the
// re-mints that `signet root activate --rotate-now` asks for. Each SVID is
// re-minted at a uniformly random point of a tenth of its lifetime (as
// MaxJitter spreads normal renewals), at most this long: three seconds for
// a 30 s SVID, ten for the default hour. Ten seconds keeps the operator's
// wait short while a thousand agents with ten SVIDs each ask the CA for
// about a thousand signatures a second, not ten thousand at once. Without
// --rotate-now SVIDs move to the new root at their normal half-life.
const RotateNowMaxSpread = 10 * time.Second

// idleWake is how long Run sleeps when nothing is scheduled.
const idleWake = time.Hour

// Cache is what the Scheduler needs of the agent's cache (agent/cache
// implements it).
type Cache interface {
	// PruneExpired drops expired SVIDs and returns how many.
	PruneExpired() int
	// Stats returns the number of SVIDs and the earliest expiry among
	// them (zero when there are none).
	Stats() (svids int, earliestExpiry time.Time)
}

// SchedulerConfig configures a Scheduler.
type SchedulerConfig struct {
	// Cache holds the workload SVIDs; Run drops each from it at its
	// expiry (possible only while the CA is unreachable), so open streams
	// stop serving it. Required.
	Cache Cache
	// Due is told the entries whose SVID is due for renewal (the agent
	// queues them for minting). It is called from Run and must not block.
	Due func(entryIDs []string)
	// NodeDue is told that the node SVID is due (the agent wakes its
	// renewal). It is called from Run and must not block.
	NodeDue func()
	// GenerationFile keeps the rotate generation last acted on, so that a
	// restart does not re-mint everything again. Empty keeps it in memory.
	GenerationFile string
	// Clock decides when things are due; nil is the wall clock.
	Clock clock.Clock
	// Rand draws the jitter; nil is backoff.SystemRand.
	Rand backoff.Rand
	// Logger defaults to discarding.
	Logger *slog.Logger
}

// Scheduler owns when each SVID the agent holds is renewed: every workload
// SVID (by entry id) and the node SVID. A minted SVID is scheduled with
// Schedule (ScheduleNode for the node's); Run calls Due and NodeDue when
// their time comes. Times come from RotateAt with jitter from the injected
// Rand, counted from when the agent got the certificate. The CA's rotate
// generation (ApplyGeneration) pulls every time forward into a short
// random window. It is safe for concurrent use.
type Scheduler struct {
	cfg SchedulerConfig
	log *slog.Logger

	mu      sync.Mutex
	entries map[string]slot // by entry id: the SVID minted last
	node    *slot           // nil while the node SVID is not scheduled
	// acted is the rotate generation last acted on; loaded says it was
	// read from GenerationFile.
	acted  int64
	loaded bool

	wake chan struct{} // a time changed: Run recomputes its timer
}

// slot is one scheduled SVID: when to renew it, and its lifetime (which
// sizes a rotate-now window). It is kept small: an agent schedules one
// for each of up to 50,000 SVIDs.
type slot struct {
	at       time.Time
	lifetime time.Duration // NotAfter - NotBefore
}

// NewScheduler returns a Scheduler with cfg's zero fields defaulted.
func NewScheduler(cfg SchedulerConfig) *Scheduler {
	cfg.Clock = clock.OrReal(cfg.Clock)
	cfg.Rand = backoff.OrSystem(cfg.Rand)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Due == nil {
		cfg.Due = func([]string) {}
	}
	if cfg.NodeDue == nil {
		cfg.NodeDue = func() {}
	}
	return &Scheduler{
		cfg:     cfg,
		log:     cfg.Logger.With(logkey.Component, "rotate"),
		entries: map[string]slot{},
		wake:    make(chan struct{}, 1),
	}
}

// At returns when the SVID of entryID is due, and false when it is not
// scheduled (never minted, or due and being minted now).
func (s *Scheduler) At(entryID string) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sl, ok := s.entries[entryID]
	return sl.at, ok
}

// NodeAt returns when the node SVID is due, and false when it is not
// scheduled (due and being renewed now).
func (s *Scheduler) NodeAt() (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.node == nil {
		return time.Time{}, false
	}
	return s.node.at, true
}

// Schedule schedules the renewal of the SVID just minted for entryID,
// replacing any earlier time.
func (s *Scheduler) Schedule(entryID string, leaf *x509.Certificate) {
	sl := s.newSlot(leaf)
	s.mu.Lock()
	s.entries[entryID] = sl
	s.mu.Unlock()
	s.poke()
}

// ScheduleNode schedules the renewal of the node SVID leaf (obtained or
// just renewed).
func (s *Scheduler) ScheduleNode(leaf *x509.Certificate) {
	sl := s.newSlot(leaf)
	s.mu.Lock()
	s.node = &sl
	s.mu.Unlock()
	s.poke()
}

// Forget unschedules deleted entries.
func (s *Scheduler) Forget(entryIDs ...string) {
	s.mu.Lock()
	for _, id := range entryIDs {
		delete(s.entries, id)
	}
	s.mu.Unlock()
}

// newSlot computes when to renew leaf. The CA backdates NotBefore to
// absorb clock skew, so the lifetime is counted from when the agent got the
// certificate; otherwise a short-lived SVID would be due the moment it
// arrived.
func (s *Scheduler) newSlot(leaf *x509.Certificate) slot {
	from := leaf.NotBefore
	if now := s.cfg.Clock.Now(); now.After(from) {
		from = now
	}
	return slot{at: RotateAt(from, leaf.NotAfter, s.cfg.Rand()), lifetime: leaf.NotAfter.Sub(leaf.NotBefore)}
}

func (s *Scheduler) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run calls Due and NodeDue as SVIDs come due, and drops expired SVIDs
// from the cache, until ctx ends; it returns nil. It may be called again
// after it returned, never twice at once.
func (s *Scheduler) Run(ctx context.Context) error {
	timer := s.cfg.Clock.NewTimer(idleWake)
	defer timer.Stop()
	for {
		now := s.cfg.Clock.Now()
		next := now.Add(idleWake)
		var due []string
		nodeDue := false
		s.mu.Lock()
		for id, sl := range s.entries {
			if !now.Before(sl.at) {
				due = append(due, id)
				delete(s.entries, id)
			} else if sl.at.Before(next) {
				next = sl.at
			}
		}
		if s.node != nil {
			if !now.Before(s.node.at) {
				nodeDue, s.node = true, nil
			} else if s.node.at.Before(next) {
				next = s.node.at
			}
		}
		s.mu.Unlock()
		// Expired SVIDs (possible only while the CA is unreachable) are
		// dropped at their expiry, so open streams stop serving them.
		if n := s.cfg.Cache.PruneExpired(); n > 0 {
			s.log.Warn("SVIDs expired before they could be rotated", logkey.Count, n)
		}
		if _, earliest := s.cfg.Cache.Stats(); !earliest.IsZero() && earliest.Before(next) {
			next = earliest.Add(time.Millisecond)
		}
		if len(due) > 0 {
			s.log.Debug("rotating SVIDs", logkey.Count, len(due))
			s.cfg.Due(due)
		}
		if nodeDue {
			s.cfg.NodeDue()
		}
		timer.Stop()
		timer.Reset(max(next.Sub(now), 0))
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C():
		case <-s.wake:
		}
	}
}

// ApplyGeneration acts on the rotate generation of a sync message: when it
// is past the one acted on, every scheduled SVID, the node's included, is
// re-minted at a random point of its rotate-now window (see
// RotateNowMaxSpread; caSpread, when positive, replaces that cap: it is
// the window the CA sized to its signing capacity and the fleet); an SVID
// already due earlier keeps its time. SVIDs being minted right now are
// replaced anyway.
func (s *Scheduler) ApplyGeneration(gen int64, caSpread time.Duration) {
	s.mu.Lock()
	if !s.loaded {
		s.acted = s.loadGeneration()
		s.loaded = true
	}
	if gen <= s.acted {
		s.mu.Unlock()
		return
	}
	s.acted = gen
	now := s.cfg.Clock.Now()
	pull := func(sl *slot) {
		if at := now.Add(s.jitter(rotateNowSpread(sl.lifetime, caSpread))); at.Before(sl.at) {
			sl.at = at
		}
	}
	for id, sl := range s.entries {
		pull(&sl)
		s.entries[id] = sl
	}
	n := len(s.entries)
	if s.node != nil {
		pull(s.node)
	}
	s.mu.Unlock()
	if s.cfg.GenerationFile != "" {
		if err := fileutil.WriteAtomic(s.cfg.GenerationFile, []byte(strconv.FormatInt(gen, 10)+"\n"), 0o600); err != nil {
			// Only a restart would re-mint once more.
			s.log.Error("saving rotate generation", logkey.Error, err)
		}
	}
	s.poke()
	s.log.Info("re-minting every SVID now, as root activation asked", logkey.RotateGeneration, gen, logkey.SVIDs, n, logkey.MaxSpread, cmp.Or(caSpread, RotateNowMaxSpread))
}

// rotateNowSpread is the window over which the re-mint of an SVID with
// lifetime (NotAfter - NotBefore) is spread: a tenth of its lifetime, at
// most RotateNowMaxSpread or, when positive, the CA's window caSpread.
func rotateNowSpread(lifetime, caSpread time.Duration) time.Duration {
	limit := RotateNowMaxSpread
	if caSpread > 0 {
		limit = caSpread
	}
	return min(limit, time.Duration(float64(lifetime)*MaxJitter))
}

// jitter returns a uniformly random duration in [0, d).
func (s *Scheduler) jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(s.cfg.Rand() * float64(d))
}

// loadGeneration reads the generation acted on before a restart; 0 when
// there is none (a new agent re-mints once, harmlessly).
func (s *Scheduler) loadGeneration() int64 {
	if s.cfg.GenerationFile == "" {
		return 0
	}
	data, err := os.ReadFile(s.cfg.GenerationFile)
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err == nil {
		var gen int64
		if gen, err = strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64); err == nil {
			return gen
		}
	}
	s.log.Warn("ignoring unreadable rotate generation file", logkey.Error, err)
	return 0
}
