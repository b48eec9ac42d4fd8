package ca

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
)

const (
	// MaxCSRBytes bounds the DER a CSR may have. A CSR for the largest key
	// signet accepts (RSA-8192) with a few attributes is under 2 KiB; 8
	// KiB leaves room for extensions signet ignores, while keeping an
	// attacker from making the CA parse megabytes per request.
	MaxCSRBytes = 8 << 10

	// minRSABits is the smallest RSA key accepted: 2048 bits, NIST's floor
	// through 2030.
	minRSABits = 2048
	// maxRSABits caps RSA keys so a request cannot make the CA spend
	// seconds verifying one signature.
	maxRSABits = 8192
)

// ParseCSR parses a PKCS #10 certificate request and checks what matters
// for issuance: its size, its key type (ECDSA P-256 or P-384, RSA of 2048
// to 8192 bits, or Ed25519) and its self-signature, which proves the
// requester holds the private key.
//
// Everything else in the CSR (subject, SANs, extensions) is ignored: the
// SVID's contents come from the registration entry, never from the
// requester. Callers use only the returned request's PublicKey. Errors
// wrap ErrInvalidCSR.
func ParseCSR(der []byte) (*x509.CertificateRequest, error) {
	if len(der) > MaxCSRBytes {
		return nil, fmt.Errorf("%w: %d bytes exceeds the %d-byte limit", ErrInvalidCSR, len(der), MaxCSRBytes)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidCSR, err)
	}
	if err := checkCSRKey(csr.PublicKey); err != nil {
		return nil, err
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: signature: %v", ErrInvalidCSR, err)
	}
	return csr, nil
}

func checkCSRKey(pub any) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return fmt.Errorf("%w: unsupported curve %s", ErrInvalidCSR, k.Curve.Params().Name)
		}
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < minRSABits || n > maxRSABits {
			return fmt.Errorf("%w: RSA key of %d bits (want %d to %d)", ErrInvalidCSR, n, minRSABits, maxRSABits)
		}
	case ed25519.PublicKey:
	default:
		return fmt.Errorf("%w: unsupported key type %T", ErrInvalidCSR, pub)
	}
	return nil
}
