// Package keyder encodes keys in DER exactly as crypto/x509 does, byte
// for byte, without encoding/asn1's reflection for P-256 keys.
//
// P-256 is the only kind of key signet makes for SVIDs, and each SVID's
// key is encoded several times: on the agent in its CSR and its cache, on
// the CA in the key identifier and the audit record. Through
// encoding/asn1 that was nearly a tenth of an agent's CPU in a fleet-wide
// re-mint (root activate --rotate-now). A P-256 encoding has a fixed
// layout, so it is a constant prefix and the key's bytes. Other keys go
// through crypto/x509.
package keyder

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
)

// P-256 DER layouts (RFC 5480, RFC 5208, RFC 5915), as crypto/x509 writes
// them. The lengths inside are fixed: a P-256 point is 65 bytes
// uncompressed, a scalar 32.
var (
	// spkiP256Prefix is a SubjectPublicKeyInfo up to its point:
	// SEQUENCE(89) { SEQUENCE(19) { id-ecPublicKey, prime256v1 },
	// BIT STRING(66) { no unused bits, point } }.
	spkiP256Prefix = []byte{
		0x30, 0x59,
		0x30, 0x13,
		0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
		0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
		0x03, 0x42, 0x00,
	}
	// pkcs8P256Prefix is a PrivateKeyInfo up to its scalar:
	// SEQUENCE(135) { INTEGER 0, SEQUENCE(19) { id-ecPublicKey,
	// prime256v1 }, OCTET STRING(109) { ECPrivateKey: SEQUENCE(107) {
	// INTEGER 1, OCTET STRING(32) scalar, ...
	pkcs8P256Prefix = []byte{
		0x30, 0x81, 0x87,
		0x02, 0x01, 0x00,
		0x30, 0x13,
		0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
		0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
		0x04, 0x6d,
		0x30, 0x6b,
		0x02, 0x01, 0x01,
		0x04, 0x20,
	}
	// pkcs8P256Middle follows the scalar: ... [1](68) { BIT STRING(66)
	// { no unused bits, point } } } } (the curve is in the algorithm, so
	// the ECPrivateKey leaves out its optional [0] parameters).
	pkcs8P256Middle = []byte{0xa1, 0x44, 0x03, 0x42, 0x00}
)

// Sizes of P-256 encodings.
const (
	p256PointLen  = 65
	p256ScalarLen = 32
	spkiP256Len   = 91
	pkcs8P256Len  = 138
)

// MarshalPKIXPublicKey is x509.MarshalPKIXPublicKey.
func MarshalPKIXPublicKey(pub crypto.PublicKey) ([]byte, error) {
	if k, ok := pub.(*ecdsa.PublicKey); ok && k.Curve == elliptic.P256() {
		point, err := k.Bytes()
		if err != nil {
			return nil, err
		}
		return append(append(make([]byte, 0, spkiP256Len), spkiP256Prefix...), point...), nil
	}
	return x509.MarshalPKIXPublicKey(pub)
}

// PublicKeyBits returns the subjectPublicKey of pub's
// SubjectPublicKeyInfo: the BIT STRING's bytes, which RFC 5280's key
// identifier (method 1) hashes. For P-256 that is the uncompressed point.
func PublicKeyBits(pub crypto.PublicKey) ([]byte, error) {
	if k, ok := pub.(*ecdsa.PublicKey); ok && k.Curve == elliptic.P256() {
		return k.Bytes()
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	var spki struct {
		Algorithm        pkix.AlgorithmIdentifier
		SubjectPublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil, fmt.Errorf("parsing public key: %w", err)
	}
	return spki.SubjectPublicKey.Bytes, nil
}

// MarshalPKCS8PrivateKey is x509.MarshalPKCS8PrivateKey.
func MarshalPKCS8PrivateKey(key any) ([]byte, error) {
	if k, ok := key.(*ecdsa.PrivateKey); ok && k.Curve == elliptic.P256() {
		scalar, err := k.Bytes()
		if err != nil {
			return nil, err
		}
		point, err := k.PublicKey.Bytes()
		if err != nil {
			return nil, err
		}
		if len(scalar) != p256ScalarLen || len(point) != p256PointLen {
			return x509.MarshalPKCS8PrivateKey(key)
		}
		out := make([]byte, 0, pkcs8P256Len)
		out = append(out, pkcs8P256Prefix...)
		out = append(out, scalar...)
		out = append(out, pkcs8P256Middle...)
		return append(out, point...), nil
	}
	return x509.MarshalPKCS8PrivateKey(key)
}
