// Package catest builds throwaway signet CAs for tests: a root, an
// intermediate and a *ca.CA ready to sign, in memory, like go-spiffe's
// internal/test CA. Other packages' tests (ca/api, agent, sds) use it to
// get real SVIDs and bundles without a store or key files:
//
//	td := spiffeid.RequireTrustDomainFromString("example.org")
//	c := catest.NewCA(t, td)
//	csr, key := catest.CreateCSR(t)
//	svid, err := c.CA.SignX509SVID(ctx, ca.X509SVIDParams{SPIFFEID: id, PublicKey: mustParse(csr).PublicKey})
//	bundle := c.X509Bundle()
//
// Every helper fails the test on error instead of returning one.
package catest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/signet-mesh/signet/ca"
	"github.com/signet-mesh/signet/internal/clock"
)

// CA is a test CA: a root, an intermediate signed by it, a JWT key, and
// the *ca.CA that signs with them.
type CA struct {
	TrustDomain     spiffeid.TrustDomain
	Root            *x509.Certificate
	RootKey         crypto.Signer
	Intermediate    *x509.Certificate
	IntermediateKey crypto.Signer
	JWTKey          *ca.JWTKey
	CA              *ca.CA
	Clock           clock.Clock
}

type options struct {
	clock           clock.Clock
	rootTTL         time.Duration
	intermediateTTL time.Duration
}

// Option changes how NewCA builds the CA.
type Option func(*options)

// WithClock makes the CA (and its certificates' validity) follow c instead
// of the wall clock.
func WithClock(c clock.Clock) Option { return func(o *options) { o.clock = c } }

// WithIntermediateTTL sets the intermediate's (and JWT key's) lifetime;
// the default is 24h.
func WithIntermediateTTL(d time.Duration) Option { return func(o *options) { o.intermediateTTL = d } }

// NewCA returns a CA for td with a 10-year root and a 24-hour
// intermediate, both P-256.
func NewCA(tb testing.TB, td spiffeid.TrustDomain, opts ...Option) *CA {
	tb.Helper()
	o := options{clock: clock.Real{}, rootTTL: 10 * 365 * 24 * time.Hour, intermediateTTL: 24 * time.Hour}
	for _, opt := range opts {
		opt(&o)
	}
	now := o.clock.Now()

	rootKey := NewKey(tb)
	tmpl, err := ca.NewRootTemplate(td, rootKey.Public(), now, o.rootTTL)
	if err != nil {
		tb.Fatalf("catest: root template: %v", err)
	}
	root, err := ca.CreateCertificate(tmpl, tmpl, rootKey.Public(), rootKey)
	if err != nil {
		tb.Fatalf("catest: signing root: %v", err)
	}

	interKey := NewKey(tb)
	tmpl, err = ca.NewIntermediateTemplate(td, interKey.Public(), now, o.intermediateTTL, root)
	if err != nil {
		tb.Fatalf("catest: intermediate template: %v", err)
	}
	inter, err := ca.CreateCertificate(tmpl, root, interKey.Public(), rootKey)
	if err != nil {
		tb.Fatalf("catest: signing intermediate: %v", err)
	}

	c := ca.New(ca.Config{TrustDomain: td, Clock: o.clock})
	c.SetX509Authority(&ca.X509Authority{
		ID:          "catest-intermediate",
		Certificate: inter,
		Signer:      interKey,
		Roots:       []*x509.Certificate{root},
	})
	jwtKey := &ca.JWTKey{ID: "catest-jwt", Signer: NewKey(tb), NotAfter: now.Add(o.intermediateTTL)}
	c.SetJWTKey(jwtKey)

	return &CA{
		TrustDomain:     td,
		Root:            root,
		RootKey:         rootKey,
		Intermediate:    inter,
		IntermediateKey: interKey,
		JWTKey:          jwtKey,
		CA:              c,
		Clock:           o.clock,
	}
}

// X509Bundle returns the trust bundle: the root.
func (c *CA) X509Bundle() *x509bundle.Bundle {
	return x509bundle.FromX509Authorities(c.TrustDomain, []*x509.Certificate{c.Root})
}

// CreateX509SVID signs an SVID for id with a fresh P-256 key and returns
// it in go-spiffe's form, ready for a Workload API or TLS test.
func (c *CA) CreateX509SVID(tb testing.TB, id spiffeid.ID) *x509svid.SVID {
	tb.Helper()
	key := NewKey(tb)
	svid, err := c.CA.SignX509SVID(context.Background(), ca.X509SVIDParams{SPIFFEID: id, PublicKey: key.Public()})
	if err != nil {
		tb.Fatalf("catest: signing SVID for %s: %v", id, err)
	}
	return &x509svid.SVID{ID: id, Certificates: svid.Chain, PrivateKey: key}
}

// NewKey returns a fresh P-256 key.
func NewKey(tb testing.TB) crypto.Signer {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatalf("catest: generating key: %v", err)
	}
	return key
}

// CreateCSR returns the DER of a CSR for a fresh P-256 key, and the key.
func CreateCSR(tb testing.TB) ([]byte, crypto.Signer) {
	tb.Helper()
	key := NewKey(tb)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		tb.Fatalf("catest: creating CSR: %v", err)
	}
	return der, key
}
