package servercert

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/signet-mesh/signet/ca"
	"github.com/signet-mesh/signet/ca/keys"
	"github.com/signet-mesh/signet/internal/clock"
	"github.com/signet-mesh/signet/internal/nodeapi"
)

// DefaultTTL is the lifetime of the server certificate when Config.TTL is
// zero.
const DefaultTTL = time.Hour

// failureLogEvery bounds how often a failing renewal is logged: it is
// retried on every handshake.
const failureLogEvery = time.Minute

// ErrNoAuthority: the CA has no intermediate to sign with yet.
var ErrNoAuthority = errors.New("servercert: the CA has no signing authority yet")

// Log attribute keys.
const (
	logSPIFFEID    = "spiffe_id"
	logSerial      = "serial"
	logNotAfter    = "not_after"
	logAuthorityID = "authority_id"
	logError       = "error"
	logComponent   = "component"
)

// Config configures a Manager.
type Config struct {
	// CA signs the certificate with its current intermediate. Required.
	CA *ca.CA
	// TTL of each certificate; it is renewed at half of it. Zero means
	// DefaultTTL.
	TTL time.Duration
	// DNSNames are added for clients that check a host name as well as
	// the SPIFFE ID. Optional.
	DNSNames []string
	// Clock decides when to renew. Nil means the wall clock.
	Clock clock.Clock
	// Logger receives renewals. Nil discards logs.
	Logger *slog.Logger
}

// Manager holds the current server certificate. It is safe for concurrent
// use.
type Manager struct {
	cfg   Config
	clock clock.Clock
	log   *slog.Logger

	cur atomic.Pointer[current]
	// mu serialises renewals, so a burst of handshakes renews once.
	mu         sync.Mutex
	lastFailed time.Time // when a failed renewal was last logged (under mu)
}

// current is a certificate with what decides its renewal.
type current struct {
	cert        *tls.Certificate
	authorityID string
	renewAt     time.Time
}

// New checks cfg and returns a Manager. It signs nothing yet.
func New(cfg Config) (*Manager, error) {
	if cfg.CA == nil {
		return nil, errors.New("servercert: CA is required")
	}
	if cfg.TTL < 0 {
		return nil, fmt.Errorf("servercert: negative TTL %v", cfg.TTL)
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{cfg: cfg, clock: clock.OrReal(cfg.Clock), log: log.With(logComponent, "servercert")}, nil
}

// Certificate returns the server's TLS certificate, renewing it first when
// the CA's intermediate changed or it is past half of its life. It fails
// with ErrNoAuthority before the CA has an intermediate.
func (m *Manager) Certificate() (*tls.Certificate, error) {
	if c := m.cur.Load(); c != nil && !m.due(c) {
		return c.cert, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.cur.Load()
	if c != nil && !m.due(c) {
		return c.cert, nil // renewed by the call before
	}
	next, err := m.renew()
	if err == nil {
		m.cur.Store(next)
		return next.cert, nil
	}
	if c != nil && m.clock.Now().Before(c.cert.Leaf.NotAfter) {
		// Keep serving the current one; say so now and then.
		if now := m.clock.Now(); now.Sub(m.lastFailed) >= failureLogEvery {
			m.lastFailed = now
			m.log.Error("renewing server certificate", logError, err)
		}
		return c.cert, nil
	}
	return nil, err
}

func (m *Manager) due(c *current) bool {
	a := m.cfg.CA.X509Authority()
	return a == nil || a.ID != c.authorityID || !m.clock.Now().Before(c.renewAt)
}

func (m *Manager) renew() (*current, error) {
	if m.cfg.CA.X509Authority() == nil {
		return nil, ErrNoAuthority
	}
	key, err := keys.GenerateSigner(keys.KeyTypeECP256)
	if err != nil {
		return nil, fmt.Errorf("servercert: %w", err)
	}
	id := nodeapi.ServerID(m.cfg.CA.TrustDomain())
	svid, err := m.cfg.CA.SignX509SVID(context.Background(), ca.X509SVIDParams{
		SPIFFEID:  id,
		PublicKey: key.Public(),
		TTL:       m.cfg.TTL,
		DNSNames:  m.cfg.DNSNames,
	})
	if err != nil {
		return nil, fmt.Errorf("servercert: signing: %w", err)
	}
	leaf := svid.Chain[0]
	cert := &tls.Certificate{PrivateKey: key, Leaf: leaf}
	for _, c := range svid.Chain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	half := leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) / 2)
	m.log.Info("server certificate renewed", logSPIFFEID, id.String(), logSerial, nodeapi.FormatSerial(leaf.SerialNumber),
		logNotAfter, leaf.NotAfter, logAuthorityID, svid.AuthorityID)
	return &current{cert: cert, authorityID: svid.AuthorityID, renewAt: half}, nil
}
