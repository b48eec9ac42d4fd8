package federation

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-mesh/signet/ca/audit"
	"github.com/signet-mesh/signet/ca/bundle"
	"github.com/signet-mesh/signet/ca/store"
	"github.com/signet-mesh/signet/internal/backoff"
	"github.com/signet-mesh/signet/internal/clock"
)

// Refresh timing.
const (
	// DefaultRefreshHint is how often a bundle without a
	// spiffe_refresh_hint is fetched, and the hint the bundle endpoint
	// serves by default (SPIRE's default too).
	DefaultRefreshHint = 5 * time.Minute
	// MinRefreshInterval and MaxRefreshInterval clamp a peer's refresh
	// hint: a peer cannot make the server poll it in a busy loop, nor
	// stop polling for days.
	MinRefreshInterval = time.Second
	MaxRefreshInterval = time.Hour
	// DefaultFetchTimeout bounds one fetch.
	DefaultFetchTimeout = 10 * time.Second
	// retryInitial and retryMax are the default backoff after a failed
	// fetch (capped further at the refresh interval).
	retryInitial = time.Second
	retryMax     = 5 * time.Minute
)

// Config configures a Manager.
type Config struct {
	// Store holds the relationships and their bundles. Required.
	Store store.Store
	// TrustDomain is this server's own trust domain. Required.
	TrustDomain spiffeid.TrustDomain
	// WebRoots verify https_web endpoints; nil means the system roots.
	WebRoots *x509.CertPool
	// FetchTimeout bounds one fetch; zero means DefaultFetchTimeout.
	FetchTimeout time.Duration
	// Backoff paces the retries after a failed fetch; zero fields take
	// one second up to five minutes. A retry never waits longer than the
	// refresh interval.
	Backoff backoff.Config
	// Clock defaults to the wall clock.
	Clock clock.Clock
	// Logger defaults to discarding.
	Logger *slog.Logger
}

// Manager keeps the federation relationships: it changes them for the
// admin API and refreshes each bundle on its refresh hint (Run). It is
// safe for concurrent use.
type Manager struct {
	cfg  Config
	log  *slog.Logger
	kick chan struct{}

	// fetchMu serialises fetches and their commits, so a manual refresh
	// and the loop never race on one domain's state.
	fetchMu sync.Mutex
	mu      sync.Mutex
	states  map[spiffeid.TrustDomain]*domainState
}

// domainState is this server's refresh state of one relationship (not
// stored: another replica keeps its own).
type domainState struct {
	next        time.Time
	retry       *backoff.Backoff
	lastRefresh time.Time
	lastErrorAt time.Time
	lastError   string
}

// Status is a relationship with this server's refresh state of it.
type Status struct {
	*Relationship
	LastRefresh time.Time
	LastError   string
	LastErrorAt time.Time
	NextRefresh time.Time
}

// New returns a Manager with cfg's zero fields defaulted.
func New(cfg Config) (*Manager, error) {
	if cfg.Store == nil || cfg.TrustDomain.IsZero() {
		return nil, errors.New("federation: store and trust domain are required")
	}
	cfg.Clock = clock.OrReal(cfg.Clock)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.FetchTimeout <= 0 {
		cfg.FetchTimeout = DefaultFetchTimeout
	}
	if cfg.Backoff.Initial <= 0 {
		cfg.Backoff.Initial = retryInitial
	}
	if cfg.Backoff.Max <= 0 {
		cfg.Backoff.Max = retryMax
	}
	return &Manager{
		cfg:    cfg,
		log:    cfg.Logger.With(logComponent, "federation"),
		kick:   make(chan struct{}, 1),
		states: map[spiffeid.TrustDomain]*domainState{},
	}, nil
}

// Create validates p and stores the relationship (with its initial
// bundle, if any) in one transaction with its audit records. The
// refresher fetches the bundle at once.
func (m *Manager) Create(ctx context.Context, actor string, p Params) (*Relationship, error) {
	r, err := p.Validate(m.cfg.TrustDomain)
	if err != nil {
		return nil, err
	}
	now := m.cfg.Clock.Now()
	r.CreatedAt = now
	err = m.cfg.Store.Update(ctx, func(tx store.Tx) error {
		if _, err := Get(tx, r.TrustDomain); err == nil {
			return fmt.Errorf("%w: %s", ErrAlreadyExists, r.TrustDomain.Name())
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		if err := m.checkEndpointRoots(tx, r); err != nil {
			return err
		}
		if r.Revision, err = tx.NextRevision(); err != nil {
			return err
		}
		if r.Bundle != nil {
			r.BundleUpdatedAt = now
		}
		if err := put(tx, r); err != nil {
			return err
		}
		if _, err := audit.Append(tx, relationshipRecord(audit.TypeFederationCreated, actor, r), now); err != nil {
			return err
		}
		if r.Bundle != nil {
			if _, err := audit.Append(tx, bundleRecord(actor, r.TrustDomain, r.Bundle, ""), now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	m.log.InfoContext(ctx, "federation created", logTrustDomain, r.TrustDomain.Name(), logURL, r.BundleEndpointURL, logProfile, string(r.Profile))
	m.wake()
	return r, nil
}

// checkEndpointRoots refuses an https_spiffe endpoint whose SVID nothing
// could verify: its trust domain must be this one, the federated one
// (whose initial bundle Validate requires), or one federated already.
func (m *Manager) checkEndpointRoots(tx store.Tx, r *Relationship) error {
	if r.Profile != ProfileHTTPSSPIFFE {
		return nil
	}
	etd := r.EndpointSPIFFEID.TrustDomain()
	if etd == m.cfg.TrustDomain || etd == r.TrustDomain {
		return nil
	}
	other, err := Get(tx, etd)
	if errors.Is(err, ErrNotFound) || (err == nil && other.Bundle == nil) {
		return invalid("endpoint_spiffe_id", r.EndpointSPIFFEID.String(), "is in %s, whose roots this server does not have to verify it: federate with %s first", etd.Name(), etd.Name())
	}
	return err
}

// Delete removes the relationship and its bundle in one transaction with
// its audit record.
func (m *Manager) Delete(ctx context.Context, actor string, td spiffeid.TrustDomain) error {
	now := m.cfg.Clock.Now()
	err := m.cfg.Store.Update(ctx, func(tx store.Tx) error {
		r, err := Get(tx, td)
		if err != nil {
			return err
		}
		if err := remove(tx, td); err != nil {
			return err
		}
		if _, err := tx.NextRevision(); err != nil {
			return err
		}
		_, err = audit.Append(tx, relationshipRecord(audit.TypeFederationDeleted, actor, r), now)
		return err
	})
	if err != nil {
		return err
	}
	m.log.InfoContext(ctx, "federation deleted", logTrustDomain, td.Name())
	m.wake()
	return nil
}

// Get returns one relationship with its refresh state.
func (m *Manager) Get(ctx context.Context, td spiffeid.TrustDomain) (*Status, error) {
	var r *Relationship
	err := m.cfg.Store.View(ctx, func(tx store.Tx) (err error) {
		r, err = Get(tx, td)
		return err
	})
	if err != nil {
		return nil, err
	}
	return m.status(r), nil
}

// List returns every relationship with its refresh state.
func (m *Manager) List(ctx context.Context) ([]*Status, error) {
	var rels []*Relationship
	err := m.cfg.Store.View(ctx, func(tx store.Tx) (err error) {
		rels, err = List(tx)
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]*Status, len(rels))
	for i, r := range rels {
		out[i] = m.status(r)
	}
	return out, nil
}

func (m *Manager) status(r *Relationship) *Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := &Status{Relationship: r}
	if st, ok := m.states[r.TrustDomain]; ok {
		s.LastRefresh, s.LastError, s.LastErrorAt, s.NextRefresh = st.lastRefresh, st.lastError, st.lastErrorAt, st.next
	}
	return s
}

// Refresh fetches td's bundle now and stores it if it changed. The
// error says why a bundle was refused or not fetched; the last good one
// is kept.
func (m *Manager) Refresh(ctx context.Context, td spiffeid.TrustDomain) (updated bool, err error) {
	var r *Relationship
	err = m.cfg.Store.View(ctx, func(tx store.Tx) (err error) {
		r, err = Get(tx, td)
		return err
	})
	if err != nil {
		return false, err
	}
	return m.refresh(ctx, r)
}

// Run refreshes every relationship's bundle on its refresh hint, and
// after a failure with the jittered backoff, until ctx ends; it returns
// nil then.
func (m *Manager) Run(ctx context.Context) error {
	changes, cancel := m.cfg.Store.Subscribe()
	defer cancel()
	for {
		due, wait, err := m.due(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			m.log.Error("listing federation relationships", logError, err)
			wait = m.cfg.Backoff.Initial
		}
		for _, r := range due {
			// Errors are logged and kept in the state.
			_, _ = m.refresh(ctx, r)
		}
		if len(due) > 0 {
			continue
		}
		if !m.wait(ctx, changes, wait) {
			return nil
		}
	}
}

// wait blocks until d passes (forever when d is 0), a relationship
// changes here or in the store, or ctx ends (false).
func (m *Manager) wait(ctx context.Context, changes <-chan struct{}, d time.Duration) bool {
	var timerC <-chan time.Time
	if d > 0 {
		t := m.cfg.Clock.NewTimer(d)
		defer t.Stop()
		timerC = t.C()
	}
	select {
	case <-ctx.Done():
		return false
	case <-m.kick:
	case _, ok := <-changes:
		// Another replica may have created or deleted one.
		return ok
	case <-timerC:
	}
	return true
}

// due lists the relationships to fetch now, and how long until the next
// one is due otherwise (0: none is).
func (m *Manager) due(ctx context.Context) ([]*Relationship, time.Duration, error) {
	var rels []*Relationship
	err := m.cfg.Store.View(ctx, func(tx store.Tx) (err error) {
		rels, err = List(tx)
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	now := m.cfg.Clock.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	live := make(map[spiffeid.TrustDomain]bool, len(rels))
	var due []*Relationship
	var wait time.Duration
	for _, r := range rels {
		live[r.TrustDomain] = true
		st := m.stateLocked(r.TrustDomain)
		if !st.next.After(now) {
			due = append(due, r)
			continue
		}
		if d := st.next.Sub(now); wait == 0 || d < wait {
			wait = d
		}
	}
	for td := range m.states {
		if !live[td] {
			delete(m.states, td)
		}
	}
	return due, wait, nil
}

func (m *Manager) stateLocked(td spiffeid.TrustDomain) *domainState {
	st, ok := m.states[td]
	if !ok {
		st = &domainState{retry: backoff.New(m.cfg.Backoff)}
		m.states[td] = st
	}
	return st
}

func (m *Manager) wake() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// refresh fetches r's bundle, stores it when it changed, and schedules
// the next fetch: on the bundle's refresh hint after a success, with the
// backoff after a failure. A refusal is logged and audited.
func (m *Manager) refresh(ctx context.Context, r *Relationship) (bool, error) {
	m.fetchMu.Lock()
	defer m.fetchMu.Unlock()
	var b *spiffebundle.Bundle
	roots, err := m.roots(ctx)
	if err == nil {
		b, err = fetch(ctx, fetchParams{rel: r, roots: roots, webRoots: m.cfg.WebRoots, timeout: m.cfg.FetchTimeout})
	}
	var updated bool
	if err == nil {
		updated, err = m.store(ctx, r.TrustDomain, b)
	}
	now := m.cfg.Clock.Now()
	m.mu.Lock()
	st := m.stateLocked(r.TrustDomain)
	if err == nil {
		st.retry.Reset()
		st.lastRefresh, st.lastError, st.lastErrorAt = now, "", time.Time{}
		st.next = now.Add(refreshInterval(b))
	} else {
		d := min(st.retry.Next(), refreshInterval(r.Bundle))
		st.lastError, st.lastErrorAt = err.Error(), now
		st.next = now.Add(d)
	}
	next := st.next
	m.mu.Unlock()

	switch {
	case err == nil && updated:
		seq, _ := b.SequenceNumber()
		m.log.Info("federated bundle updated", logTrustDomain, r.TrustDomain.Name(), logSequence, seq, logRoots, len(b.X509Authorities()), logNextRefresh, next)
	case err == nil:
		m.log.Debug("federated bundle unchanged", logTrustDomain, r.TrustDomain.Name(), logNextRefresh, next)
	case errors.Is(err, ErrNotFound) || ctx.Err() != nil:
	case IsRefusal(err):
		m.log.Warn("federated bundle refused; keeping the last good one", logTrustDomain, r.TrustDomain.Name(), logReason, refusalReason(err), logError, err, logRetryIn, next.Sub(now))
		m.auditRefusal(ctx, r, err)
	default:
		m.log.Warn("federated bundle not fetched; keeping the last good one", logTrustDomain, r.TrustDomain.Name(), logError, err, logRetryIn, next.Sub(now))
	}
	return updated, err
}

// refreshInterval is the bundle's refresh hint, clamped; the default
// when it has none.
func refreshInterval(b *spiffebundle.Bundle) time.Duration {
	d := DefaultRefreshHint
	if b != nil {
		if h, ok := b.RefreshHint(); ok && h > 0 {
			d = h
		}
	}
	return min(max(d, MinRefreshInterval), MaxRefreshInterval)
}

// roots returns the X.509 bundles that verify https_spiffe endpoints:
// this trust domain's and every federated one's.
func (m *Manager) roots(ctx context.Context) (*x509bundle.Set, error) {
	set := x509bundle.NewSet()
	err := m.cfg.Store.View(ctx, func(tx store.Tx) error {
		own, err := bundle.FromTx(tx, m.cfg.TrustDomain)
		if err != nil {
			return err
		}
		set.Add(own.X509Bundle())
		fed, _, err := Bundles(tx)
		for _, b := range fed {
			set.Add(b.X509Bundle())
		}
		return err
	})
	if err != nil {
		return nil, wrapErr("reading the bundles that verify endpoints: %w", err)
	}
	return set, nil
}

// store records a fetched bundle unless it is the one stored, in one
// transaction with its audit record, refusing a spiffe_sequence that
// goes backwards.
func (m *Manager) store(ctx context.Context, td spiffeid.TrustDomain, b *spiffebundle.Bundle) (bool, error) {
	now := m.cfg.Clock.Now()
	var updated bool
	err := m.cfg.Store.Update(ctx, func(tx store.Tx) error {
		r, err := Get(tx, td)
		if err != nil {
			return err
		}
		if r.Bundle != nil {
			if r.Bundle.Equal(b) {
				return nil
			}
			oldSeq, okOld := r.Bundle.SequenceNumber()
			newSeq, okNew := b.SequenceNumber()
			if okOld && okNew && newSeq < oldSeq {
				return fmt.Errorf("%w: %d after %d", ErrSequenceBackwards, newSeq, oldSeq)
			}
		}
		r.Bundle, r.BundleUpdatedAt = b, now
		if r.Revision, err = tx.NextRevision(); err != nil {
			return err
		}
		if err := put(tx, r); err != nil {
			return err
		}
		updated = true
		_, err = audit.Append(tx, bundleRecord("", td, b, ""), now)
		return err
	})
	return updated, err
}

// auditRefusal writes the audit record of a refused bundle.
func (m *Manager) auditRefusal(ctx context.Context, r *Relationship, refusal error) {
	rec := bundleRecord("", r.TrustDomain, nil, refusalReason(refusal))
	rec.Details[audit.DetailBundleEndpointURL] = r.BundleEndpointURL
	err := m.cfg.Store.Update(ctx, func(tx store.Tx) error {
		_, err := audit.Append(tx, rec, m.cfg.Clock.Now())
		return err
	})
	if err != nil && ctx.Err() == nil {
		m.log.Error("auditing a refused bundle", logTrustDomain, r.TrustDomain.Name(), logError, err)
	}
}

func relationshipRecord(typ, actor string, r *Relationship) audit.Record {
	d := map[string]string{
		audit.DetailTrustDomain:       r.TrustDomain.Name(),
		audit.DetailBundleEndpointURL: r.BundleEndpointURL,
		audit.DetailProfile:           string(r.Profile),
	}
	if !r.EndpointSPIFFEID.IsZero() {
		d[audit.DetailEndpointSPIFFEID] = r.EndpointSPIFFEID.String()
	}
	return audit.Record{Type: typ, Outcome: audit.OutcomeSuccess, Actor: actor, Subject: r.TrustDomain.IDString(), Details: d}
}

// bundleRecord is the audit record of a bundle update (b set) or of a
// refusal (reason set).
func bundleRecord(actor string, td spiffeid.TrustDomain, b *spiffebundle.Bundle, reason string) audit.Record {
	d := map[string]string{audit.DetailTrustDomain: td.Name()}
	rec := audit.Record{Type: audit.TypeFederationBundleUpdated, Outcome: audit.OutcomeSuccess, Actor: actor, Subject: td.IDString(), Details: d}
	if reason != "" {
		rec.Outcome = audit.OutcomeFailure
		d[audit.DetailReason] = reason
		return rec
	}
	if seq, ok := b.SequenceNumber(); ok {
		d[audit.DetailSequence] = strconv.FormatUint(seq, 10)
	}
	d[audit.DetailX509Authorities] = strconv.Itoa(len(b.X509Authorities()))
	d[audit.DetailBundleSHA256] = rootsDigest(b)
	return rec
}

// rootsDigest is the SHA-256 of the bundle's X.509 authorities (DER, in
// order): what an auditor compares with the other side's roots.
func rootsDigest(b *spiffebundle.Bundle) string {
	h := sha256.New()
	for _, c := range b.X509Authorities() {
		h.Write(c.Raw)
	}
	return hex.EncodeToString(h.Sum(nil))
}
