package rotation

import (
	"errors"
	"fmt"
)

var (
	// ErrInvalidConfig: New was given an incomplete or contradictory
	// Config.
	ErrInvalidConfig = errors.New("rotation: invalid config")
	// ErrNotInitialized: Run or ServerTLSCertificate was called before
	// Init succeeded.
	ErrNotInitialized = errors.New("rotation: not initialized")
	// ErrInvalidImport: an imported CA certificate, chain or key is
	// unusable (not a CA, key mismatch, expired, does not chain).
	ErrInvalidImport = errors.New("rotation: invalid import")
)

// wrapErr prefixes an error with the package name, as every error this
// package returns is.
func wrapErr(format string, args ...any) error {
	return fmt.Errorf("rotation: "+format, args...)
}
