package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net/url"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// DefaultX509SVIDTTL is the lifetime of an X509-SVID whose params leave TTL
// zero.
const DefaultX509SVIDTTL = time.Hour

// X509SVIDParams describes the X509-SVID to sign.
type X509SVIDParams struct {
	// SPIFFEID is the SVID's only URI SAN. It must be in the CA's trust
	// domain.
	SPIFFEID spiffeid.ID
	// PublicKey is the workload's key, usually a CSR's (see ParseCSR).
	PublicKey crypto.PublicKey
	// TTL is the requested lifetime; zero means DefaultX509SVIDTTL. The
	// SVID never outlives the intermediate that signs it.
	TTL time.Duration
	// DNSNames are optional DNS SANs.
	DNSNames []string
	// NodeIncarnation, for node SVIDs only, names the attestation the
	// SVID belongs to. It is carried as the subject's serialNumber
	// attribute (the X.500 attribute that tells apart entities of one
	// name), so that the CA can tell an SVID of an earlier attestation
	// of the same node (NodeIncarnation of the certificate) without a
	// lookup. Empty adds nothing.
	NodeIncarnation string
}

// NodeIncarnation returns the incarnation a node SVID carries (see
// X509SVIDParams.NodeIncarnation), empty if none.
func NodeIncarnation(leaf *x509.Certificate) string { return leaf.Subject.SerialNumber }

// X509SVID is a signed X509-SVID.
type X509SVID struct {
	// Chain is the leaf, then the intermediate and the upstream chain, but
	// not the trust anchor: what a TLS peer sends.
	Chain []*x509.Certificate
	// AuthorityID names the authority that signed it.
	AuthorityID string
}

// SignX509SVID signs an X509-SVID as the SPIFFE X509-SVID standard
// describes (one URI SAN, CA:false, digitalSignature, serverAuth and
// clientAuth, SKI/AKI, a random 128-bit serial), valid from now-Backdate
// until now+TTL or the intermediate's expiry, whichever is first.
//
// The certificate is checked before it is returned (see checkX509SVID):
// nothing leaves the CA that a SPIFFE peer would reject. It fails with
// ErrNoAuthority before SetX509Authority, ErrForeignTrustDomain,
// ErrInvalidParams, ErrAuthorityExpired or ErrCheckFailed. ctx is not
// used: signing is in-process and bounded.
func (c *CA) SignX509SVID(_ context.Context, p X509SVIDParams) (*X509SVID, error) {
	s := c.x509.Load()
	if s == nil {
		return nil, ErrNoAuthority
	}
	if err := c.checkID(p.SPIFFEID); err != nil {
		return nil, err
	}
	if p.PublicKey == nil {
		return nil, fmt.Errorf("%w: no public key", ErrInvalidParams)
	}
	ttl := p.TTL
	switch {
	case ttl == 0:
		ttl = DefaultX509SVIDTTL
	case ttl < 0:
		return nil, fmt.Errorf("%w: negative ttl %v", ErrInvalidParams, ttl)
	}
	if slices.Contains(p.DNSNames, "") {
		return nil, fmt.Errorf("%w: empty DNS name", ErrInvalidParams)
	}

	issuer := s.auth.Certificate
	now := c.clock.Now()
	notAfter := now.Add(ttl)
	if issuer.NotAfter.Before(notAfter) {
		notAfter = issuer.NotAfter
	}
	if !notAfter.After(now) {
		return nil, fmt.Errorf("%w: authority %s expired at %v", ErrAuthorityExpired, s.auth.ID, issuer.NotAfter)
	}
	serial, err := NewSerial()
	if err != nil {
		return nil, err
	}
	ski, err := SubjectKeyID(p.PublicKey)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{spiffeSubjectOrg}, SerialNumber: p.NodeIncarnation},
		URIs:                  []*url.URL{p.SPIFFEID.URL()},
		DNSNames:              p.DNSNames,
		NotBefore:             now.Add(-Backdate),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  false,
		SubjectKeyId:          ski,
		AuthorityKeyId:        issuer.SubjectKeyId,
	}
	leaf, err := CreateCertificate(tmpl, issuer, p.PublicKey, s.auth.Signer)
	if err != nil {
		return nil, err
	}
	if err := checkX509SVID(s, leaf, p, now); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCheckFailed, err)
	}
	chain := make([]*x509.Certificate, 0, 1+len(s.chain))
	chain = append(chain, leaf)
	chain = append(chain, s.chain...)
	return &X509SVID{Chain: chain, AuthorityID: s.auth.ID}, nil
}

// checkID accepts a non-zero SPIFFE ID in the CA's trust domain.
func (c *CA) checkID(id spiffeid.ID) error {
	if id.IsZero() {
		return fmt.Errorf("%w: empty SPIFFE ID", ErrInvalidParams)
	}
	if !id.MemberOf(c.td) {
		return fmt.Errorf("%w: %s is not in %s", ErrForeignTrustDomain, id, c.td)
	}
	return nil
}

// checkX509SVID verifies a freshly signed leaf the way a relying party
// would, plus the properties the request asked for, as SPIRE's
// SignWorkloadX509SVID does: a bad template, a wrong key or an authority
// that does not chain to the roots is caught here instead of in every
// workload's TLS handshake.
func checkX509SVID(s *x509State, leaf *x509.Certificate, p X509SVIDParams, now time.Time) error {
	// The chain verifies: the authority chains to the roots (checked once
	// per authority), and the leaf is signed by the authority and valid
	// within its lifetime.
	if err := s.verifyIssuer(now); err != nil {
		return err
	}
	// The leaf's signature is not verified again here: x509.CreateCertificate
	// (crypto/x509 signTBS, Go 1.26) refuses a signer whose key is not the
	// issuer's and verifies the signature it made over the TBS, which is
	// the leaf's RawTBSCertificate; a third verification (after the CSR's)
	// was a quarter of a mint's CPU. What CheckSignatureFrom checks besides
	// the signature, the issuer may sign certificates, is checked here.
	issuer := s.auth.Certificate
	if (issuer.Version == 3 && !issuer.BasicConstraintsValid) || !issuer.IsCA || (issuer.KeyUsage != 0 && issuer.KeyUsage&x509.KeyUsageCertSign == 0) {
		return fmt.Errorf("chain does not verify: the authority may not sign certificates")
	}
	if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) || now.Before(issuer.NotBefore) || now.After(issuer.NotAfter) {
		return fmt.Errorf("chain does not verify: not valid at %v", now)
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != p.SPIFFEID.String() {
		return fmt.Errorf("URI SANs %v, want exactly [%s]", leaf.URIs, p.SPIFFEID)
	}
	if NodeIncarnation(leaf) != p.NodeIncarnation {
		return fmt.Errorf("node incarnation %q, want %q", NodeIncarnation(leaf), p.NodeIncarnation)
	}
	if !leaf.BasicConstraintsValid || leaf.IsCA {
		return fmt.Errorf("leaf is not marked CA:false")
	}
	if leaf.KeyUsage != x509.KeyUsageDigitalSignature {
		return fmt.Errorf("key usage %v, want digitalSignature only", leaf.KeyUsage)
	}
	if !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) {
		return fmt.Errorf("extended key usage %v, want serverAuth and clientAuth", leaf.ExtKeyUsage)
	}
	pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(p.PublicKey) {
		return fmt.Errorf("public key differs from the requested one")
	}
	if leaf.NotAfter.After(s.auth.Certificate.NotAfter) {
		return fmt.Errorf("not after %v is past the issuer's %v", leaf.NotAfter, s.auth.Certificate.NotAfter)
	}
	if !bytes.Equal(leaf.AuthorityKeyId, s.auth.Certificate.SubjectKeyId) {
		return fmt.Errorf("authority key id does not match the issuer's subject key id")
	}
	return nil
}
