package client

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"fmt"

	"github.com/signet-mesh/signet/internal/keyder"
)

// DER pieces of a P-256 CSR (RFC 2986) as x509.CreateCertificateRequest
// writes it for an empty template. Their lengths are fixed: the signed
// part is 100 bytes whatever the key.
var (
	// csrInfoPrefix opens the CertificationRequestInfo: SEQUENCE(98) {
	// INTEGER 0 (version), empty Name (subject), ... then comes the
	// key's SubjectPublicKeyInfo (91 bytes).
	csrInfoPrefix = []byte{0x30, 0x62, 0x02, 0x01, 0x00, 0x30, 0x00}
	// csrInfoSuffix closes it: an empty [0] attribute set.
	csrInfoSuffix = []byte{0xa0, 0x00}
	// csrSigAlgECDSAWithSHA256 is the AlgorithmIdentifier of
	// ecdsa-with-SHA256 (RFC 5758 section 3.2), without parameters.
	csrSigAlgECDSAWithSHA256 = []byte{0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02}
)

// newCSR returns a PKCS #10 request that carries only key's public key
// (the CA takes everything else from the registration entry), the same
// request x509.CreateCertificateRequest makes from an empty template.
//
// For the agent's own P-256 keys it builds the request directly:
// CreateCertificateRequest also verifies the signature it just made
// (against a signer that may be faulty, an HSM), which for a key made in
// this process costs twice the signature itself, on every SVID, and it
// encodes through encoding/asn1's reflection what is a fixed layout
// around the key and the signature. The CA verifies every CSR anyway.
func newCSR(key crypto.Signer) ([]byte, error) {
	k, ok := key.(*ecdsa.PrivateKey)
	if !ok || k.Curve != elliptic.P256() {
		return x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	}
	spki, err := keyder.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		return nil, err
	}
	const maxSigLen = 72 // an ASN.1 ECDSA P-256 signature
	tbsLen := len(csrInfoPrefix) + len(spki) + len(csrInfoSuffix)
	out := make([]byte, 0, 4+tbsLen+len(csrSigAlgECDSAWithSHA256)+3+maxSigLen)
	out = append(out, 0x30, 0x81, 0) // the length is filled in below
	out = append(out, csrInfoPrefix...)
	out = append(out, spki...)
	out = append(out, csrInfoSuffix...)
	digest := sha256.Sum256(out[3:])
	sig, err := ecdsa.SignASN1(rand.Reader, k, digest[:])
	if err != nil {
		return nil, err
	}
	out = append(out, csrSigAlgECDSAWithSHA256...)
	out = append(out, 0x03, byte(1+len(sig)), 0x00) // BIT STRING, no unused bits
	out = append(out, sig...)
	// With any P-256 signature the whole is 128 to 255 bytes long: one
	// length byte after 0x81.
	n := len(out) - 3
	if n < 128 || n > 255 {
		return nil, fmt.Errorf("client: CSR content of %d bytes with a %d-byte signature", n, len(sig))
	}
	out[2] = byte(n)
	return out, nil
}
