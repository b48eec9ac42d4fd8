package server

import "errors"

var (
	// errSourceClosed means the Source closed a subscription's channel.
	errSourceClosed = errors.New("identity source closed")
	// errNoSnapshot means the Source had no state for the caller in time.
	errNoSnapshot = errors.New("no snapshot from the identity source yet")
)
