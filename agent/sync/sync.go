package sync

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-mesh/signet/agent/cache"
	"github.com/signet-mesh/signet/agent/internal/logkey"
	"github.com/signet-mesh/signet/internal/backoff"
	"github.com/signet-mesh/signet/internal/clock"
	"github.com/signet-mesh/signet/internal/nodeapi"
	nodev1 "github.com/signet-mesh/signet/proto/signet/node/v1"
)

// CA is the call a Syncer makes (agent/client.Client implements it).
type CA interface {
	SyncEntries(ctx context.Context) (nodev1.NodeService_SyncEntriesClient, error)
}

// Minter takes the entries that need an SVID (agent/mint.Minter implements
// it).
type Minter interface {
	// Queue asks for an SVID for each entry.
	Queue(entryIDs ...string)
	// CAReachable says the CA answers again: retries need not wait.
	CAReachable()
}

// Scheduler owns renewal times (agent/rotate.Scheduler implements it).
type Scheduler interface {
	// Forget unschedules deleted entries.
	Forget(entryIDs ...string)
	// ApplyGeneration acts on the CA's rotate generation; spread is the
	// window the CA asks the re-mints to be spread over (0: the
	// scheduler's default).
	ApplyGeneration(gen int64, spread time.Duration)
}

// Metrics are optional hooks; nil fields are skipped.
type Metrics struct {
	// Connected is told whether the stream is up.
	Connected func(up bool)
	// Backoff is the delay before the next reconnection; 0 once up.
	Backoff func(time.Duration)
}

// Config configures a Syncer. Every field but Backoff, Clock, Logger and
// Metrics is required.
type Config struct {
	TrustDomain spiffeid.TrustDomain
	// Cache receives the entries and bundles.
	Cache *cache.Cache
	CA    CA
	// Minter is given every new or changed entry, and after a reconnect
	// every entry still without an SVID.
	Minter Minter
	// Scheduler forgets deleted entries and takes the rotate generation.
	Scheduler Scheduler
	// BundleChanged takes each new bundle just before the cache serves
	// it: the node identity authenticates the CA with it (and stores it
	// before the bundle is reported: agent/report).
	BundleChanged func(*x509bundle.Bundle)
	// BundleApplied is told after each new bundle (the agent reports the
	// revision to the CA), with the window the CA asks its agents to spread
	// such calls over (reconnect_spread_ms, which grows with the fleet).
	BundleApplied func(spread time.Duration)
	// Policies takes the mTLS policy set of each message that has one.
	Policies func(*nodev1.MTLSPolicies)
	Backoff  backoff.Config
	Clock    clock.Clock
	Logger   *slog.Logger
	Metrics  Metrics
}

// Syncer follows the CA's entry sync stream into the cache (see the
// package documentation).
type Syncer struct {
	cfg Config
	log *slog.Logger
	// own and fed decode the bundles of the agent's trust domain and the
	// federated ones; the follow goroutine's.
	own, fed decoder
}

// New returns a Syncer with cfg's zero fields defaulted.
func New(cfg Config) *Syncer {
	cfg.Clock = clock.OrReal(cfg.Clock)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Syncer{cfg: cfg, log: cfg.Logger.With(logkey.Component, "sync")}
}

// Run keeps the stream open, reconnecting with backoff, until ctx ends;
// then it returns nil. It returns an error only when the CA refuses the
// node's identity for good (nodeapi.NodeRejection): reconnecting cannot
// help.
func (s *Syncer) Run(ctx context.Context) error {
	b := backoff.New(s.cfg.Backoff)
	rnd := backoff.OrSystem(s.cfg.Backoff.Rand)
	for {
		spread, err := s.follow(ctx, b)
		s.connected(false)
		if ctx.Err() != nil {
			return nil
		}
		if _, ok := nodeapi.NodeRejection(err); ok {
			return fmt.Errorf("entry sync: %w", err)
		}
		d := b.NextFor(err)
		if spread > 0 {
			// The stream was up and broke (a CA restart, most likely):
			// come back at a random point of the window the CA asked
			// for, so the fleet does not arrive all at once.
			d = time.Duration(rnd() * float64(spread))
		}
		s.backoff(d)
		s.log.Warn("entry sync interrupted; retrying", logkey.Error, err, logkey.RetryIn, d)
		if backoff.Sleep(ctx, s.cfg.Clock, d) != nil {
			return nil
		}
	}
}

// follow runs one stream until it fails. spread is the reconnection
// window the CA's last message asked for (0 if none came).
func (s *Syncer) follow(ctx context.Context, b *backoff.Backoff) (spread time.Duration, err error) {
	stream, err := s.cfg.CA.SyncEntries(ctx)
	if err != nil {
		return 0, err
	}
	var pending *nodev1.SyncEntriesResponse // an update split across messages, so far
	for first := true; ; first = false {
		msg, err := stream.Recv()
		if err != nil {
			return spread, err
		}
		spread = time.Duration(msg.GetReconnectSpreadMs()) * time.Millisecond
		if first {
			s.cfg.Minter.CAReachable()
		}
		b.Reset()
		if pending != nil {
			msg = joinSync(pending, msg)
			pending = nil
		}
		if msg.GetMore() {
			pending = msg
			continue
		}
		s.connected(true)
		s.backoff(0)
		if err := s.apply(msg); err != nil {
			return spread, err
		}
	}
}

// joinSync adds next, a continuation of an update split across messages,
// to what arrived of it so far: the entries and deletions of both, the
// first message's full, bundle, policies and federated bundles, next's revision, rotate
// generation and more.
func joinSync(sofar, next *nodev1.SyncEntriesResponse) *nodev1.SyncEntriesResponse {
	sofar.Entries = append(sofar.Entries, next.GetEntries()...)
	sofar.DeletedEntryIds = append(sofar.DeletedEntryIds, next.GetDeletedEntryIds()...)
	if next.GetBundle() != nil {
		sofar.Bundle = next.GetBundle()
	}
	if next.GetMtlsPolicies() != nil {
		sofar.MtlsPolicies = next.GetMtlsPolicies()
	}
	if next.GetFederatedBundles() != nil {
		sofar.FederatedBundles = next.GetFederatedBundles()
	}
	sofar.Revision = next.GetRevision()
	sofar.RotateGeneration = next.GetRotateGeneration()
	sofar.More = next.GetMore()
	sofar.ReconnectSpreadMs = next.GetReconnectSpreadMs()
	if next.GetRotateSpreadMs() != 0 {
		sofar.RotateSpreadMs = next.GetRotateSpreadMs()
	}
	return sofar
}

// apply feeds one sync message to the cache and queues the mints it needs.
func (s *Syncer) apply(msg *nodev1.SyncEntriesResponse) error {
	var entries []cache.Entry
	for _, e := range msg.GetEntries() {
		id, err := spiffeid.FromString(e.GetSpiffeId())
		if err != nil {
			s.log.Error("ignoring entry with a bad SPIFFE ID", logkey.EntryID, e.GetId(), logkey.Error, err)
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

			FederatesWith: e.GetFederatesWith(),
		})
	}
	if b := msg.GetBundle(); b != nil {
		if err := s.applyBundle(b, time.Duration(msg.GetReconnectSpreadMs())*time.Millisecond); err != nil {
			return err
		}
	}
	if fb := msg.GetFederatedBundles(); fb != nil {
		if err := s.applyFederated(fb); err != nil {
			return err
		}
	}
	if p := msg.GetMtlsPolicies(); p != nil {
		s.cfg.Policies(p)
	}
	var ids []string
	// A bundle-only message (a root change reaching the whole fleet at
	// once) leaves the entries alone.
	if msg.GetFull() || len(entries) > 0 || len(msg.GetDeletedEntryIds()) > 0 {
		for _, e := range s.cfg.Cache.ApplyEntries(msg.GetFull(), entries, msg.GetDeletedEntryIds()) {
			ids = append(ids, e.ID)
		}
	}
	if msg.GetFull() {
		// After a reconnect, anything still without an SVID is due too.
		for _, e := range s.cfg.Cache.Entries() {
			if s.cfg.Cache.SVID(e.ID) == nil {
				ids = append(ids, e.ID)
			}
		}
	}
	s.cfg.Scheduler.Forget(msg.GetDeletedEntryIds()...)
	s.cfg.Minter.Queue(ids...)
	s.cfg.Scheduler.ApplyGeneration(msg.GetRotateGeneration(), time.Duration(msg.GetRotateSpreadMs())*time.Millisecond)
	return nil
}

func (s *Syncer) applyBundle(b *nodev1.Bundle, spread time.Duration) error {
	s.own.begin()
	xb, err := s.own.x509Bundle(s.cfg.TrustDomain, b)
	if err != nil {
		return err
	}
	jb := s.jwtBundle(&s.own, s.cfg.TrustDomain, b, false)
	s.own.done()
	// The CA connection trusts the bundle before the cache serves its
	// revision: agent/report reads that revision, then has the node
	// store the bundle it trusts, so what it stores is never older than
	// what it reports.
	s.cfg.BundleChanged(xb)
	if err := s.cfg.Cache.SetBundle(xb, jb, b.GetRevision()); err != nil {
		return err
	}
	s.log.Info("bundle applied", logkey.Revision, b.GetRevision(), logkey.Roots, len(xb.X509Authorities()))
	s.cfg.BundleApplied(spread)
	return nil
}

func (s *Syncer) connected(up bool) {
	if s.cfg.Metrics.Connected != nil {
		s.cfg.Metrics.Connected(up)
	}
}

func (s *Syncer) backoff(d time.Duration) {
	if s.cfg.Metrics.Backoff != nil {
		s.cfg.Metrics.Backoff(d)
	}
}

// applyFederated replaces the federated bundles with the complete set of
// a sync message. A bundle that cannot be read (or names the agent's own
// trust domain) is skipped with an error log; the others still apply.
func (s *Syncer) applyFederated(fb *nodev1.FederatedBundles) error {
	var xs []*x509bundle.Bundle
	var js []*jwtbundle.Bundle
	s.fed.begin()
	defer s.fed.done()
	for _, b := range fb.GetBundles() {
		td, err := spiffeid.TrustDomainFromString(b.GetTrustDomain())
		if err != nil || td == s.cfg.TrustDomain {
			s.log.Error("ignoring federated bundle of a bad trust domain", logkey.TrustDomain, b.GetTrustDomain(), logkey.Error, err)
			continue
		}
		xb, err := s.fed.x509Bundle(td, b)
		if err != nil {
			s.log.Error("ignoring bad federated bundle", logkey.TrustDomain, td.Name(), logkey.Error, err)
			continue
		}
		xs, js = append(xs, xb), append(js, s.jwtBundle(&s.fed, td, b, true))
	}
	if err := s.cfg.Cache.SetFederatedBundles(xs, js); err != nil {
		return err
	}
	s.log.Info("federated bundles applied", logkey.FederatedBundles, len(xs))
	return nil
}
