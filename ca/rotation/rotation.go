package rotation

import (
	"context"
	"crypto"
	"log/slog"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-mesh/signet/ca"
	"github.com/signet-mesh/signet/ca/keys"
	"github.com/signet-mesh/signet/ca/store"
	"github.com/signet-mesh/signet/internal/clock"
)

// Defaults for the zero values of Config's lifetimes (DESIGN.md's
// "Defaults").
const (
	DefaultRootTTL         = 365 * 24 * time.Hour
	DefaultIntermediateTTL = 7 * 24 * time.Hour
	// DefaultJWTKeyTTL matches the intermediate's: JWT keys rotate on the
	// same weekly rhythm, and a retired key leaves the bundle at most a
	// week after it stopped signing.
	DefaultJWTKeyTTL = 7 * 24 * time.Hour
)

// DefaultServerName is Config.ServerName's default: the name of the one
// server of a store that is not shared. Authorities stored before servers
// were named belong to it.
const DefaultServerName = "default"

// checkInterval is how often Run looks at the clock. Rotations happen at
// half of a lifetime measured in hours or days, so ten seconds late is
// never too late, and the check itself is in memory.
const checkInterval = 10 * time.Second

// maxAttempts bounds how often a step is planned again after its commit
// found the authorities changed underneath it (another server, or an
// operator's step on this one, committed first).
const maxAttempts = 3

// Config configures a Manager.
type Config struct {
	// Store holds the authorities. Required.
	Store store.Store
	// Keys creates and loads the authorities' private keys. Required.
	Keys keys.Manager
	// CA receives the signing authorities. Required.
	CA *ca.CA
	// TrustDomain must be the CA's. Required.
	TrustDomain spiffeid.TrustDomain
	// Clock drives rotation. Nil means the wall clock.
	Clock clock.Clock
	// Logger receives rotations. Nil discards logs.
	Logger *slog.Logger

	// ServerName names this CA server among those sharing the store: its
	// intermediates and JWT keys carry it (store.Authority.ServerName),
	// and it rotates only its own. Empty means DefaultServerName, which
	// is all a store with one server needs.
	ServerName string

	// KeyType of new root, intermediate and JWT keys. Empty means
	// keys.DefaultKeyType (EC-P256).
	KeyType keys.KeyType
	// RootTTL of a root signet creates. Zero means DefaultRootTTL.
	RootTTL time.Duration
	// IntermediateTTL of each intermediate; it is rotated at half of it.
	// Zero means DefaultIntermediateTTL.
	IntermediateTTL time.Duration
	// JWTKeyTTL of each JWT key. Zero means DefaultJWTKeyTTL.
	JWTKeyTTL time.Duration

	// ImportRoot, when set, is a self-signed root from the organisation's
	// PKI that signet uses instead of creating its own. It is imported
	// only into a store without an active root; later starts ignore it.
	ImportRoot *Import
	// ImportIntermediate, when set, is a CA certificate signed by the
	// organisation's root, which signet uses in place of a root: it signs
	// signet's intermediates, and the self-signed certificates of its
	// ChainFile become the bundle's trust anchors. Same rules as
	// ImportRoot; the two are exclusive.
	ImportIntermediate *Import

	// AutoRotateRoots turns on the automatic root schedule for operators
	// who want no manual steps (see scheduleRoots): prepare a new root at
	// half of the active root's life, activate it at five sixths, retire
	// the old one once nothing current chains to it.
	AutoRotateRoots bool
	// ConnectedAgents returns the connected agents (SPIFFE ID) and the
	// bundle revision each has applied: the schedule activates a root only
	// once all of them trust it, as `signet root activate` does. Required
	// with AutoRotateRoots.
	ConnectedAgents func() map[string]int64
	// Leading reports whether this server is the one of its store that
	// does once-per-store work: the automatic root schedule runs only
	// while it returns true. Nil means always (one server per store).
	Leading func() bool

	// CrashPoint, for crash-safety tests only, is called at named points
	// of the root rotation steps (CrashPoints lists them). Nil does
	// nothing. Product code never sets it: ca/server takes it only from
	// its test-only options.
	CrashPoint func(point string)
}

// Manager owns the CA's authorities: it creates or imports the root,
// keeps this server's intermediate and JWT key fresh, takes the root
// rotation steps, and hands the signing authorities to the CA.
//
// Every change is planned from a read of the store (plan.go), prepared
// outside any transaction (prepare.go: keys, signatures) and committed in
// one short transaction that first checks nothing changed since the read
// (commit.go). Methods are safe for concurrent use.
type Manager struct {
	cfg   Config
	clock clock.Clock
	log   *slog.Logger

	// stepMu serialises the steps of this process, so that they do not
	// conflict with each other at commit. It is held while keys are made:
	// nothing on the signing path takes it.
	stepMu sync.Mutex
	// signers caches the private keys of stored authorities by KeyRef,
	// since decrypting a soft key costs a deliberate few hundred
	// milliseconds. Keys of a step enter it only once the step committed.
	signers signerCache

	// mu guards the small state below, read by status calls while a step
	// runs.
	mu sync.Mutex
	// next is when this server's authorities next need attention; Run
	// does nothing before it.
	next time.Time
	// expiryCheckedAt is when warnExpiring last looked.
	expiryCheckedAt time.Time
	// schedule is the automatic root schedule's state: next is touched
	// only by Run's goroutine, note is read by Schedule.
	schedule scheduleState

	// wake asks Run to look now rather than at its next tick (see Wake).
	wake chan struct{}
}

// New checks cfg, applies its defaults and returns a Manager. It does no
// I/O; call Init.
func New(cfg Config) (*Manager, error) {
	switch {
	case cfg.Store == nil:
		return nil, wrapErr("%w: Store is required", ErrInvalidConfig)
	case cfg.Keys == nil:
		return nil, wrapErr("%w: Keys is required", ErrInvalidConfig)
	case cfg.CA == nil:
		return nil, wrapErr("%w: CA is required", ErrInvalidConfig)
	case cfg.TrustDomain.IsZero():
		return nil, wrapErr("%w: TrustDomain is required", ErrInvalidConfig)
	case cfg.TrustDomain != cfg.CA.TrustDomain():
		return nil, wrapErr("%w: trust domain %s differs from the CA's %s", ErrInvalidConfig, cfg.TrustDomain, cfg.CA.TrustDomain())
	case cfg.ImportRoot != nil && cfg.ImportIntermediate != nil:
		return nil, wrapErr("%w: ImportRoot and ImportIntermediate are exclusive", ErrInvalidConfig)
	case cfg.RootTTL < 0 || cfg.IntermediateTTL < 0 || cfg.JWTKeyTTL < 0:
		return nil, wrapErr("%w: negative TTL", ErrInvalidConfig)
	case cfg.AutoRotateRoots && cfg.ConnectedAgents == nil:
		return nil, wrapErr("%w: ConnectedAgents is required with AutoRotateRoots", ErrInvalidConfig)
	}
	if _, err := keys.ParseKeyType(string(cfg.KeyType)); err != nil {
		return nil, wrapErr("%w: %v", ErrInvalidConfig, err)
	}
	cfg.KeyType = orDefault(cfg.KeyType, keys.DefaultKeyType)
	cfg.RootTTL = orDefault(cfg.RootTTL, DefaultRootTTL)
	cfg.IntermediateTTL = orDefault(cfg.IntermediateTTL, DefaultIntermediateTTL)
	cfg.JWTKeyTTL = orDefault(cfg.JWTKeyTTL, DefaultJWTKeyTTL)
	cfg.ServerName = orDefault(cfg.ServerName, DefaultServerName)
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{
		cfg:     cfg,
		clock:   clock.OrReal(cfg.Clock),
		log:     log.With(logComponent, "rotation"),
		signers: signerCache{keys: cfg.Keys, m: map[string]crypto.Signer{}},
		wake:    make(chan struct{}, 1),
	}, nil
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Init loads the authorities from the store, creating (or importing) the
// root, an intermediate and a JWT key on first start, and hands them to
// the CA. A restart loads the same root and keys; an intermediate or JWT
// key that came due while the CA was down is rotated right away.
func (m *Manager) Init(ctx context.Context) error {
	return m.reconcile(ctx)
}

// Run rotates until ctx is cancelled, then returns nil. Every
// checkInterval of the Clock it rotates what is due: the intermediate at
// half its life, the JWT key (see doc.go), retiring JWT keys past their
// expiry. A failed rotation is logged and retried on the next tick; the
// current authorities stay in use meanwhile.
func (m *Manager) Run(ctx context.Context) error {
	if m.cfg.CA.X509Authority() == nil {
		return ErrNotInitialized
	}
	ticker := m.clock.NewTicker(checkInterval)
	defer ticker.Stop()
	for {
		m.tick(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C():
		case <-m.wake:
			m.schedule.next = time.Time{} // a new leader looks at the schedule at once
		}
	}
}

// Wake makes Run look at the authorities and the root schedule now. A
// replica calls it when it becomes the leader: the step its predecessor
// died in (a prepare, an activation due before the root expires) must not
// wait up to checkInterval for the next tick.
func (m *Manager) Wake() {
	select {
	case m.wake <- struct{}{}:
	default: // a look is already pending
	}
}

func (m *Manager) tick(ctx context.Context) {
	if m.due(m.clock.Now()) {
		if err := m.reconcile(ctx); err != nil && ctx.Err() == nil {
			m.log.Error("rotating authorities", logError, err)
		}
	}
	m.warnExpiring(ctx)
	if m.cfg.AutoRotateRoots && (m.cfg.Leading == nil || m.cfg.Leading()) {
		m.scheduleRoots(ctx)
	}
}

func (m *Manager) due(now time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return !now.Before(m.next)
}

// Reconcile brings this server's authorities to what the store and the
// clock require now. Servers sharing a store call it when another server
// changed the authorities (a root activated through another replica):
// this server's intermediate then moves under the new active root without
// waiting for its own next event.
func (m *Manager) Reconcile(ctx context.Context) error { return m.reconcile(ctx) }

// reconcile brings this server's authorities to what the clock requires
// (see next in plan.go) and hands the signing ones to the CA.
func (m *Manager) reconcile(ctx context.Context) error {
	return m.apply(ctx, "", func(context.Context, *work, time.Time) error { return nil })
}

// ShouldRotate reports whether a credential valid from notBefore to
// notAfter is at or past half of its life at now: the point where signet
// replaces intermediates and JWT keys, leaving the other half as margin
// for failures and retries.
func (m *Manager) ShouldRotate(now, notBefore, notAfter time.Time) bool {
	return shouldRotate(now, notBefore, notAfter)
}

func shouldRotate(now, notBefore, notAfter time.Time) bool {
	return !now.Before(lifePoint(notBefore, notAfter, 1, 2))
}

// lifePoint is the instant num/den of the way from notBefore to notAfter.
func lifePoint(notBefore, notAfter time.Time, num, den int64) time.Time {
	return notBefore.Add(notAfter.Sub(notBefore) * time.Duration(num) / time.Duration(den))
}
