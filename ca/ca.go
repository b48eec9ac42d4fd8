package ca

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-mesh/signet/internal/clock"
)

// Config configures a CA.
type Config struct {
	// TrustDomain is the only trust domain the CA signs for. Required.
	TrustDomain spiffeid.TrustDomain
	// Clock tells the time for validity periods. Nil means the wall clock.
	Clock clock.Clock
	// Logger receives authority changes. Nil discards logs. Issuance is
	// not logged here: callers record it in the audit log.
	Logger *slog.Logger
}

// CA signs X509-SVIDs and JWT-SVIDs with the authorities it is given. It
// holds no keys of its own and does no I/O: ca/rotation creates, stores
// and rotates the authorities and hands them over with SetX509Authority and
// SetJWTKey.
//
// All methods are safe for concurrent use; an authority swap is atomic, so
// a signing call uses either the old or the new authority, never a mix.
type CA struct {
	td    spiffeid.TrustDomain
	clock clock.Clock
	log   *slog.Logger

	x509 atomic.Pointer[x509State]
	jwt  atomic.Pointer[JWTKey]
}

// X509Authority is the intermediate CA that signs SVIDs.
type X509Authority struct {
	// ID names the authority in SVID records and logs.
	ID string
	// Certificate is the signing CA certificate.
	Certificate *x509.Certificate
	// Signer holds Certificate's private key.
	Signer crypto.Signer
	// UpstreamChain holds the certificates above Certificate, nearest
	// first, excluding the trust anchor. It is sent with every SVID so
	// that peers holding only the anchor can build the path.
	UpstreamChain []*x509.Certificate
	// CrossSigned are Certificate re-issued by roots on their way out of
	// the bundle (same subject and key). They are sent with every SVID
	// too, so that peers that still trust only such a root can build a
	// path to it.
	CrossSigned []*x509.Certificate
	// Roots are the trust anchors every minted chain is checked against.
	Roots []*x509.Certificate
}

// x509State is an authority with the pools its checks need, built once per
// swap rather than once per signature.
type x509State struct {
	auth          *X509Authority
	chain         []*x509.Certificate // Certificate, UpstreamChain, CrossSigned
	roots         *x509.CertPool
	intermediates *x509.CertPool

	// The authority's own chain up to the roots is the same for every
	// SVID it signs, so it is verified once, on first use; each SVID then
	// needs only its own signature checked against the authority.
	issuerOnce sync.Once
	issuerErr  error
}

// verifyIssuer checks, once per authority, that the authority chains to the
// roots; its expiry is checked on every signing.
func (s *x509State) verifyIssuer(now time.Time) error {
	s.issuerOnce.Do(func() {
		_, err := s.auth.Certificate.Verify(x509.VerifyOptions{
			Roots:         s.roots,
			Intermediates: s.intermediates,
			CurrentTime:   now,
			KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		})
		if err != nil {
			s.issuerErr = fmt.Errorf("authority %s does not chain to the roots: %w", s.auth.ID, err)
			return
		}
		for _, x := range s.auth.CrossSigned {
			if !bytes.Equal(x.RawSubject, s.auth.Certificate.RawSubject) || !bytes.Equal(x.RawSubjectPublicKeyInfo, s.auth.Certificate.RawSubjectPublicKeyInfo) {
				s.issuerErr = fmt.Errorf("authority %s: cross-signed certificate %s has another subject or key", s.auth.ID, x.SerialNumber.Text(16))
				return
			}
			if _, err := x.Verify(x509.VerifyOptions{Roots: s.roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
				s.issuerErr = fmt.Errorf("authority %s: cross-signed certificate does not chain to the roots: %w", s.auth.ID, err)
				return
			}
		}
	})
	return s.issuerErr
}

// JWTKey is the key that signs JWT-SVIDs.
type JWTKey struct {
	// ID is the key ID: the JWT "kid" header and the key's name in the
	// bundle's JWKS.
	ID string
	// Signer holds the private key.
	Signer crypto.Signer
	// NotAfter caps the expiry of every token the key signs, so a token
	// never outlives the key's presence in the bundle.
	NotAfter time.Time
}

// New returns a CA for cfg. It cannot sign until it has authorities.
func New(cfg Config) *CA {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &CA{
		td:    cfg.TrustDomain,
		clock: clock.OrReal(cfg.Clock),
		log:   log.With(logComponent, "ca"),
	}
}

// TrustDomain returns the trust domain the CA signs for.
func (c *CA) TrustDomain() spiffeid.TrustDomain { return c.td }

// SetX509Authority makes a the authority for every following
// SignX509SVID. A nil a removes the authority. a must not be modified
// afterwards.
func (c *CA) SetX509Authority(a *X509Authority) {
	if a == nil {
		c.x509.Store(nil)
		return
	}
	s := &x509State{
		auth:          a,
		chain:         slices.Concat([]*x509.Certificate{a.Certificate}, a.UpstreamChain, a.CrossSigned),
		roots:         x509.NewCertPool(),
		intermediates: x509.NewCertPool(),
	}
	for _, r := range a.Roots {
		s.roots.AddCert(r)
	}
	for _, cert := range s.chain {
		s.intermediates.AddCert(cert)
	}
	c.x509.Store(s)
	c.log.Info("x509 authority set", logAuthorityID, a.ID, logNotAfter, a.Certificate.NotAfter)
}

// X509Authority returns the current authority, or nil.
func (c *CA) X509Authority() *X509Authority {
	if s := c.x509.Load(); s != nil {
		return s.auth
	}
	return nil
}

// SetJWTKey makes k the key for every following SignJWTSVID. A nil k
// removes the key. k must not be modified afterwards.
func (c *CA) SetJWTKey(k *JWTKey) {
	c.jwt.Store(k)
	if k != nil {
		c.log.Info("jwt key set", logAuthorityID, k.ID, logNotAfter, k.NotAfter)
	}
}

// JWTKey returns the current JWT key, or nil.
func (c *CA) JWTKey() *JWTKey { return c.jwt.Load() }

// Log attribute keys.
const (
	logAuthorityID = "authority_id"
	logNotAfter    = "not_after"
	logComponent   = "component"
)
