//go:build race

package rotation_test

// raceEnabled: the race detector slows every store write about tenfold.
const raceEnabled = true
