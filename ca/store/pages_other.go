//go:build !linux

package store

import "go.etcd.io/bbolt"

// releasePages is a no-op where madvise is not used.
func releasePages(*bbolt.Tx) {}
