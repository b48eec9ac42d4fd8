package backoff

import (
	crand "crypto/rand"
	"encoding/binary"
	"math/rand/v2"
	"sync"
)

// Rand returns uniformly random numbers in [0, 1). It is signet's one
// source of randomness for jitter (retry delays here, renewal times in
// agent/rotate): components take it in their Config so that tests, which
// pass NewRand with a fixed seed, are deterministic. A Rand must be safe
// for concurrent use. It is not for secrets: keys and serials come from
// crypto/rand.
type Rand func() float64

// NewRand returns a Rand that yields the same sequence for the same seed.
// It is safe for concurrent use.
func NewRand(seed uint64) Rand {
	var mu sync.Mutex
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	return func() float64 {
		mu.Lock()
		defer mu.Unlock()
		return r.Float64()
	}
}

// SystemRand returns a Rand seeded from the operating system's randomness:
// the default when a Config leaves Rand nil. Agents started together so
// draw different jitter.
func SystemRand() Rand {
	var seed [8]byte
	_, _ = crand.Read(seed[:]) // crypto/rand.Read never fails (Go 1.24+)
	return NewRand(binary.LittleEndian.Uint64(seed[:]))
}

// OrSystem returns r, or SystemRand when r is nil: constructors use it to
// default their Config's Rand.
func OrSystem(r Rand) Rand {
	if r == nil {
		return SystemRand()
	}
	return r
}
