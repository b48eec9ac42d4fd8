package api

import (
	"runtime"
	"sync"
)

// The signers are 4 x GOMAXPROCS goroutines, started on first use and
// kept for the life of the process, that run the work of minting: checking
// each CSR and signing its certificate.
//
// Why not the calling goroutine: the node API serves most calls on
// goroutines that start with a small stack, and parsing a CSR and a
// certificate (encoding/asn1 recurses) grows it several times over,
// copying it each time. Busy signers keep their grown stacks (the garbage
// collector shrinks only those of idle goroutines): stack growth was 4% of
// a mint's CPU with 64 agents minting at once, 1 to 2% on the signers.
// There are more signers than cores for a CA key in a KMS or HSM, where a
// signature waits on a round trip: as many as the mint calls admission
// lets in by default (Admission.MaxMintBatches), so such a CA signs as
// many certificates at once as it did on the callers' goroutines.
//
// Callers are served in turn: each has at most one item waiting to be
// taken (the channel is unbuffered and its blocked senders are served in
// order), so a call with one CSR waits for one item of a large batch ahead
// of it, not for the whole batch.
var signers struct {
	once sync.Once
	work chan signTask
}

type signTask struct {
	fn func(int)
	i  int
	wg *sync.WaitGroup
}

// runOnSigners runs fn(0..n-1) on the signers and returns when all have
// returned.
func runOnSigners(n int, fn func(int)) {
	signers.once.Do(startSigners)
	var wg sync.WaitGroup
	wg.Add(n)
	for i := range n {
		signers.work <- signTask{fn: fn, i: i, wg: &wg}
	}
	wg.Wait()
}

func startSigners() {
	signers.work = make(chan signTask)
	for range 4 * runtime.GOMAXPROCS(0) {
		go func() {
			for t := range signers.work {
				t.fn(t.i)
				t.wg.Done()
			}
		}()
	}
}
