package cache

import (
	"errors"
	"fmt"
)

var (
	// ErrUnknownEntry means SetSVID named an entry the cache does not hold,
	// typically one deleted while its SVID was being minted. Drop the SVID.
	ErrUnknownEntry = errors.New("unknown entry")
	// ErrInvalidSVID means SetSVID got a nil SVID, or one without
	// certificates or private key.
	ErrInvalidSVID = errors.New("invalid SVID")
	// ErrSVIDMismatch means the SVID's SPIFFE ID or DNS names are not the
	// entry's: the entry changed while the SVID was being minted. The
	// entry was returned as changed by ApplyEntries, so a fresh mint is
	// already due.
	ErrSVIDMismatch = errors.New("SVID does not match entry")
	// ErrTrustDomainMismatch means a bundle was given for the wrong trust
	// domain: SetBundle takes the agent's own, SetFederatedBundles only
	// others.
	ErrTrustDomainMismatch = errors.New("wrong trust domain")
	// ErrNoBundle means SetBundle got a nil X.509 bundle.
	ErrNoBundle = errors.New("no X.509 bundle")
)

// wrapErr prefixes every error the package returns.
func wrapErr(err error) error {
	return fmt.Errorf("cache: %w", err)
}
