package bundle

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-mesh/signet/ca/store"
)

// Store meta keys of the two counters this package owns.
const (
	// RevisionKey holds the bundle revision: the decimal store revision
	// taken when the set of roots or JWT keys in the bundle last changed.
	// Agents compare it to the revision they applied.
	RevisionKey = "bundle_revision"
	// RotateGenerationKey holds the rotate generation: a decimal counter
	// that `root activate --rotate-now` increments. Agents receive it on
	// the entry-sync stream and, when it grows past the one they acted
	// on, re-mint every SVID (spread with jitter).
	RotateGenerationKey = "rotate_generation"
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
	// Revision is the bundle revision (see RevisionKey); 0 before the
	// first authorities were stored.
	Revision int64
}

// JWTAuthority is a JWT signing key's public half.
type JWTAuthority struct {
	ID        string
	PublicKey crypto.PublicKey
	NotAfter  time.Time
}

// Read reads the current bundle in a View of its own.
func Read(ctx context.Context, st store.Store, td spiffeid.TrustDomain) (*Bundle, error) {
	var b *Bundle
	err := st.View(ctx, func(tx store.Tx) error {
		var err error
		b, err = FromTx(tx, td)
		return err
	})
	if err != nil {
		return nil, err
	}
	return b, nil
}

// FromTx reads the bundle inside a transaction, so callers can return it
// consistently with other state (an agent's entries and the bundle of the
// same revision).
func FromTx(tx store.Tx, td spiffeid.TrustDomain) (*Bundle, error) {
	auths, err := tx.ListAuthorities()
	if err != nil {
		return nil, wrapErr("listing authorities: %w", err)
	}
	b, err := FromAuthorities(auths, td)
	if err != nil {
		return nil, err
	}
	if b.Revision, err = Revision(tx); err != nil {
		return nil, err
	}
	return b, nil
}

// FromAuthorities builds the bundle of a set of authorities (without its
// revision, which is stored apart).
func FromAuthorities(auths []*store.Authority, td spiffeid.TrustDomain) (*Bundle, error) {
	b := &Bundle{TrustDomain: td}
	for _, a := range auths {
		switch {
		case a.Kind == store.KindRoot && a.State != store.StateRetired:
			rc, err := ParseRoot(a)
			if err != nil {
				return nil, err
			}
			for _, anchor := range rc.Anchors {
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

// Revision reads the bundle revision; 0 before the first.
func Revision(tx store.Tx) (int64, error) { return metaInt(tx, RevisionKey) }

// BumpRevision records that the bundle changed, taking a new store
// revision (which also wakes every entry-sync stream), and returns it.
func BumpRevision(tx store.Tx) (int64, error) {
	rev, err := tx.NextRevision()
	if err != nil {
		return 0, err
	}
	if err := tx.PutMeta(RevisionKey, []byte(strconv.FormatInt(rev, 10))); err != nil {
		return 0, err
	}
	return rev, nil
}

// RotateGeneration reads the rotate generation; 0 before the first
// `activate --rotate-now`.
func RotateGeneration(tx store.Tx) (int64, error) { return metaInt(tx, RotateGenerationKey) }

// BumpRotateGeneration increments the rotate generation and returns it.
// The caller takes a store revision in the same transaction so that the
// entry-sync streams wake and send it.
func BumpRotateGeneration(tx store.Tx) (int64, error) {
	gen, err := RotateGeneration(tx)
	if err != nil {
		return 0, err
	}
	gen++
	if err := tx.PutMeta(RotateGenerationKey, []byte(strconv.FormatInt(gen, 10))); err != nil {
		return 0, err
	}
	return gen, nil
}

func metaInt(tx store.Tx, key string) (int64, error) {
	v, err := tx.GetMeta(key)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, wrapErr("reading %s: %w", key, err)
	}
	n, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil {
		return 0, wrapErr("%s %q: %w", key, v, err)
	}
	return n, nil
}

// RootChain is a root authority's certificates, split by role.
type RootChain struct {
	// Cert is the authority's own certificate.
	Cert *x509.Certificate
	// Upstream is what an intermediate under this root sends above
	// itself: nothing for a self-signed root; for an imported
	// intermediate, that certificate and any non-anchor above it.
	Upstream []*x509.Certificate
	// Anchors are the trust anchors: the root itself, or the self-signed
	// certificates of an imported intermediate's chain.
	Anchors []*x509.Certificate
}

// ParseRoot splits a root authority's certificates by role.
func ParseRoot(a *store.Authority) (*RootChain, error) {
	cert, err := x509.ParseCertificate(a.CertDER)
	if err != nil {
		return nil, wrapErr("root %s: %w", a.ID, err)
	}
	if len(a.UpstreamChainDER) == 0 {
		return &RootChain{Cert: cert, Anchors: []*x509.Certificate{cert}}, nil
	}
	rc := &RootChain{Cert: cert, Upstream: []*x509.Certificate{cert}}
	for _, der := range a.UpstreamChainDER {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, wrapErr("upstream chain of root %s: %w", a.ID, err)
		}
		if IsSelfSigned(c) {
			rc.Anchors = append(rc.Anchors, c)
		} else {
			rc.Upstream = append(rc.Upstream, c)
		}
	}
	return rc, nil
}

// IsSelfSigned reports whether c is a self-signed CA: a trust anchor.
func IsSelfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawSubject, c.RawIssuer) && c.CheckSignatureFrom(c) == nil
}

// wrapErr prefixes an error with the package name.
func wrapErr(format string, args ...any) error {
	return fmt.Errorf("bundle: "+format, args...)
}
