package server

import "errors"

var (
	// errNoSnapshot means the Source had no state for the caller in time.
	errNoSnapshot = errors.New("no snapshot from the identity source yet")
)
