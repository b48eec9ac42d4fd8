package ca

import (
	"crypto"
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // RFC 5280 section 4.2.1.2 method 1 key identifiers are SHA-1 by definition; not a security use.
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net/url"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-mesh/signet/internal/keyder"
	"github.com/signet-mesh/signet/internal/nodeapi"
)

const (
	// Backdate is how far NotBefore is set before the signing time, so a
	// peer whose clock is a few seconds behind the CA's does not reject a
	// certificate that was just issued.
	Backdate = 10 * time.Second

	// serialBytes is the size of a serial number: 128 bits from
	// crypto/rand, well above the 64 bits of CSPRNG output the CA/Browser
	// Forum requires, so serials are unique and unpredictable without
	// coordination between CA servers.
	serialBytes = 16

	// rootMaxPathLen lets a root sign intermediates that sign SVIDs, and
	// nothing deeper: signet's hierarchy is root -> intermediate -> leaf.
	rootMaxPathLen = 1
)

// spiffeSubjectOrg is the Organization of every certificate signet issues.
// The SPIFFE standard puts no meaning in the subject; SPIRE uses the same.
const spiffeSubjectOrg = "SPIFFE"

// NewSerial returns a random positive 128-bit serial number. All 16 bytes
// are random: when the top bit is set the DER encoding gains a leading
// zero byte (17 bytes, within RFC 5280's 20) rather than losing a bit of
// entropy.
func NewSerial() (*big.Int, error) {
	var b [serialBytes]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			return nil, wrapErr("generating serial: %w", err)
		}
		if n := new(big.Int).SetBytes(b[:]); n.Sign() > 0 {
			return n, nil
		}
	}
}

// FormatSerial renders a serial as the 32 lower-case hex digits that the
// SVID index and the CLI use.
func FormatSerial(n *big.Int) string { return nodeapi.FormatSerial(n) }

// SubjectKeyID computes a key identifier as RFC 5280 section 4.2.1.2
// method 1: the SHA-1 of the subjectPublicKey BIT STRING. Every signet
// certificate carries one, and each child's AuthorityKeyId is its issuer's.
func SubjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	bits, err := keyder.PublicKeyBits(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: public key: %v", ErrInvalidParams, err)
	}
	sum := sha1.Sum(bits) //nolint:gosec // see import
	return sum[:], nil
}

// NewRootTemplate returns the template of a self-signed SPIFFE root for td,
// valid from now-Backdate for ttl. Sign it with CreateCertificate(tmpl,
// tmpl, pub, key).
func NewRootTemplate(td spiffeid.TrustDomain, pub crypto.PublicKey, now time.Time, ttl time.Duration) (*x509.Certificate, error) {
	if ttl <= 0 {
		return nil, fmt.Errorf("%w: root ttl %v", ErrInvalidParams, ttl)
	}
	t, err := caTemplate(td, pub, "signet root CA", now, now.Add(ttl))
	if err != nil {
		return nil, err
	}
	t.MaxPathLen = rootMaxPathLen
	return t, nil
}

// NewIntermediateTemplate returns the template of an intermediate CA for
// td, to be signed by parent: valid from now-Backdate for ttl, capped at
// parent's NotAfter since a certificate cannot outlive its issuer's. It
// may only sign leaves (MaxPathLen 0). It fails with ErrAuthorityExpired
// when parent has expired.
func NewIntermediateTemplate(td spiffeid.TrustDomain, pub crypto.PublicKey, now time.Time, ttl time.Duration, parent *x509.Certificate) (*x509.Certificate, error) {
	if ttl <= 0 {
		return nil, fmt.Errorf("%w: intermediate ttl %v", ErrInvalidParams, ttl)
	}
	notAfter := now.Add(ttl)
	if parent.NotAfter.Before(notAfter) {
		notAfter = parent.NotAfter
	}
	if !notAfter.After(now) {
		return nil, fmt.Errorf("%w: parent expired at %v", ErrAuthorityExpired, parent.NotAfter)
	}
	t, err := caTemplate(td, pub, "signet intermediate CA", now, notAfter)
	if err != nil {
		return nil, err
	}
	t.MaxPathLen = 0
	t.MaxPathLenZero = true
	return t, nil
}

// caTemplate is what roots and intermediates share: CA:true, the key
// usages a SPIFFE signing certificate needs, the trust domain as its one
// URI SAN, and a subject made unique by the serial so that two
// generations of a CA never share a name.
func caTemplate(td spiffeid.TrustDomain, pub crypto.PublicKey, cn string, now, notAfter time.Time) (*x509.Certificate, error) {
	if td.IsZero() {
		return nil, fmt.Errorf("%w: empty trust domain", ErrInvalidParams)
	}
	serial, err := NewSerial()
	if err != nil {
		return nil, err
	}
	ski, err := SubjectKeyID(pub)
	if err != nil {
		return nil, err
	}
	return &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			Organization: []string{spiffeSubjectOrg},
			CommonName:   cn,
			SerialNumber: FormatSerial(serial),
		},
		URIs:                  []*url.URL{td.ID().URL()},
		NotBefore:             now.Add(-Backdate),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		SubjectKeyId:          ski,
	}, nil
}

// NewCrossSignedTemplate returns a template that re-issues the CA
// certificate cert under another parent (cross-signing): the same subject,
// key identifier, URI, key usages and path constraints, so that it can
// stand in as the issuer of everything cert signed, with a new serial and
// the validity capped by the parent's. Sign it for cert's public key.
func NewCrossSignedTemplate(cert, parent *x509.Certificate) (*x509.Certificate, error) {
	if !cert.IsCA {
		return nil, fmt.Errorf("%w: cross-signing a certificate that is not a CA", ErrInvalidParams)
	}
	notAfter := cert.NotAfter
	if parent.NotAfter.Before(notAfter) {
		notAfter = parent.NotAfter
	}
	if !notAfter.After(cert.NotBefore) {
		return nil, fmt.Errorf("%w: parent expired at %v", ErrAuthorityExpired, parent.NotAfter)
	}
	serial, err := NewSerial()
	if err != nil {
		return nil, err
	}
	return &x509.Certificate{
		SerialNumber:          serial,
		RawSubject:            cert.RawSubject,
		URIs:                  cert.URIs,
		NotBefore:             cert.NotBefore,
		NotAfter:              notAfter,
		KeyUsage:              cert.KeyUsage,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            cert.MaxPathLen,
		MaxPathLenZero:        cert.MaxPathLenZero,
		SubjectKeyId:          cert.SubjectKeyId,
	}, nil
}

// CreateCertificate signs tmpl for pub with parent's key and returns the
// parsed certificate. For a self-signed root, parent is tmpl.
func CreateCertificate(tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		return nil, wrapErr("signing certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, wrapErr("parsing signed certificate: %w", err)
	}
	return cert, nil
}
