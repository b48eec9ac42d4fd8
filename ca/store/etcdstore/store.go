package etcdstore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/signet-mesh/signet/ca/store"
)

// Options configures Open.
type Options struct {
	// Client is the etcd client to use; the store does not close it. When
	// nil, Open connects to Endpoints (with TLS when set) and Close closes
	// that connection.
	Client    *clientv3.Client
	Endpoints []string
	TLS       *tls.Config
	// Prefix is where the store's keys live: a path starting with "/"
	// and not ending with one. Empty means DefaultPrefix. Several
	// trust domains can share an etcd cluster under different prefixes.
	Prefix string
	// Name identifies this instance in the intents of chunked commits
	// (see doc.go), for an operator reading the commit key. Empty means
	// host name and process ID.
	Name string
	// Logger receives reconnections and rollbacks. Nil discards them.
	Logger *slog.Logger
	// RequestTimeout bounds each etcd request, on top of the caller's
	// ctx: past it the operation fails with store.ErrUnavailable. Zero
	// means DefaultRequestTimeout.
	RequestTimeout time.Duration
	// IntentTTL is the lease TTL of a chunked commit: how long a writer
	// that died mid-commit blocks the others before they roll its chunks
	// back. Zero means DefaultIntentTTL. etcd raises values below its
	// minimum (about 1.5 election timeouts).
	IntentTTL time.Duration
	// MaxTxnOps and MaxRequestBytes are the etcd server's --max-txn-ops
	// and --max-request-bytes. Zero means etcd's defaults (128 and
	// 1.5 MiB). The store keeps every request within them, splitting
	// larger transactions into chunks.
	MaxTxnOps       int
	MaxRequestBytes int
	// OnGroupCommit, if set, is called after each group commit with the
	// number of Batch calls it carried. It must be quick.
	OnGroupCommit func(calls int)
}

// Defaults of Options.
const (
	DefaultPrefix         = "/signet"
	DefaultRequestTimeout = 5 * time.Second
	DefaultIntentTTL      = 10 * time.Second
	// etcd's own defaults for --max-txn-ops and --max-request-bytes.
	defaultMaxTxnOps       = 128
	defaultMaxRequestBytes = 1536 * 1024
	// dialTimeout bounds connecting when Open makes the client.
	dialTimeout = 5 * time.Second
)

// Log attribute keys.
const (
	logKeyComponent = "component"
	logKeyError     = "error"
	logKeyOwner     = "owner"
	logKeyChunks    = "chunks"
	logKeyRevision  = "revision"
)

// Store is a store.Store kept in etcd. Every instance (one per CA
// replica) mirrors the small tables in memory and commits with
// compare-and-swap on one commit key; see doc.go for the protocol.
type Store struct {
	cli       *clientv3.Client
	ownClient bool
	keys      keyspace
	name      string
	log       *slog.Logger

	reqTimeout time.Duration
	intentTTL  time.Duration
	maxOps     int // operations per Txn, commit key included
	maxBytes   int // bytes of a request the store aims to stay under

	m *mirror

	// ctx lives as long as the store: the watch, group commits and
	// leases end with it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed atomic.Bool

	// writer is a one-slot semaphore held by whoever commits (Update,
	// or a Batch group's leader): this instance's writers never conflict
	// with each other, only with other instances'.
	writer chan struct{}
	mu     sync.Mutex // guards queue
	queue  []*batchCall

	onGroupCommit func(calls int)

	subs, auditSubs subscribers
	changes         store.ChangeFeed

	hooks testHooks
}

var _ store.Store = (*Store)(nil)

// Open connects to etcd, creates the store's commit key under the prefix
// if it is new, and loads the mirror. ctx bounds the connection and the
// load; an unreachable etcd fails Open with an error naming it.
func Open(ctx context.Context, opts Options) (*Store, error) {
	prefix := opts.Prefix
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if !strings.HasPrefix(prefix, "/") || strings.HasSuffix(prefix, "/") {
		return nil, fmt.Errorf("etcd prefix %q must start with / and not end with one (like %s)", prefix, DefaultPrefix)
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	name := opts.Name
	if name == "" {
		host, _ := os.Hostname()
		name = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	s := &Store{
		cli:           opts.Client,
		keys:          keyspace{prefix: prefix},
		name:          name,
		log:           logger.With(logKeyComponent, "store"),
		reqTimeout:    orDefault(opts.RequestTimeout, DefaultRequestTimeout),
		intentTTL:     orDefault(opts.IntentTTL, DefaultIntentTTL),
		maxOps:        orDefault(opts.MaxTxnOps, defaultMaxTxnOps),
		maxBytes:      orDefault(opts.MaxRequestBytes, defaultMaxRequestBytes) * 2 / 3,
		writer:        make(chan struct{}, 1),
		onGroupCommit: opts.OnGroupCommit,
		subs:          newSubscribers(),
		auditSubs:     newSubscribers(),
	}
	if s.cli == nil {
		if len(opts.Endpoints) == 0 {
			return nil, errors.New("etcd store: no endpoints: set --etcd-endpoints")
		}
		cli, err := clientv3.New(clientv3.Config{
			Endpoints:   opts.Endpoints,
			TLS:         opts.TLS,
			DialTimeout: dialTimeout,
			Logger:      zap.NewNop(),
			Context:     context.Background(),
		})
		if err != nil {
			return nil, fmt.Errorf("connecting to etcd %s: %w", strings.Join(opts.Endpoints, ","), err)
		}
		s.cli, s.ownClient = cli, true
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if err := s.open(ctx); err != nil {
		s.cancel()
		if s.ownClient {
			_ = s.cli.Close()
		}
		return nil, err
	}
	s.wg.Add(1)
	go s.watch()
	return s, nil
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// open creates the commit key if needed and loads the mirror.
func (s *Store) open(ctx context.Context) error {
	rctx, cancel := s.reqCtx(ctx)
	defer cancel()
	_, err := s.cli.Txn(rctx).
		If(clientv3.Compare(clientv3.CreateRevision(s.keys.commit()), "=", 0)).
		Then(clientv3.OpPut(s.keys.commit(), string(encodeCommit(commitRecord{Format: formatVersion})))).
		Commit()
	if err != nil {
		return s.etcdErr(ctx, "creating the store", err)
	}
	for {
		st, in, watchRev, err := s.load(ctx)
		if err == nil {
			s.m = newMirror(st, in, watchRev)
			return nil
		}
		if !isCompacted(err) {
			return err
		}
		// A chunked commit is in flight and its base revision is gone:
		// wait for it to publish (or for its lease to expire).
		select {
		case <-ctx.Done():
			return fmt.Errorf("loading the store from etcd: a chunked commit is in flight: %w", ctx.Err())
		case <-time.After(s.intentTTL / 4):
		}
	}
}

// loadPage is how many records one read of the mirror load returns.
const loadPage = 1000

// load reads the mirrored tables at one revision. When a chunked commit
// is in flight it reads them at the commit's base revision and returns
// the intent, and the watch resumes from the base so that it sees the
// chunks.
func (s *Store) load(ctx context.Context) (*state, *pendingIntent, int64, error) {
	kvs, rev, err := s.readMirror(ctx, 0)
	if err != nil {
		return nil, nil, 0, err
	}
	commitKV := findKV(kvs, s.keys.commit())
	if commitKV == nil {
		return nil, nil, 0, fmt.Errorf("loading the store from etcd: the commit key %s is missing: %w", s.keys.commit(), store.ErrCorrupt)
	}
	rec, err := decodeCommit(commitKV.Value)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("loading the store from etcd: %w", err)
	}
	var in *pendingIntent
	watchRev := rev
	if rec.Intent != nil {
		in = &pendingIntent{modRev: commitKV.ModRevision, rec: rec}
		base := rec.Intent.Base
		if kvs, _, err = s.readMirror(ctx, base); err != nil {
			return nil, nil, 0, err
		}
		if commitKV = findKV(kvs, s.keys.commit()); commitKV == nil {
			return nil, nil, 0, fmt.Errorf("loading the store from etcd: the commit key is missing at revision %d: %w", base, store.ErrCorrupt)
		}
		if rec, err = decodeCommit(commitKV.Value); err != nil {
			return nil, nil, 0, fmt.Errorf("loading the store from etcd: %w", err)
		}
		watchRev = base
	}
	var changes [numTables]map[string]*item
	for _, kv := range kvs {
		t, id, ok := s.keys.parseRecord(string(kv.Key))
		if !ok {
			continue
		}
		if changes[t] == nil {
			changes[t] = map[string]*item{}
		}
		changes[t][id] = decodeItem(t, id, kv.Value)
	}
	return emptyState().with(commitKV.ModRevision, rec, &changes), in, watchRev, nil
}

type keyValue struct {
	Key         []byte
	Value       []byte
	ModRevision int64
}

func findKV(kvs []keyValue, key string) *keyValue {
	for i := range kvs {
		if string(kvs[i].Key) == key {
			return &kvs[i]
		}
	}
	return nil
}

// readMirror reads every key under the mirror prefix at rev (0: the
// newest), page by page at one revision, which it returns.
func (s *Store) readMirror(ctx context.Context, rev int64) ([]keyValue, int64, error) {
	var out []keyValue
	from, end := s.keys.mirrorDir(), prefixEnd(s.keys.mirrorDir())
	for {
		rctx, cancel := s.reqCtx(ctx)
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(loadPage)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := s.cli.Get(rctx, from, opts...)
		cancel()
		if isCompacted(err) {
			return nil, 0, err
		}
		if err != nil {
			return nil, 0, s.etcdErr(ctx, "loading the store", err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			out = append(out, keyValue{Key: kv.Key, Value: kv.Value, ModRevision: kv.ModRevision})
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return out, rev, nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// View implements store.Store. It reads the mirror as this instance last
// saw it (another instance's commit shows once the watch delivered it)
// and the large tables from etcd at that state's revision.
func (s *Store) View(ctx context.Context, fn func(store.Tx) error) error {
	if err := s.usable(ctx); err != nil {
		return err
	}
	return fn(s.newTx(ctx, s.m.snapshot(), false))
}

// maxCommitAttempts bounds how often one transaction is rerun after
// conflicts with other instances' commits.
const maxCommitAttempts = 100

// Update implements store.Store. fn runs against the newest committed
// state this instance knows; when another instance committed in between,
// the commit fails its compare and fn runs again on the new state. ctx
// bounds the waits and every etcd request.
func (s *Store) Update(ctx context.Context, fn func(store.Tx) error) error {
	if err := s.usable(ctx); err != nil {
		return err
	}
	if err := s.acquireWriter(ctx); err != nil {
		return err
	}
	defer s.releaseWriter()
	for attempt := 1; ; attempt++ {
		snap, err := s.waitWritable(ctx)
		if err != nil {
			return err
		}
		t := s.newTx(ctx, snap, true)
		err = fn(t)
		var ce *conflictError
		if err != nil && !errors.As(err, &ce) {
			return err
		}
		if err == nil {
			if !t.dirty() {
				return nil
			}
			var next *state
			next, err = s.commit(ctx, t)
			if err == nil {
				s.install(snap.rev, next)
				return nil
			}
			if !errors.As(err, &ce) {
				return err
			}
		}
		if attempt >= maxCommitAttempts {
			return fmt.Errorf("store: etcd: gave up after %d commits conflicting with other writers: %w", attempt, store.ErrConflict)
		}
		if err := s.waitSeen(ctx, ce.seen); err != nil {
			return err
		}
	}
}

// install makes next, committed by this instance from the state at base,
// the mirror's state and wakes the subscribers.
func (s *Store) install(base int64, next *state) {
	if s.m.advance(base, next) {
		s.wake([]commitRecord{next.commit})
	}
}

// wake tells the subscribers what the published commits did.
func (s *Store) wake(recs []commitRecord) {
	var revised, audited bool
	for _, r := range recs {
		revised = revised || r.Revised
		audited = audited || r.Audited
	}
	if revised {
		s.subs.notify()
	}
	if audited {
		s.auditSubs.notify()
	}
	for _, r := range recs {
		if r.Revised {
			s.changes.Publish(r.change())
		}
	}
}

// Subscribe implements store.Store. Commits of every instance on the
// same prefix fire it, through the watch.
func (s *Store) Subscribe() (<-chan struct{}, func()) { return s.subs.add() }

// SubscribeChanges implements store.Store. Commits of every instance on
// the same prefix call fn, through the watch.
func (s *Store) SubscribeChanges(fn func(store.Change)) (<-chan struct{}, func()) {
	return s.changes.Add(fn)
}

// SubscribeAudit implements store.Store.
func (s *Store) SubscribeAudit() (<-chan struct{}, func()) { return s.auditSubs.add() }

// Close implements store.Store. Transactions still running fail with
// store.ErrClosed.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.cancel()
	s.wg.Wait()
	s.subs.close()
	s.auditSubs.close()
	s.changes.Close()
	if s.ownClient {
		if err := s.cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
			return fmt.Errorf("closing the etcd client: %w", err)
		}
	}
	return nil
}

func (s *Store) usable(ctx context.Context) error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	return ctx.Err()
}

func (s *Store) acquireWriter(ctx context.Context) error {
	select {
	case s.writer <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.ctx.Done():
		return store.ErrClosed
	}
}

func (s *Store) releaseWriter() { <-s.writer }

// reqCtx bounds one etcd request: by ctx, by RequestTimeout, and by the
// cluster having a leader (without one a request fails at once rather
// than waiting for the timeout).
func (s *Store) reqCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(clientv3.WithRequireLeader(ctx), s.reqTimeout)
}

// conflictError is a commit that failed its compare: another writer
// committed since the transaction's state. seen is the commit key's mod
// revision etcd returned; the mirror must reach it before a rerun.
type conflictError struct{ seen int64 }

func (e *conflictError) Error() string {
	return fmt.Sprintf("store: etcd: the committed state moved to revision %d during the transaction", e.seen)
}

func (e *conflictError) Unwrap() error { return store.ErrConflict }

// etcdErr wraps an error of the etcd client. Every such error names etcd
// and its endpoints; an unreachable or leaderless cluster is
// store.ErrUnavailable, the caller's ctx ending is its ctx error. The
// client's own error is kept as text (%v) so that callers do not take a
// gRPC status of etcd for one of their own.
func (s *Store) etcdErr(ctx context.Context, doing string, err error) error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	where := "etcd " + strings.Join(s.cli.Endpoints(), ",")
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%s: %s: %w", where, doing, cerr)
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s: %s: no answer within %v: %w", where, doing, s.reqTimeout, store.ErrUnavailable)
	case unavailable(err):
		return fmt.Errorf("%s: %s: %w: %v", where, doing, store.ErrUnavailable, err)
	default:
		return fmt.Errorf("%s: %s: %v", where, doing, err)
	}
}

// unavailable reports an error of a cluster that cannot serve: not
// connected, no leader, stopping, or timed out (etcd gives all of these
// gRPC's Unavailable).
func unavailable(err error) bool {
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		return ee.Code() == codes.Unavailable
	}
	return status.Code(err) == codes.Unavailable
}

func isCompacted(err error) bool { return errors.Is(err, rpctypes.ErrCompacted) }

// sameStateRev returns the newest etcd revision when the committed state
// is still the one at rev (so reading at it reads that state), and a
// conflictError when it has moved.
func (s *Store) sameStateRev(ctx context.Context, rev int64) (int64, error) {
	rctx, cancel := s.reqCtx(ctx)
	defer cancel()
	resp, err := s.cli.Get(rctx, s.keys.commit())
	if err != nil {
		return 0, s.etcdErr(ctx, "reading the commit key", err)
	}
	if len(resp.Kvs) == 0 {
		return 0, fmt.Errorf("etcd: the commit key %s is missing: %w", s.keys.commit(), store.ErrCorrupt)
	}
	if kv := resp.Kvs[0]; kv.ModRevision != rev {
		return 0, &conflictError{seen: kv.ModRevision}
	}
	return resp.Header.Revision, nil
}

// subscribers are the channels of Subscribe (as Bolt's).
type subscribers struct {
	mu     sync.Mutex
	chans  map[chan struct{}]struct{}
	closed bool
}

func newSubscribers() subscribers {
	return subscribers{chans: map[chan struct{}]struct{}{}}
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
	return ch, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, ok := s.chans[ch]; ok {
			delete(s.chans, ch)
			close(ch)
		}
	}
}

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
