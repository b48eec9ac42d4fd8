package cache

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"sync"
	"time"
	"unique"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/signet-mesh/signet/internal/keyder"
)

// SVID is a workload X509-SVID as the cache holds it: the certificates and
// the private key in the encodings the Workload API and SDS serve (DER and
// PKCS #8), plus the few fields the agent reads, instead of a parsed
// x509svid.SVID. An agent holding 50,000 SVIDs keeps about 800 bytes for
// each (mostly the leaf's DER) where a parsed certificate and an
// ecdsa.PrivateKey took about 3 KB (issue 16). The intermediates, the
// same for every SVID the CA signed with one intermediate, are held once.
//
// An SVID is immutable and safe for concurrent use. The byte slices its
// methods return are shared: callers must not modify them.
type SVID struct {
	id spiffeid.ID
	// notBefore and notAfter are Unix seconds: certificate times have
	// no finer precision, and time.Time takes three times the room.
	notBefore, notAfter int64
	leaf                []byte // DER
	// intermediates are the DER of the rest of the chain, concatenated,
	// interned: every SVID signed by one intermediate points at one copy.
	intermediates unique.Handle[string]
	key           []byte // PKCS #8 DER
}

// NewSVID converts an SVID the agent was just issued (its leaf first, then
// the intermediates, and its private key) into the cache's form. It fails
// when the chain is empty or the key cannot be encoded as PKCS #8.
func NewSVID(s *x509svid.SVID) (*SVID, error) {
	if s == nil || len(s.Certificates) == 0 || s.Certificates[0] == nil || s.PrivateKey == nil {
		return nil, wrapErr(ErrInvalidSVID)
	}
	key, err := keyder.MarshalPKCS8PrivateKey(s.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("%w: encoding private key: %v", wrapErr(ErrInvalidSVID), err)
	}
	var inter []byte
	for _, c := range s.Certificates[1:] {
		if c == nil {
			return nil, wrapErr(ErrInvalidSVID)
		}
		inter = append(inter, c.Raw...)
	}
	leaf := s.Certificates[0]
	return &SVID{
		id:        s.ID,
		notBefore: leaf.NotBefore.Unix(),
		notAfter:  leaf.NotAfter.Unix(),
		// A copy of exactly the leaf: Raw may be a view into a larger
		// buffer (a whole CA response) that must not stay reachable.
		leaf:          bytes.Clone(leaf.Raw),
		intermediates: unique.Make(string(inter)),
		key:           key,
	}, nil
}

// ID returns the SVID's SPIFFE ID.
func (s *SVID) ID() spiffeid.ID { return s.id }

// NotBefore returns the leaf's NotBefore.
func (s *SVID) NotBefore() time.Time { return time.Unix(s.notBefore, 0).UTC() }

// NotAfter returns the leaf's NotAfter: the SVID is not served after it.
func (s *SVID) NotAfter() time.Time { return time.Unix(s.notAfter, 0).UTC() }

// LeafDER returns the leaf certificate's DER.
func (s *SVID) LeafDER() []byte { return s.leaf }

// ChainDER returns the DER of the leaf and the intermediates, concatenated
// as the Workload API serves them (X509SVID.x509_svid), in a new slice.
func (s *SVID) ChainDER() []byte {
	inter := s.intermediates.Value()
	out := make([]byte, 0, len(s.leaf)+len(inter))
	return append(append(out, s.leaf...), inter...)
}

// PrivateKeyPKCS8 returns the private key as PKCS #8 DER, as the Workload
// API serves it (X509SVID.x509_svid_key).
func (s *SVID) PrivateKeyPKCS8() []byte { return s.key }

// Marshal returns the certificate chain, leaf first, and the private key
// (PKCS #8), PEM-encoded: the same bytes as x509svid.SVID.Marshal, which
// SDS serves.
func (s *SVID) Marshal() (certs, key []byte, err error) {
	certs = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.leaf})
	ders, err := splitDER(s.intermediates.Value())
	if err != nil {
		return nil, nil, err
	}
	for _, der := range ders {
		certs = append(certs, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	return certs, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: s.key}), nil
}

// Intermediates returns the parsed intermediates of the chain, leaf
// excluded. They are parsed once per distinct chain and shared by every
// SVID signed under it (and every caller): they must not be modified.
func (s *SVID) Intermediates() ([]*x509.Certificate, error) {
	parsedChains.Lock()
	defer parsedChains.Unlock()
	if certs, ok := parsedChains.m[s.intermediates]; ok {
		return certs, nil
	}
	ders, err := splitDER(s.intermediates.Value())
	if err != nil {
		return nil, err
	}
	certs := make([]*x509.Certificate, 0, len(ders))
	for _, der := range ders {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("cache: parsing intermediate of %s: %w", s.id, err)
		}
		certs = append(certs, c)
	}
	if parsedChains.m == nil || len(parsedChains.m) >= maxParsedChains {
		parsedChains.m = map[unique.Handle[string]][]*x509.Certificate{}
	}
	parsedChains.m[s.intermediates] = certs
	return certs, nil
}

// parsedChains memoizes Intermediates.
var parsedChains struct {
	sync.Mutex
	m map[unique.Handle[string]][]*x509.Certificate
}

// maxParsedChains bounds parsedChains; intermediates rotate weekly, so a
// handful are live at a time and a full reset is harmless.
const maxParsedChains = 16

// X509SVID parses the SVID back into go-spiffe's form, for the rare
// consumer that needs parsed certificates or a crypto.Signer. It costs a
// parse of every certificate and of the key each time.
func (s *SVID) X509SVID() (*x509svid.SVID, error) {
	ders, err := splitDER(s.intermediates.Value())
	if err != nil {
		return nil, err
	}
	chain := make([]*x509.Certificate, 0, 1+len(ders))
	for _, der := range append([][]byte{s.leaf}, ders...) {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("cache: parsing certificate of %s: %w", s.id, err)
		}
		chain = append(chain, c)
	}
	key, err := x509.ParsePKCS8PrivateKey(s.key)
	if err != nil {
		return nil, fmt.Errorf("cache: parsing private key of %s: %w", s.id, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("cache: private key of %s is a %T, not a signer", s.id, key)
	}
	return &x509svid.SVID{ID: s.id, Certificates: chain, PrivateKey: signer}, nil
}

// splitDER splits concatenated DER certificates.
func splitDER(concat string) ([][]byte, error) {
	in := []byte(concat)
	var out [][]byte
	for len(in) > 0 {
		var cert asn1.RawValue
		rest, err := asn1.Unmarshal(in, &cert)
		if err != nil || cert.Tag != asn1.TagSequence {
			return nil, errors.New("cache: malformed intermediate certificate")
		}
		out = append(out, cert.FullBytes)
		in = rest
	}
	return out, nil
}
