package rotation

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"strconv"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-mesh/signet/ca/store"
)

// Bundle is the trust domain's trust bundle: what agents and workloads
// trust.
type Bundle struct {
	TrustDomain spiffeid.TrustDomain
	// X509Authorities are the trust anchors: every root that is prepared,
	// active or retiring (for an imported intermediate, the organisation
	// roots above it).
	X509Authorities []*x509.Certificate
	// JWTAuthorities are the JWT keys that are not retired.
	JWTAuthorities []JWTAuthority
	// Revision is the bundle revision (see BundleRevisionKey); 0 before
	// the first Init.
	Revision int64
}

// JWTAuthority is a JWT signing key's public half.
type JWTAuthority struct {
	ID        string
	PublicKey crypto.PublicKey
	NotAfter  time.Time
}

// Bundle reads the current bundle from the store.
func (m *Manager) Bundle(ctx context.Context) (*Bundle, error) {
	var b *Bundle
	err := m.cfg.Store.View(ctx, func(tx store.Tx) error {
		var err error
		b, err = BundleFromTx(tx, m.cfg.TrustDomain)
		return err
	})
	if err != nil {
		return nil, wrapErr("reading bundle: %w", err)
	}
	return b, nil
}

// BundleFromTx reads the bundle inside a transaction, so callers can
// return it consistently with other state (an agent's entries and the
// bundle of the same revision).
func BundleFromTx(tx store.Tx, td spiffeid.TrustDomain) (*Bundle, error) {
	auths, err := tx.ListAuthorities()
	if err != nil {
		return nil, wrapErr("listing authorities: %w", err)
	}
	b := &Bundle{TrustDomain: td}
	for _, a := range auths {
		switch {
		case a.Kind == store.KindRoot && a.State != store.StateRetired:
			rc, err := parseRoot(a)
			if err != nil {
				return nil, err
			}
			for _, anchor := range rc.anchors {
				if !containsCert(b.X509Authorities, anchor) {
					b.X509Authorities = append(b.X509Authorities, anchor)
				}
			}
		case a.Kind == store.KindJWT && a.State != store.StateRetired:
			pub, err := x509.ParsePKIXPublicKey(a.CertDER)
			if err != nil {
				return nil, wrapErr("jwt key %s: %w", a.ID, err)
			}
			b.JWTAuthorities = append(b.JWTAuthorities, JWTAuthority{ID: a.ID, PublicKey: pub, NotAfter: a.NotAfter})
		}
	}
	v, err := tx.GetMeta(BundleRevisionKey)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return nil, wrapErr("reading bundle revision: %w", err)
	default:
		if b.Revision, err = strconv.ParseInt(string(v), 10, 64); err != nil {
			return nil, wrapErr("bundle revision %q: %w", v, err)
		}
	}
	return b, nil
}

func containsCert(certs []*x509.Certificate, c *x509.Certificate) bool {
	for _, x := range certs {
		if bytes.Equal(x.Raw, c.Raw) {
			return true
		}
	}
	return false
}

// X509Bundle returns the X.509 half of the bundle in go-spiffe's form.
func (b *Bundle) X509Bundle() *x509bundle.Bundle {
	return x509bundle.FromX509Authorities(b.TrustDomain, b.X509Authorities)
}

// SPIFFEBundle returns the bundle in go-spiffe's SPIFFE bundle form, whose
// Marshal is the SPIFFE bundle format (a JWKS) that `signet bundle show
// --format spiffe` prints. Its sequence number is the revision.
func (b *Bundle) SPIFFEBundle() *spiffebundle.Bundle {
	sb := spiffebundle.FromX509Authorities(b.TrustDomain, b.X509Authorities)
	for _, k := range b.JWTAuthorities {
		// IDs are never empty, the only error AddJWTAuthority returns.
		_ = sb.AddJWTAuthority(k.ID, k.PublicKey)
	}
	sb.SetSequenceNumber(uint64(b.Revision))
	return sb
}

// rootChain is a root authority's certificates, split by role.
type rootChain struct {
	// cert is the authority's own certificate.
	cert *x509.Certificate
	// upstream is what an intermediate under this root sends above
	// itself: nothing for a self-signed root; for an imported
	// intermediate, that certificate and any non-anchor above it.
	upstream []*x509.Certificate
	// anchors are the trust anchors: the root itself, or the self-signed
	// certificates of an imported intermediate's chain.
	anchors []*x509.Certificate
}

func parseRoot(a *store.Authority) (*rootChain, error) {
	cert, err := x509.ParseCertificate(a.CertDER)
	if err != nil {
		return nil, wrapErr("root %s: %w", a.ID, err)
	}
	if len(a.UpstreamChainDER) == 0 {
		return &rootChain{cert: cert, anchors: []*x509.Certificate{cert}}, nil
	}
	rc := &rootChain{cert: cert, upstream: []*x509.Certificate{cert}}
	for _, der := range a.UpstreamChainDER {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, wrapErr("upstream chain of root %s: %w", a.ID, err)
		}
		if isSelfSigned(c) {
			rc.anchors = append(rc.anchors, c)
		} else {
			rc.upstream = append(rc.upstream, c)
		}
	}
	return rc, nil
}

// isSelfSigned reports whether c is a self-signed CA: a trust anchor.
func isSelfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawSubject, c.RawIssuer) && c.CheckSignatureFrom(c) == nil
}
