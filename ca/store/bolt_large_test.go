package store_test

import (
	"testing"

	"github.com/signet-mesh/signet/ca/store"
	"github.com/signet-mesh/signet/ca/store/storetest"
)

// TestBoltLarge runs the large transactions of storetest on bbolt, which
// has no request limits: the cases hold every backend to the same
// all-or-nothing result.
func TestBoltLarge(t *testing.T) {
	storetest.RunLarge(t, func(t *testing.T) store.Store {
		return openBoltWith(t, store.Options{NoSync: true})
	})
}
