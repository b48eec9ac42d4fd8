package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/signet-mesh/signet/internal/clock"
)

// Options configures Open.
type Options struct {
	// Logger receives schema migrations and group commit retries. Nil
	// discards them.
	Logger *slog.Logger
	// Timeout is how long Open waits for the file lock that another
	// process (a second CA on the same data dir) holds. Zero means 1s.
	Timeout time.Duration
	// NoSync skips fsync on commit: a crash can lose or corrupt data. For
	// tests only.
	NoSync bool
	// MaxBatchSize bounds how many Batch calls one group commit carries
	// (bbolt's DB.MaxBatchSize): the group's callers all wait for its
	// slowest function and its fsync, and a failing function makes those
	// before it run again. Zero means DefaultMaxBatchSize; negative is
	// refused by Open.
	MaxBatchSize int
	// MaxBatchDelay caps how long a busy store's group commit waits for
	// more callers to join it (bbolt's DB.MaxBatchDelay, except that a
	// lone caller never waits: the wait is twice the previous commit's
	// time, and only after a commit that carried several callers; see
	// Batch). Zero means DefaultMaxBatchDelay; negative turns the wait
	// off.
	MaxBatchDelay time.Duration
	// Clock times that wait. Nil means the wall clock.
	Clock clock.Clock
	// OnMigrate, if set, is called when Open moves an existing file to a
	// newer schema, inside the transaction that migrates it, after the
	// migration: the server appends the migration's audit record there,
	// so the two commit together. An error fails Open and leaves the file
	// as it was. A new file (schema 0) is created, not migrated.
	OnMigrate func(tx Tx, from, to uint64) error
	// OnGroupCommit, if set, is called after each group commit with the
	// number of Batch calls it carried: how well concurrent writers share
	// fsyncs. It must be quick.
	OnGroupCommit func(calls int)
	// ReleaseInterval is how often the store gives the kernel back the
	// pages of its file mapping, when a transaction ran since the last
	// time (see releaseLoop). Zero means DefaultReleaseInterval; negative
	// turns it off.
	ReleaseInterval time.Duration
}

// Defaults of the group commit knobs.
const (
	// DefaultMaxBatchSize is far above the CA's concurrency (one Batch
	// per in-flight RPC), so in practice a group takes everything queued;
	// the bound only keeps a burst from turning into one long stall.
	DefaultMaxBatchSize = 1000
	// DefaultMaxBatchDelay: a group commit on the disks of this workplace
	// takes 0.5 to 1 ms.
	DefaultMaxBatchDelay = 2 * time.Millisecond
)

// Log attribute keys.
const (
	logKeyComponent   = "component"
	logKeyError       = "error"
	logKeyFromVersion = "from_version"
	logKeyToVersion   = "to_version"
	logKeyGroupSize   = "group_size"
)

// defaultTimeout makes a second CA on the same data dir fail fast with a
// clear error instead of hanging.
const defaultTimeout = time.Second

// Bolt is the Store kept in one bbolt file. bbolt allows one writer at a
// time; Batch makes that writer serve many callers per fsync.
type Bolt struct {
	db     *bbolt.DB
	log    *slog.Logger
	closed atomic.Bool

	// writer is a one-slot semaphore held by whoever runs a read-write
	// transaction (Update, or a Batch group's leader). bbolt has its own
	// writer lock; this one can be waited on with a ctx, and tells Batch
	// callers when no commit is in flight.
	writer chan struct{}
	// mu guards queue, the Batch calls waiting for a leader to take them.
	mu    sync.Mutex
	queue []*batchCall

	// The commit delay (see gather). The fields describe the previous
	// group commit; only the writer touches them.
	clock         clock.Clock
	maxBatchDelay time.Duration
	maxBatchSize  int
	onGroupCommit func(calls int)
	lastGroupSize int
	lastCommit    time.Duration

	subs      subscribers // commits that took a revision
	auditSubs subscribers // commits that appended audit records
	changes   ChangeFeed  // what commits that took a revision changed

	// touched is set by every transaction; releaseLoop clears it.
	touched     atomic.Bool
	stopRelease chan struct{}
	released    chan struct{} // closed when releaseLoop has returned
}

var _ Store = (*Bolt)(nil)

// Open opens the store file at path, creating it (mode 0600, it holds the
// CA's state) if needed, and brings its layout up to date. The directory
// must exist. A file written by a newer signet is refused.
// initialMmapSize is address space, not memory: pages are resident only
// once read.
const initialMmapSize = 1 << 30

func Open(path string, opts Options) (*Bolt, error) {
	if opts.MaxBatchSize < 0 {
		return nil, fmt.Errorf("opening store %s: MaxBatchSize %d is negative", path, opts.MaxBatchSize)
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With(logKeyComponent, "store")
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = defaultTimeout
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{
		Timeout: timeout,
		NoSync:  opts.NoSync,
		// Every commit otherwise rewrites the freelist too: with the
		// SVID index and audit log growing all day, that is most of the
		// pages a small commit writes. bbolt rebuilds the list by scanning
		// on open instead (etcd runs bbolt the same way).
		NoFreelistSync: true,
		FreelistType:   bbolt.FreelistMapType,
		// Map a large window up front: growing the map waits for every
		// open read transaction, a stall on the issuance path.
		InitialMmapSize: initialMmapSize,
	})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("opening store %s: another process holds its lock (%w: %w)", path, ErrLocked, err)
	}
	if err != nil {
		return nil, fmt.Errorf("opening store %s: %w", path, err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error { return migrate(tx, logger.Info, opts.OnMigrate) }); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("opening store %s: %w", path, err)
	}
	// Rebuilding the freelist on open (NoFreelistSync) read every page;
	// don't keep the whole file resident for it.
	_ = db.View(func(tx *bbolt.Tx) error { releasePages(tx); return nil })
	maxDelay := opts.MaxBatchDelay
	if maxDelay == 0 {
		maxDelay = DefaultMaxBatchDelay
	}
	maxSize := opts.MaxBatchSize
	if maxSize == 0 {
		maxSize = DefaultMaxBatchSize
	}
	b := &Bolt{
		db:            db,
		log:           logger,
		clock:         clock.OrReal(opts.Clock),
		maxBatchDelay: maxDelay,
		maxBatchSize:  maxSize,
		onGroupCommit: opts.OnGroupCommit,
		writer:        make(chan struct{}, 1),
		subs:          subscribers{chans: make(map[chan struct{}]struct{})},
		auditSubs:     subscribers{chans: make(map[chan struct{}]struct{})},
		stopRelease:   make(chan struct{}),
		released:      make(chan struct{}),
	}
	interval := opts.ReleaseInterval
	if interval == 0 {
		interval = DefaultReleaseInterval
	}
	if interval > 0 {
		go b.releaseLoop(interval)
	} else {
		close(b.released)
	}
	return b, nil
}

// Path returns the file the store is kept in.
func (b *Bolt) Path() string { return b.db.Path() }

// View implements Store. ctx is checked before the transaction begins.
func (b *Bolt) View(ctx context.Context, fn func(Tx) error) error {
	if err := b.usable(ctx); err != nil {
		return err
	}
	b.touched.Store(true)
	var fnErr error
	err := b.db.View(func(tx *bbolt.Tx) error {
		fnErr = fn(&boltTx{tx: tx})
		return fnErr
	})
	if fnErr != nil {
		return fnErr
	}
	return b.txErr("reading store", err)
}

// Update implements Store. It joins the group commit as Batch does: an
// admin change and the mints queued with it share one transaction and
// one fsync, instead of the mints waiting behind the change's own commit.
// fn may therefore run more than once (as on every backend: etcd reruns
// it on a conflict), and fn's writes are still all or nothing: a fn that
// fails is left out of its group's commit, and a fn that fails in the
// group makes it run again without that one. ctx bounds the wait for the
// writer; once fn runs, the transaction completes. A panic in fn rolls
// back and propagates, wrapped with the stack where it happened.
func (b *Bolt) Update(ctx context.Context, fn func(Tx) error) error {
	return b.Batch(ctx, fn)
}

// notify wakes the subscribers of what a commit changed; scope is what
// its revised transactions wrote.
func (b *Bolt) notify(revised, audited bool, scope *changeScope) {
	if revised {
		b.subs.notify()
		b.changes.Publish(scope.change())
	}
	if audited {
		b.auditSubs.notify()
	}
}

// Subscribe implements Store. The channel is closed by cancel or Close.
func (b *Bolt) Subscribe() (<-chan struct{}, func()) {
	return b.subs.add()
}

// SubscribeChanges implements Store.
func (b *Bolt) SubscribeChanges(fn func(Change)) (<-chan struct{}, func()) {
	return b.changes.Add(fn)
}

// SubscribeAudit implements Store. The channel is closed by cancel or
// Close.
func (b *Bolt) SubscribeAudit() (<-chan struct{}, func()) {
	return b.auditSubs.add()
}

// Close implements Store. It waits for the running transactions.
func (b *Bolt) Close() error {
	if b.closed.Swap(true) {
		return nil
	}
	close(b.stopRelease)
	<-b.released
	err := b.db.Close()
	b.subs.close()
	b.auditSubs.close()
	b.changes.Close()
	if err != nil {
		return fmt.Errorf("closing store: %w", err)
	}
	return nil
}

// usable is the check every transaction starts with.
func (b *Bolt) usable(ctx context.Context) error {
	if b.closed.Load() {
		return ErrClosed
	}
	return ctx.Err()
}

func (b *Bolt) acquireWriter(ctx context.Context) error {
	select {
	case b.writer <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *Bolt) releaseWriter() { <-b.writer }

// txErr wraps an error of bbolt itself (not of fn). A store closed while
// the call was on its way is ErrClosed, as if it had been closed before.
func (b *Bolt) txErr(doing string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, bolterrors.ErrDatabaseNotOpen):
		return ErrClosed
	default:
		return fmt.Errorf("%s: %w", doing, err)
	}
}

// subscribers are the channels of Subscribe.
type subscribers struct {
	mu     sync.Mutex
	chans  map[chan struct{}]struct{}
	closed bool
}

func (s *subscribers) add() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		close(ch)
		return ch, func() {}
	}
	s.chans[ch] = struct{}{}
	cancel := func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, ok := s.chans[ch]; ok {
			delete(s.chans, ch)
			close(ch)
		}
	}
	return ch, cancel
}

// notify wakes every subscriber. A subscriber that has not yet drained its
// last wake-up keeps that one: it will read the state after this commit
// anyway.
func (s *subscribers) notify() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ch := range s.chans {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func (s *subscribers) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for ch := range s.chans {
		close(ch)
	}
	clear(s.chans)
}
