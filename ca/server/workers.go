package server

import "runtime"

// nodeStreamWorkers is the number of goroutines that serve node API
// calls. A call that finds them all busy gets a goroutine of its own,
// whose stack starts small and grows (copied each time) through the CSR
// and certificate parsing of a mint: measured, 4% of a mint's CPU when
// 64 agents mint at once with GOMAXPROCS workers. A worker keeps its
// grown stack from call to call. Idle workers cost a small stack each
// (the garbage collector shrinks those that stay idle), so there are
// enough for the mint and attestation calls admission lets in at once
// (ca/api.Admission, 4 x GOMAXPROCS each by default) and more besides.
// A long-lived stream (an agent's entry sync) holds its worker for as
// long as it lasts: with a fleet connected, calls beyond the streams
// fall back to goroutines of their own, as they did before.
func nodeStreamWorkers() uint32 { return uint32(32 * runtime.GOMAXPROCS(0)) }
