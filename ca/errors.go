package ca

import (
	"errors"
	"fmt"
)

var (
	// ErrNoAuthority: SignX509SVID was called before SetX509Authority.
	ErrNoAuthority = errors.New("ca: no X.509 authority")
	// ErrNoJWTKey: SignJWTSVID was called before SetJWTKey.
	ErrNoJWTKey = errors.New("ca: no JWT key")
	// ErrAuthorityExpired: the signing authority has expired (or expires
	// now), so nothing it signs would be valid.
	ErrAuthorityExpired = errors.New("ca: signing authority expired")
	// ErrForeignTrustDomain: the SPIFFE ID is not in the CA's trust domain.
	ErrForeignTrustDomain = errors.New("ca: SPIFFE ID not in the CA's trust domain")
	// ErrInvalidParams: the request is malformed (no ID, no public key,
	// negative TTL, empty DNS name, no audience...).
	ErrInvalidParams = errors.New("ca: invalid parameters")
	// ErrInvalidCSR: the CSR is too large, does not parse, has a bad
	// signature or an unsupported key.
	ErrInvalidCSR = errors.New("ca: invalid CSR")
	// ErrCheckFailed: a certificate the CA just minted failed the checks
	// made before returning it. It means a misconfigured authority (for
	// example an intermediate that does not chain to the roots) or a bug,
	// never a bad request.
	ErrCheckFailed = errors.New("ca: minted certificate failed its check")
)

// wrapErr prefixes an error with the package name, as every error this
// package returns is.
func wrapErr(format string, args ...any) error {
	return fmt.Errorf("ca: "+format, args...)
}
