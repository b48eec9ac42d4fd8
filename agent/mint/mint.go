package mint

import (
	"context"
	"crypto"
	"crypto/x509"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/signet-mesh/signet/agent/cache"
	"github.com/signet-mesh/signet/agent/client"
	"github.com/signet-mesh/signet/agent/internal/logkey"
	"github.com/signet-mesh/signet/internal/backoff"
	"github.com/signet-mesh/signet/internal/clock"
	"github.com/signet-mesh/signet/internal/nodeapi"
)

// burstMint is the batch size from which the minter returns freed memory
// to the OS right after minting.
const burstMint = 100

// minRetry is the shortest delay between mint attempts.
const minRetry = 100 * time.Millisecond

// CA is the call the Minter makes (agent/client.Client implements it).
type CA interface {
	// MintX509SVIDs signs the requests in batches; a failed call returns
	// the results of the batches before it and an error.
	MintX509SVIDs(ctx context.Context, reqs []client.MintRequest) ([]client.MintResult, error)
}

// Scheduler is told of each SVID minted, to schedule its renewal
// (agent/rotate.Scheduler implements it).
type Scheduler interface {
	Schedule(entryID string, leaf *x509.Certificate)
}

// Metrics are optional hooks; nil fields are skipped.
type Metrics struct {
	// Rotated counts a workload SVID replaced by a fresh one.
	Rotated func()
	// RotationFailed counts a failed attempt to replace one.
	RotationFailed func()
	// Backoff is the delay before the next retry; 0 once minting works.
	Backoff func(time.Duration)
}

// Config configures a Minter.
type Config struct {
	// Cache receives the minted SVIDs, and says which entries exist and
	// which SVIDs are being replaced. Required.
	Cache *cache.Cache
	// CA signs. Required.
	CA CA
	// Scheduler schedules each minted SVID's renewal. Required.
	Scheduler Scheduler
	// NewKey makes each SVID's key, here on the node. Required.
	NewKey func() (crypto.Signer, error)
	// Backoff paces retries while the CA fails.
	Backoff backoff.Config
	Clock   clock.Clock
	Logger  *slog.Logger
	Metrics Metrics
}

// Minter is the agent's mint queue: entries that need an SVID (new,
// changed, or due for renewal) are queued, and Run mints everything queued
// in batched calls to the CA, with a key made here for each. While the CA
// fails it retries the whole set with backoff, but never waits past a
// quarter of the remaining life of an SVID being replaced, and goes at once
// when the CA is reachable again (CAReachable). It is safe for concurrent
// use.
type Minter struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	pending map[string]bool // entry ids to mint
	wake    chan struct{}   // something was queued
	caBack  chan struct{}   // the CA is reachable again

	// refused holds the requests (key and CSR) of the last call the CA
	// refused before looking at it (ResourceExhausted), by entry: the
	// next mint sends them again instead of making new ones. In a
	// rotate-now at 10,000 nodes the CA refused some 94,000 calls, and
	// each retry made ten keys and CSRs again: more CPU on the nodes than
	// the CA spent signing. Kept for the next mint only; used only by
	// Run's goroutine.
	refused map[string]client.MintRequest
}

// New returns a Minter with cfg's zero fields defaulted.
func New(cfg Config) *Minter {
	cfg.Clock = clock.OrReal(cfg.Clock)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Minter{
		cfg:     cfg,
		log:     cfg.Logger.With(logkey.Component, "mint"),
		pending: map[string]bool{},
		wake:    make(chan struct{}, 1),
		caBack:  make(chan struct{}, 1),
	}
}

// Queue asks for an SVID for each of ids, as soon as possible.
func (m *Minter) Queue(ids ...string) {
	if len(ids) == 0 {
		return
	}
	m.requeue(ids)
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// requeue queues ids without waking Run: its backoff decides when.
func (m *Minter) requeue(ids []string) {
	m.mu.Lock()
	for _, id := range ids {
		m.pending[id] = true
	}
	m.mu.Unlock()
}

// CAReachable tells the Minter that the CA answers again (the entry sync
// stream reconnected): a retry waiting out its backoff goes at once.
func (m *Minter) CAReachable() {
	select {
	case m.caBack <- struct{}{}:
	default:
	}
}

func (m *Minter) take() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	ids := make([]string, 0, len(m.pending))
	for id := range m.pending {
		ids = append(ids, id)
	}
	// A new map rather than clear: a burst of 50,000 would otherwise keep
	// its table for good.
	m.pending = map[string]bool{}
	return ids
}

// Run mints what is queued until ctx ends, then returns nil. It returns an
// error only when the CA refuses the node's identity for good
// (nodeapi.NodeRejection): retrying cannot help.
func (m *Minter) Run(ctx context.Context) error {
	b := backoff.New(m.cfg.Backoff)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-m.wake:
		}
		ids := m.take()
		if len(ids) == 0 {
			continue
		}
		if err := m.mint(ctx, ids); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if _, ok := nodeapi.NodeRejection(err); ok {
				return fmt.Errorf("minting SVIDs: %w", err)
			}
			m.Queue(ids...)
			d := m.retryDelay(b, err, ids)
			m.backoff(d)
			m.log.Warn("minting SVIDs failed; retrying", logkey.Count, len(ids), logkey.Error, err, logkey.RetryIn, d)
			if !m.waitRetry(ctx, b, d) {
				return nil
			}
			continue
		}
		b.Reset()
		m.backoff(0)
	}
}

// retryDelay is the backoff's next delay after err (at least the CA's
// retry hint, see backoff.Config.Hint), but never more than a quarter of
// the time left to the earliest expiry among the SVIDs being replaced: a
// backoff sized for a long CA outage must not let an SVID lapse minutes
// after the CA came back. SVIDs of an hour leave more than the backoff's
// cap, so only SVIDs about to expire retry faster.
func (m *Minter) retryDelay(b *backoff.Backoff, err error, ids []string) time.Duration {
	d := b.NextFor(err)
	now := m.cfg.Clock.Now()
	for _, id := range ids {
		svid := m.cfg.Cache.SVID(id)
		if svid == nil {
			continue
		}
		if left := svid.NotAfter().Sub(now); left > 0 {
			d = min(d, max(left/4, minRetry))
		}
	}
	return d
}

// waitRetry waits d before the next mint attempt, or less if the CA is
// reachable again meanwhile (see CAReachable). It reports false when ctx
// ended.
func (m *Minter) waitRetry(ctx context.Context, b *backoff.Backoff, d time.Duration) bool {
	t := m.cfg.Clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C():
	case <-m.caBack:
		b.Reset()
	}
	return true
}

// mintChunk is how many SVIDs mint makes keys for, asks the CA for and
// publishes at a time. A node with 50,000 new entries then holds the
// keys, CSRs and parsed responses of one chunk at a time, a few
// megabytes, instead of all of them at once (a few hundred), while each
// chunk is still several of the client's batched calls, so the client
// keeps making the next CSRs while the CA signs.
const mintChunk = 1000

// mint mints ids in batched calls, a chunk at a time (mintChunk), and
// publishes each chunk's results as it comes. Entries that failed are
// queued again (without waking Run) and reported as an error; after a
// failed call the chunks not tried yet are queued again as well.
//
// The keys of the next chunk are made while the CA signs the current
// one, so the CA does not wait on them between chunks.
func (m *Minter) mint(ctx context.Context, ids []string) error {
	known := ids[:0:0]
	for _, id := range ids {
		if m.cfg.Cache.HasEntry(id) {
			known = append(known, id)
		} // else deleted since it was queued
	}
	if len(known) >= burstMint {
		// A burst (a new node, a mass rotation) allocates keys, CSRs and
		// responses for many entries; give that memory back to the node
		// now instead of holding it at the high-water mark.
		defer debug.FreeOSMemory()
	}
	spare := m.refused
	m.refused = nil
	chunks := make(chan keyedChunk) // unbuffered: one chunk made ahead
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() {
		defer close(chunks)
		for start := 0; start < len(known); start += mintChunk {
			if start > 0 {
				// Collect the chunks done so far (keys, CSRs,
				// responses) before making the next: left to the
				// pacer, a burst of 50,000 SVIDs would let the heap
				// grow to twice what the cache holds before each
				// collection, and the node's resident memory with
				// it. It runs while the CA signs.
				runtime.GC()
			}
			kc := m.makeKeys(known[start:min(start+mintChunk, len(known))], spare)
			select {
			case chunks <- kc:
			case <-ctx.Done():
				return
			}
			if kc.err != nil {
				return
			}
		}
	})
	var failed, done int
	for kc := range chunks {
		var n int
		var err error
		if kc.err != nil {
			// Nothing of this chunk was minted.
			n, err = len(kc.ids), kc.err
			m.requeue(kc.ids)
		} else {
			n, err = m.mintChunk(ctx, kc)
		}
		failed += n
		done += len(kc.ids)
		if err != nil {
			rest := known[done:]
			for _, id := range rest {
				if m.cfg.Cache.SVID(id) != nil {
					m.rotationFailed()
				}
			}
			m.requeue(rest)
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err // chunks were left unmade; Run stops anyway
	}
	if failed > 0 {
		return fmt.Errorf("%d SVIDs could not be minted", failed)
	}
	return nil
}

// keyedChunk is a chunk of entries with a fresh key for each, or the
// error making one.
type keyedChunk struct {
	ids      []string
	reqs     []client.MintRequest
	renewing map[string]bool // entries that hold an SVID: a rotation
	err      error
}

// makeKeys makes a key for each of ids, or takes the one of a refused
// request in spare (which it only reads).
func (m *Minter) makeKeys(ids []string, spare map[string]client.MintRequest) keyedChunk {
	kc := keyedChunk{ids: ids, reqs: make([]client.MintRequest, 0, len(ids)), renewing: make(map[string]bool, len(ids))}
	for _, id := range ids {
		kc.renewing[id] = m.cfg.Cache.SVID(id) != nil
		if r, ok := spare[id]; ok {
			kc.reqs = append(kc.reqs, r)
			continue
		}
		key, err := m.cfg.NewKey()
		if err != nil {
			kc.err = fmt.Errorf("generating key: %w", err)
			return kc
		}
		kc.reqs = append(kc.reqs, client.MintRequest{EntryID: id, Key: key})
	}
	return kc
}

// mintChunk mints a chunk in one MintX509SVIDs call and publishes the
// results. Entries that failed are queued again (without waking Run); it
// returns how many, and the error of a failed call (whose requests past
// the failed batch are queued again too).
func (m *Minter) mintChunk(ctx context.Context, kc keyedChunk) (failed int, _ error) {
	reqs, renewing := kc.reqs, kc.renewing
	results, err := m.cfg.CA.MintX509SVIDs(ctx, reqs)
	// Publish the chunk to the cache as one change: a workload entitled
	// to all of it gets one update, not one per SVID.
	var minted []cache.EntrySVID
	for _, r := range results {
		if r.Err == nil {
			minted = append(minted, cache.EntrySVID{EntryID: r.EntryID, SVID: r.SVID})
		}
	}
	setErrs := m.cfg.Cache.SetSVIDs(minted)
	// A disabled debug log must not format the ID and serial of each SVID.
	logMinted := m.log.Enabled(ctx, slog.LevelDebug)
	var retry []string
	for _, r := range results {
		if r.Err != nil {
			if status.Code(r.Err) == codes.NotFound {
				m.log.Debug("entry no longer authorized; not minting", logkey.EntryID, r.EntryID)
				continue
			}
			m.log.Warn("minting SVID failed", logkey.EntryID, r.EntryID, logkey.Error, r.Err)
			if renewing[r.EntryID] {
				m.rotationFailed()
			}
			retry = append(retry, r.EntryID)
			continue
		}
		leaf := r.SVID.Certificates[0]
		setErr := setErrs[0]
		setErrs = setErrs[1:]
		if setErr != nil {
			// The entry changed or went away while this mint was in
			// flight; the change queued its own mint.
			m.log.Debug("discarding minted SVID", logkey.EntryID, r.EntryID, logkey.Error, setErr)
			continue
		}
		m.cfg.Scheduler.Schedule(r.EntryID, leaf)
		if renewing[r.EntryID] {
			m.rotated()
		}
		if logMinted {
			m.log.Debug("SVID minted", logkey.EntryID, r.EntryID, logkey.SPIFFEID, r.SVID.ID.String(), logkey.Serial, nodeapi.FormatSerial(leaf.SerialNumber), logkey.NotAfter, leaf.NotAfter)
		}
	}
	if err != nil {
		// Requests past the failed batch were not minted; refused
		// unseen, they are sent again as they are.
		overloaded := status.Code(err) == codes.ResourceExhausted
		for _, r := range reqs[len(results):] {
			retry = append(retry, r.EntryID)
			if renewing[r.EntryID] {
				m.rotationFailed()
			}
			if overloaded && r.CSR != nil {
				if m.refused == nil {
					m.refused = map[string]client.MintRequest{}
				}
				m.refused[r.EntryID] = r
			}
		}
	}
	m.requeue(retry)
	return len(retry), err
}

func (m *Minter) rotated() {
	if m.cfg.Metrics.Rotated != nil {
		m.cfg.Metrics.Rotated()
	}
}

func (m *Minter) rotationFailed() {
	if m.cfg.Metrics.RotationFailed != nil {
		m.cfg.Metrics.RotationFailed()
	}
}

func (m *Minter) backoff(d time.Duration) {
	if m.cfg.Metrics.Backoff != nil {
		m.cfg.Metrics.Backoff(d)
	}
}
