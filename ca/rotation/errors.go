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
	// ErrAuthorityNotFound: a root rotation step named an authority that
	// does not exist or is not a root.
	ErrAuthorityNotFound = errors.New("rotation: authority not found")
	// ErrRefused: a root rotation step is not possible in the current
	// state (no candidate, several candidates, wrong state). The error's
	// text says why and what to do.
	ErrRefused = errors.New("rotation: refused")
	// ErrConflict: a step found the authorities changed under it at every
	// one of its attempts (another server sharing the store, or a burst
	// of operator steps). Nothing was changed; try again.
	ErrConflict = errors.New("rotation: conflict")
	// ErrUnsafe: a root rotation step would break traffic (agents have
	// not applied the bundle; current SVIDs still chain to the root).
	// The error's text says why; Force overrides it.
	ErrUnsafe = errors.New("rotation: unsafe")
)

// refusal is an error of one of the root rotation sentinels whose text is
// only msg: the operator reads it as is, and errors.Is still matches kind.
type refusal struct {
	kind error
	msg  string
}

func (e *refusal) Error() string { return e.msg }
func (e *refusal) Unwrap() error { return e.kind }

func refuse(kind error, format string, args ...any) error {
	return &refusal{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// wrapErr prefixes an error with the package name, as every error this
// package returns is.
func wrapErr(format string, args ...any) error {
	return fmt.Errorf("rotation: "+format, args...)
}
