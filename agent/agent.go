package agent

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/signet-mesh/signet/agent/cache"
	"github.com/signet-mesh/signet/agent/client"
	"github.com/signet-mesh/signet/agent/rotate"
	"github.com/signet-mesh/signet/internal/backoff"
	"github.com/signet-mesh/signet/internal/clock"
	"github.com/signet-mesh/signet/internal/nodeapi"
	nodev1 "github.com/signet-mesh/signet/proto/signet/node/v1"
)

// burstMint is the batch size from which the agent returns freed memory
// to the OS right after minting.
const burstMint = 100

// callTimeout bounds one unary call to the CA.
const callTimeout = 30 * time.Second

// Config configures an Agent. Zero values take the documented defaults.
type Config struct {
	// ServerAddress is the CA's node API (host:port).
	ServerAddress string
	TrustDomain   spiffeid.TrustDomain
	// TrustBundle authenticates the CA on first contact. Once the CA has
	// sent a bundle, the stored one (DataDir/bundle.pem) is used instead.
	TrustBundle []*x509.Certificate
	// InsecureBootstrap attests without authenticating the CA
	// (development only).
	InsecureBootstrap bool
	// JoinToken is needed only when DataDir holds no node identity.
	JoinToken string
	// DataDir keeps the node SVID (key encrypted with KeyPassphrase) and
	// the last bundle, so a restart needs no new token.
	DataDir       string
	KeyPassphrase []byte
	// Cache receives entries, SVIDs and bundles; nil makes one.
	Cache *cache.Cache
	// NewKey makes workload and node keys; default ECDSA P-256.
	NewKey  func() (crypto.Signer, error)
	Backoff backoff.Config
	Clock   clock.Clock
	Logger  *slog.Logger
	// Metrics receives the agent's metrics (see NewMetrics); nil records
	// none.
	Metrics *Metrics
}

// Agent is a node agent: it holds the node's identity, follows the CA's
// entries and bundle, and keeps every workload SVID minted and rotated in
// its cache, from which the Workload API and SDS serve.
type Agent struct {
	cfg   Config
	log   *slog.Logger
	cache *cache.Cache

	mu     sync.Mutex
	client *client.Client
	src    *client.Source

	// pending holds entry ids that need a (new) SVID; wake signals it.
	pendingMu sync.Mutex
	pending   map[string]bool
	wake      chan struct{}
	// caBack is signalled when the entry sync stream (re)connects: the CA
	// is reachable, so a mint retry need not wait out its backoff.
	caBack chan struct{}

	// rotateAt is when each entry's current SVID should be replaced.
	rotateMu  sync.Mutex
	rotateAt  map[string]time.Time
	rescedule chan struct{}

	// rotateNow follows root activate --rotate-now (rotate_now.go).
	rotateNow rotateNow

	// mtls holds the mTLS policies and the proxies' counts (policy.go).
	mtls *mtlsState
}

// New checks cfg and returns an Agent; Run starts it.
func New(cfg Config) (*Agent, error) {
	switch {
	case cfg.ServerAddress == "":
		return nil, errors.New("agent: server address must be configured")
	case cfg.TrustDomain.IsZero():
		return nil, errors.New("agent: trust domain must be configured")
	case cfg.DataDir == "":
		return nil, errors.New("agent: data dir must be configured")
	case len(cfg.KeyPassphrase) == 0:
		return nil, errors.New("agent: a key passphrase is required: the node key is encrypted at rest")
	}
	cfg.Clock = clock.OrReal(cfg.Clock)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Cache == nil {
		cfg.Cache = cache.New(cache.Config{TrustDomain: cfg.TrustDomain, Clock: cfg.Clock, Logger: cfg.Logger})
	}
	if cfg.NewKey == nil {
		cfg.NewKey = func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) }
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("agent: creating data dir: %w", err)
	}
	a := &Agent{
		cfg:       cfg,
		log:       cfg.Logger.With("component", "agent"),
		cache:     cfg.Cache,
		pending:   map[string]bool{},
		wake:      make(chan struct{}, 1),
		caBack:    make(chan struct{}, 1),
		rotateAt:  map[string]time.Time{},
		rescedule: make(chan struct{}, 1),
		mtls:      newMTLSState(),
	}
	cfg.Metrics.bind(a)
	return a, nil
}

// Cache returns the cache the agent feeds.
func (a *Agent) Cache() *cache.Cache { return a.cache }

// Run obtains the node identity (stored, or by attestation), then follows
// the CA until ctx ends. It returns nil on cancellation, and an error only
// when it cannot go on (no identity and no usable join token).
func (a *Agent) Run(ctx context.Context) error {
	svid, roots, err := a.identity(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	src := client.NewSource(svid, x509bundle.FromX509Authorities(a.cfg.TrustDomain, roots))
	c, err := client.Dial(a.cfg.ServerAddress, a.cfg.TrustDomain, src)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	defer c.Close()
	a.mu.Lock()
	a.client, a.src = c, src
	a.mu.Unlock()
	a.log.Info("agent started", "spiffe_id", svid.ID.String(), "server", a.cfg.ServerAddress, "not_after", svid.Certificates[0].NotAfter)

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.syncLoop(ctx) })
	g.Go(func() error { return a.mintLoop(ctx) })
	g.Go(func() error { return a.rotateLoop(ctx) })
	g.Go(func() error { return a.nodeRenewLoop(ctx) })
	g.Go(func() error { return a.reportConnectionsLoop(ctx) })
	return g.Wait()
}

// identity loads the stored node SVID, or attests with the join token.
func (a *Agent) identity(ctx context.Context) (*x509svid.SVID, []*x509.Certificate, error) {
	roots := a.cfg.TrustBundle
	if stored, err := LoadBundleFile(a.dataPath(bundleFile)); err == nil && len(stored) > 0 {
		roots = stored
	}
	svid, err := loadNodeSVID(a.cfg.DataDir, a.cfg.KeyPassphrase)
	switch {
	case err == nil && a.cfg.Clock.Now().Before(svid.Certificates[0].NotAfter):
		a.log.Info("using stored node identity", "spiffe_id", svid.ID.String(), "not_after", svid.Certificates[0].NotAfter)
		return svid, roots, nil
	case err == nil:
		a.log.Warn("stored node SVID has expired; attesting again", "spiffe_id", svid.ID.String())
	case !errors.Is(err, os.ErrNotExist):
		return nil, nil, fmt.Errorf("agent: loading node identity: %w", err)
	}
	if a.cfg.JoinToken == "" {
		return nil, nil, fmt.Errorf("agent: no usable node identity in %s and no join token to attest with", a.cfg.DataDir)
	}
	if len(roots) == 0 && !a.cfg.InsecureBootstrap {
		return nil, nil, errors.New("agent: a trust bundle (--trust-bundle) is required to authenticate the CA")
	}
	key, err := a.cfg.NewKey()
	if err != nil {
		return nil, nil, fmt.Errorf("agent: generating node key: %w", err)
	}
	var bundle *nodev1.Bundle
	b := backoff.New(a.cfg.Backoff)
	err = backoff.Retry(ctx, a.cfg.Clock, b, func(ctx context.Context) error {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		var err error
		svid, bundle, err = client.Attest(cctx, client.AttestParams{
			Address: a.cfg.ServerAddress, TrustDomain: a.cfg.TrustDomain, Bootstrap: roots,
			Insecure: a.cfg.InsecureBootstrap && len(roots) == 0, JoinToken: a.cfg.JoinToken, Key: key,
		})
		if s, ok := status.FromError(errors.Unwrap(err)); ok && (s.Code() == codes.PermissionDenied || s.Code() == codes.InvalidArgument) {
			return backoff.Permanent(err)
		}
		return err
	}, func(err error, d time.Duration) {
		a.cfg.Metrics.setBackoff(opAttest, d)
		a.log.Warn("attestation failed; retrying", "error", err, "retry_in", d)
	})
	a.cfg.Metrics.setBackoff(opAttest, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("agent: %w", err)
	}
	xb, err := client.BundleFromProto(a.cfg.TrustDomain, bundle)
	if err != nil {
		return nil, nil, fmt.Errorf("agent: %w", err)
	}
	if err := saveNodeSVID(a.cfg.DataDir, a.cfg.KeyPassphrase, svid); err != nil {
		return nil, nil, fmt.Errorf("agent: saving node identity: %w", err)
	}
	if err := saveBundle(a.cfg.DataDir, xb.X509Authorities()); err != nil {
		return nil, nil, fmt.Errorf("agent: saving bundle: %w", err)
	}
	a.log.Info("node attested", "spiffe_id", svid.ID.String(), "serial", nodeapi.FormatSerial(svid.Certificates[0].SerialNumber), "not_after", svid.Certificates[0].NotAfter)
	return svid, xb.X509Authorities(), nil
}

func (a *Agent) dataPath(name string) string { return a.cfg.DataDir + "/" + name }

func (a *Agent) conn() *client.Client {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.client
}

// syncLoop keeps the entry-sync stream open, reconnecting with backoff.
func (a *Agent) syncLoop(ctx context.Context) error {
	b := backoff.New(a.cfg.Backoff)
	for {
		err := a.syncOnce(ctx, b)
		a.cfg.Metrics.setConnected(false)
		if ctx.Err() != nil {
			return nil
		}
		d := b.Next()
		a.cfg.Metrics.setBackoff(opSync, d)
		a.log.Warn("entry sync interrupted; retrying", "error", err, "retry_in", d)
		if backoff.Sleep(ctx, a.cfg.Clock, d) != nil {
			return nil
		}
	}
}

func (a *Agent) syncOnce(ctx context.Context, b *backoff.Backoff) error {
	stream, err := a.conn().SyncEntries(ctx)
	if err != nil {
		return err
	}
	for first := true; ; first = false {
		msg, err := stream.Recv()
		if err != nil {
			return err
		}
		if first {
			select {
			case a.caBack <- struct{}{}:
			default:
			}
		}
		b.Reset()
		a.cfg.Metrics.setConnected(true)
		a.cfg.Metrics.setBackoff(opSync, 0)
		if err := a.apply(ctx, msg); err != nil {
			return err
		}
	}
}

// apply feeds one sync message to the cache and queues the mints it needs.
func (a *Agent) apply(ctx context.Context, msg *nodev1.SyncEntriesResponse) error {
	entries := make([]cache.Entry, 0, len(msg.GetEntries()))
	for _, e := range msg.GetEntries() {
		id, err := spiffeid.FromString(e.GetSpiffeId())
		if err != nil {
			a.log.Error("ignoring entry with a bad SPIFFE ID", "entry_id", e.GetId(), "error", err)
			continue
		}
		entries = append(entries, cache.Entry{
			ID:        e.GetId(),
			SPIFFEID:  id,
			Selectors: e.GetSelectors(),
			X509TTL:   time.Duration(e.GetX509TtlSeconds()) * time.Second,
			JWTTTL:    time.Duration(e.GetJwtTtlSeconds()) * time.Second,
			DNSNames:  e.GetDnsNames(),
			Revision:  e.GetRevision(),
		})
	}
	if b := msg.GetBundle(); b != nil {
		if err := a.applyBundle(ctx, b); err != nil {
			return err
		}
	}
	if p := msg.GetMtlsPolicies(); p != nil {
		a.applyPolicies(p)
	}
	changed := a.cache.ApplyEntries(msg.GetFull(), entries, msg.GetDeletedEntryIds())
	ids := make([]string, 0, len(changed))
	for _, e := range changed {
		ids = append(ids, e.ID)
	}
	if msg.GetFull() {
		// After a reconnect, anything still without an SVID is due too.
		for _, e := range a.cache.Entries() {
			if a.cache.SVID(e.ID) == nil {
				ids = append(ids, e.ID)
			}
		}
	}
	a.rotateMu.Lock()
	for _, id := range msg.GetDeletedEntryIds() {
		delete(a.rotateAt, id)
	}
	a.rotateMu.Unlock()
	a.queueMint(ids...)
	a.applyRotateGeneration(msg.GetRotateGeneration())
	return nil
}

func (a *Agent) applyBundle(ctx context.Context, b *nodev1.Bundle) error {
	xb, err := client.BundleFromProto(a.cfg.TrustDomain, b)
	if err != nil {
		return err
	}
	jb := jwtbundle.New(a.cfg.TrustDomain)
	for _, k := range b.GetJwtAuthorities() {
		pub, err := x509.ParsePKIXPublicKey(k.GetPublicKey())
		if err != nil {
			a.log.Error("ignoring bad JWT authority", "key_id", k.GetKeyId(), "error", err)
			continue
		}
		jb.AddJWTAuthority(k.GetKeyId(), pub)
	}
	if err := a.cache.SetBundle(xb, jb, b.GetRevision()); err != nil {
		return err
	}
	a.mu.Lock()
	a.src.SetBundle(xb)
	a.mu.Unlock()
	if err := saveBundle(a.cfg.DataDir, xb.X509Authorities()); err != nil {
		a.log.Error("saving bundle", "error", err)
	}
	a.log.Info("bundle applied", "revision", b.GetRevision(), "roots", len(xb.X509Authorities()))
	go func() {
		a.mtls.reportMu.Lock() // see mtlsState.reportMu
		defer a.mtls.reportMu.Unlock()
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		if err := a.conn().ReportStatus(cctx, b.GetRevision()); err != nil && ctx.Err() == nil {
			a.log.Warn("reporting applied bundle", "error", err)
		}
	}()
	return nil
}

func (a *Agent) queueMint(ids ...string) {
	if len(ids) == 0 {
		return
	}
	a.pendingMu.Lock()
	for _, id := range ids {
		a.pending[id] = true
	}
	a.pendingMu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

func (a *Agent) takePending() []string {
	a.pendingMu.Lock()
	defer a.pendingMu.Unlock()
	ids := make([]string, 0, len(a.pending))
	for id := range a.pending {
		ids = append(ids, id)
	}
	clear(a.pending)
	return ids
}

// mintLoop mints every pending entry in batched calls, retrying the whole
// set with backoff while the CA is unreachable.
func (a *Agent) mintLoop(ctx context.Context) error {
	b := backoff.New(a.cfg.Backoff)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-a.wake:
		}
		ids := a.takePending()
		if len(ids) == 0 {
			continue
		}
		if err := a.mint(ctx, ids); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			a.queueMint(ids...)
			d := a.mintRetryDelay(b, ids)
			a.cfg.Metrics.setBackoff(opMint, d)
			a.log.Warn("minting SVIDs failed; retrying", "count", len(ids), "error", err, "retry_in", d)
			if !a.waitMintRetry(ctx, b, d) {
				return nil
			}
			continue
		}
		b.Reset()
		a.cfg.Metrics.setBackoff(opMint, 0)
	}
}

// mintRetryDelay is the backoff's next delay, but never more than a
// quarter of the time left to the earliest expiry among the SVIDs being
// replaced: a backoff sized for a long CA outage must not let an SVID
// lapse minutes after the CA came back. SVIDs of an hour leave more than
// the backoff's cap, so only SVIDs about to expire retry faster.
func (a *Agent) mintRetryDelay(b *backoff.Backoff, ids []string) time.Duration {
	d := b.Next()
	now := a.cfg.Clock.Now()
	for _, id := range ids {
		svid := a.cache.SVID(id)
		if svid == nil {
			continue
		}
		if left := svid.Certificates[0].NotAfter.Sub(now); left > 0 {
			d = min(d, max(left/4, minMintRetry))
		}
	}
	return d
}

// minMintRetry is the shortest delay between mint attempts.
const minMintRetry = 100 * time.Millisecond

// waitMintRetry waits d before the next mint attempt, or less if the entry
// sync stream reconnects meanwhile: the CA is back, so retry now. It
// reports false when ctx ended.
func (a *Agent) waitMintRetry(ctx context.Context, b *backoff.Backoff, d time.Duration) bool {
	t := a.cfg.Clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C():
	case <-a.caBack:
		b.Reset()
	}
	return true
}

func (a *Agent) mint(ctx context.Context, ids []string) error {
	known := map[string]bool{}
	for _, e := range a.cache.Entries() {
		known[e.ID] = true
	}
	reqs := make([]client.MintRequest, 0, len(ids))
	renewing := map[string]bool{} // entries that hold an SVID: a rotation
	for _, id := range ids {
		if !known[id] {
			continue // deleted since it was queued
		}
		renewing[id] = a.cache.SVID(id) != nil
		key, err := a.cfg.NewKey()
		if err != nil {
			return fmt.Errorf("generating key: %w", err)
		}
		reqs = append(reqs, client.MintRequest{EntryID: id, Key: key})
	}
	if len(reqs) == 0 {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	results, err := a.conn().MintX509SVIDs(cctx, reqs)
	if len(reqs) >= burstMint {
		// A burst (a new node, a mass rotation) allocates keys, CSRs and
		// responses for every entry at once; give that memory back to the
		// node now instead of holding it at the high-water mark.
		defer debug.FreeOSMemory()
	}
	// Publish the batch to the cache as one change: a workload entitled to
	// all of it gets one update, not one per SVID.
	var minted []cache.EntrySVID
	for _, r := range results {
		if r.Err == nil {
			minted = append(minted, cache.EntrySVID{EntryID: r.EntryID, SVID: r.SVID})
		}
	}
	setErrs := a.cache.SetSVIDs(minted)
	var retry []string
	for _, r := range results {
		if r.Err != nil {
			if status.Code(r.Err) == codes.NotFound {
				a.log.Debug("entry no longer authorized; not minting", "entry_id", r.EntryID)
				continue
			}
			a.log.Warn("minting SVID failed", "entry_id", r.EntryID, "error", r.Err)
			if renewing[r.EntryID] {
				a.cfg.Metrics.rotationFailed(kindWorkload)
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
			a.log.Debug("discarding minted SVID", "entry_id", r.EntryID, "error", setErr)
			continue
		}
		a.scheduleRotation(r.EntryID, leaf)
		if renewing[r.EntryID] {
			a.cfg.Metrics.rotated(kindWorkload)
		}
		a.log.Debug("SVID minted", "entry_id", r.EntryID, "spiffe_id", r.SVID.ID.String(), "serial", nodeapi.FormatSerial(leaf.SerialNumber), "not_after", leaf.NotAfter)
	}
	if err != nil {
		// Requests past the failed batch were not minted.
		for _, r := range reqs[len(results):] {
			retry = append(retry, r.EntryID)
			if renewing[r.EntryID] {
				a.cfg.Metrics.rotationFailed(kindWorkload)
			}
		}
		a.queueMintLater(retry)
		return err
	}
	if len(retry) > 0 {
		a.queueMintLater(retry)
		return fmt.Errorf("%d SVIDs could not be minted", len(retry))
	}
	return nil
}

// queueMintLater re-queues ids without waking the mint loop (its backoff
// decides when).
func (a *Agent) queueMintLater(ids []string) {
	a.pendingMu.Lock()
	for _, id := range ids {
		a.pending[id] = true
	}
	a.pendingMu.Unlock()
}

// rotationTime is when to replace leaf. The CA backdates NotBefore to
// absorb clock skew, so the lifetime is counted from when the agent got the
// certificate; otherwise a short-lived SVID would be due the moment it
// arrived.
func (a *Agent) rotationTime(leaf *x509.Certificate) time.Time {
	from := leaf.NotBefore
	if now := a.cfg.Clock.Now(); now.After(from) {
		from = now
	}
	return rotate.RotateAt(from, leaf.NotAfter, mrand.Float64())
}

func (a *Agent) scheduleRotation(entryID string, leaf *x509.Certificate) {
	at := a.rotationTime(leaf)
	a.rotateMu.Lock()
	a.rotateAt[entryID] = at
	a.rotateMu.Unlock()
	select {
	case a.rescedule <- struct{}{}:
	default:
	}
}

// rotateLoop queues each SVID for re-minting at its rotation time.
func (a *Agent) rotateLoop(ctx context.Context) error {
	const idle = time.Hour
	timer := a.cfg.Clock.NewTimer(idle)
	defer timer.Stop()
	for {
		now := a.cfg.Clock.Now()
		next := now.Add(idle)
		var due []string
		a.rotateMu.Lock()
		for id, at := range a.rotateAt {
			if !now.Before(at) {
				due = append(due, id)
				delete(a.rotateAt, id)
			} else if at.Before(next) {
				next = at
			}
		}
		a.rotateMu.Unlock()
		// Expired SVIDs (possible only while the CA is unreachable) are
		// dropped at their expiry, so open streams stop serving them.
		if n := a.cache.PruneExpired(); n > 0 {
			a.log.Warn("SVIDs expired before they could be rotated", "count", n)
		}
		if _, earliest := a.cache.Stats(); !earliest.IsZero() && earliest.Before(next) {
			next = earliest.Add(time.Millisecond)
		}
		if len(due) > 0 {
			a.log.Debug("rotating SVIDs", "count", len(due))
			a.queueMint(due...)
		}
		timer.Stop()
		timer.Reset(max(next.Sub(now), 0))
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C():
		case <-a.rescedule:
		}
	}
}

// nodeRenewLoop renews the node SVID at half its life, with backoff.
func (a *Agent) nodeRenewLoop(ctx context.Context) error {
	b := backoff.New(a.cfg.Backoff)
	for {
		a.mu.Lock()
		svid, _ := a.src.GetX509SVID()
		a.mu.Unlock()
		at := a.nodeRotateAt(svid, a.rotationTime(svid.Certificates[0]))
		t := a.cfg.Clock.NewTimer(at.Sub(a.cfg.Clock.Now()))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C():
		case <-a.rotateNow.wakeChan():
			t.Stop()
			continue
		}
		err := backoff.Retry(ctx, a.cfg.Clock, b, func(ctx context.Context) error {
			key, err := a.cfg.NewKey()
			if err != nil {
				return err
			}
			cctx, cancel := context.WithTimeout(ctx, callTimeout)
			defer cancel()
			fresh, err := a.conn().RenewNodeSVID(cctx, key)
			if err != nil {
				return err
			}
			if err := saveNodeSVID(a.cfg.DataDir, a.cfg.KeyPassphrase, fresh); err != nil {
				return fmt.Errorf("saving node identity: %w", err)
			}
			a.mu.Lock()
			a.src.SetSVID(fresh)
			a.mu.Unlock()
			a.cfg.Metrics.rotated(kindNode)
			a.cfg.Metrics.setBackoff(opRenew, 0)
			a.log.Info("node SVID renewed", "spiffe_id", fresh.ID.String(), "serial", nodeapi.FormatSerial(fresh.Certificates[0].SerialNumber), "not_after", fresh.Certificates[0].NotAfter)
			return nil
		}, func(err error, d time.Duration) {
			a.cfg.Metrics.rotationFailed(kindNode)
			a.cfg.Metrics.setBackoff(opRenew, d)
			a.log.Warn("renewing node SVID failed; retrying", "error", err, "retry_in", d)
		})
		if err != nil {
			return nil // ctx ended
		}
	}
}

// MintJWTSVID asks the CA for a JWT-SVID for one of this node's entries.
func (a *Agent) MintJWTSVID(ctx context.Context, entryID string, audience []string) (string, error) {
	c := a.conn()
	if c == nil {
		return "", status.Error(codes.Unavailable, "agent is starting")
	}
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	return c.MintJWTSVID(cctx, entryID, audience)
}
