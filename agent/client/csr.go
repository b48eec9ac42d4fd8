package client

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
)

// oidECDSAWithSHA256 is ecdsa-with-SHA256 (RFC 5758 section 3.2).
var oidECDSAWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}

// DER of an empty Name and of an empty [0] attribute set, as
// x509.CreateCertificateRequest writes them for an empty template.
var (
	emptyName       = []byte{0x30, 0x00}
	emptyAttributes = []byte{0xa0, 0x00}
)

type certificationRequestInfo struct {
	Version    int
	Subject    asn1.RawValue
	PublicKey  asn1.RawValue
	Attributes asn1.RawValue
}

type certificationRequest struct {
	Info      asn1.RawValue
	Algorithm pkix.AlgorithmIdentifier
	Signature asn1.BitString
}

// newCSR returns a PKCS #10 request that carries only key's public key
// (the CA takes everything else from the registration entry), the same
// request x509.CreateCertificateRequest makes from an empty template.
//
// For the agent's own P-256 keys it signs directly instead:
// CreateCertificateRequest also verifies the signature it just made
// (against a signer that may be faulty, an HSM), which for a key made in
// this process costs twice the signature itself, on every SVID. The CA
// verifies every CSR anyway.
func newCSR(key crypto.Signer) ([]byte, error) {
	k, ok := key.(*ecdsa.PrivateKey)
	if !ok || k.Curve != elliptic.P256() {
		return x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	}
	spki, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		return nil, err
	}
	tbs, err := asn1.Marshal(certificationRequestInfo{
		Subject:    asn1.RawValue{FullBytes: emptyName},
		PublicKey:  asn1.RawValue{FullBytes: spki},
		Attributes: asn1.RawValue{FullBytes: emptyAttributes},
	})
	if err != nil {
		return nil, err
	}
	digest := sha256.Sum256(tbs)
	sig, err := ecdsa.SignASN1(rand.Reader, k, digest[:])
	if err != nil {
		return nil, err
	}
	return asn1.Marshal(certificationRequest{
		Info:      asn1.RawValue{FullBytes: tbs},
		Algorithm: pkix.AlgorithmIdentifier{Algorithm: oidECDSAWithSHA256},
		Signature: asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)},
	})
}
