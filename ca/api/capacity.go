package api

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Signing capacity, as root activation with --rotate-now needs it: the
// re-mint of every connected agent's SVIDs is spread over the time the
// CA needs to mint them all at half its cores, so agents' other calls
// still get through.
//
// What one SVID costs is measured in the CA's CPU time, not in the wall
// time of its signing: a signing's wall time stretches with everything
// else that wants the cores (the CA's other signings, other processes on
// the machine), and a window sized from it grew with the load it was
// taken under (93 to 128 s for the same 100,000 SVIDs). CPU time is what
// the cores actually spend on one SVID, whatever else runs.
const (
	// defaultSignCost is the assumed cost of one workload SVID until one
	// is measured.
	defaultSignCost = time.Millisecond
	// rotateUtilization is the share of the cores a rotate-now may take.
	rotateUtilization = 0.5
	// MaxRotateSpread caps the window, whatever the fleet size: agents cap
	// it again at a tenth of each SVID's lifetime.
	MaxRotateSpread = 10 * time.Minute
	// costSample is the number of SVIDs whose CPU time makes one sample of
	// the cost: a single small mint call's share of the CPU clock is too
	// coarse (other calls overlap it).
	costSample = 32
)

// capacity tracks what the rotate-now spread is computed from.
//
// The cost of an SVID is the process's CPU time while at least one mint
// call is in flight, over the SVIDs those calls signed. That is the whole
// mint path (TLS and gRPC of the call, CSR check, signature, store commit,
// audit record, and the garbage collection their allocations cause while
// the calls run), which is what a rotate-now asks of the CA. It also
// counts whatever else the CA does meanwhile, such as sync streams and
// keepalives: that errs towards a longer window, never a shorter one.
//
// A signer outside the process (a PKCS#11 HSM, a cloud KMS) costs the CA
// little CPU but takes a round trip per signature: its latency is its
// limit, and the cost is then the larger of the two.
type capacity struct {
	// liveEntries counts the entries every open sync stream has sent:
	// the SVIDs the connected fleet holds.
	liveEntries atomic.Int64

	mu sync.Mutex
	// inFlight counts the mint calls running; cpuMark is the process CPU
	// clock when last read while one ran.
	inFlight int
	cpuMark  time.Duration
	// busyCPU and busySVIDs add up the CPU time and SVIDs of the current
	// sample, folded into cpuCost every costSample SVIDs.
	busyCPU   time.Duration
	busySVIDs int
	// cpuCost is a moving average of the CPU time one workload SVID takes.
	cpuCost time.Duration
	// signLatency is a moving average of the time a signer outside the
	// process takes for one signature; 0 when the signer is in-process.
	signLatency time.Duration
	// gen and genSpread are the window of the newest rotate generation
	// sent (rotateSpreadFor).
	gen       int64
	genSpread time.Duration
}

// mintStarted marks a mint call starting, cpu being the process CPU
// clock (processCPU) now.
func (c *capacity) mintStarted(cpu time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inFlight == 0 {
		c.cpuMark = cpu
	}
	c.inFlight++
}

// mintDone marks a mint call that signed svids SVIDs ending, cpu being
// the process CPU clock now: the CPU time since the clock was last read
// goes to the current sample.
func (c *capacity) mintDone(cpu time.Duration, svids int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inFlight--
	switch {
	case cpu <= 0: // the clock could not be read: nothing measured
		return
	case c.cpuMark <= 0 || cpu < c.cpuMark:
		c.cpuMark = cpu // a start not measured: measure from here
		return
	}
	c.busyCPU += cpu - c.cpuMark
	c.cpuMark = cpu
	c.busySVIDs += svids
	if c.busySVIDs < costSample {
		return
	}
	sample := c.busyCPU / time.Duration(c.busySVIDs)
	c.busyCPU, c.busySVIDs = 0, 0
	if c.cpuCost == 0 {
		c.cpuCost = sample
		return
	}
	// About the last 250 SVIDs: a rotate-now sized by the minting of
	// the moment, not by a fleet's attestation an hour ago.
	c.cpuCost += (sample - c.cpuCost) / 8
}

// observeSignLatency adds the latency of one signature by a signer outside
// the process to its moving average.
func (c *capacity) observeSignLatency(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.signLatency == 0 {
		c.signLatency = d
		return
	}
	c.signLatency += (d - c.signLatency) / 32
}

// rotateSpreadFor is the window of rotate generation gen, the same for
// every agent: taken once, when the first stream sends gen (taken is then
// true). Taken again for each stream, it changed as the re-mint it set
// off loaded the CA, and the agents told last were given other windows
// than the first ones (with wall-time costs, several times longer: 2,000
// agents, a few in a 300 s window, the rest done in 40 s).
func (c *capacity) rotateSpreadFor(gen int64) (d time.Duration, taken bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen == c.gen && c.genSpread > 0 {
		return c.genSpread, false
	}
	d = c.spreadLocked()
	if gen > c.gen {
		c.gen, c.genSpread = gen, d
		return d, true
	}
	return d, false
}

// rotateSpread is the window over which the connected fleet should
// spread a rotate-now.
func (c *capacity) rotateSpread() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.spreadLocked()
}

// svidCost is the cost of one SVID the window is computed from.
func (c *capacity) svidCost() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.costLocked()
}

func (c *capacity) costLocked() time.Duration {
	cost := max(c.cpuCost, c.signLatency)
	if cost <= 0 {
		cost = defaultSignCost
	}
	return cost
}

func (c *capacity) spreadLocked() time.Duration {
	perSecond := float64(runtime.GOMAXPROCS(0)) * rotateUtilization / c.costLocked().Seconds()
	return min(time.Duration(float64(c.liveEntries.Load())/perSecond*float64(time.Second)), MaxRotateSpread)
}

// signsInProcess tells a signer whose signatures are computed by this
// process (a soft key: CPU-bound) from one that calls out (an HSM or KMS,
// through go.step.sm/crypto/kms: latency-bound).
func signsInProcess(s crypto.Signer) bool {
	switch s.(type) {
	case *ecdsa.PrivateKey, *rsa.PrivateKey, ed25519.PrivateKey:
		return true
	}
	return false
}

// processCPU reads the CPU time (user and system) this process has used
// on all its threads; 0 if the clock cannot be read.
func processCPU() time.Duration {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_PROCESS_CPUTIME_ID, &ts) != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// mintStarted and mintDone feed the capacity the process CPU clock around
// a mint call that signed svids SVIDs.
func (s *NodeService) mintStarted()       { s.capacity.mintStarted(processCPU()) }
func (s *NodeService) mintDone(svids int) { s.capacity.mintDone(processCPU(), svids) }

// rotateWindow reports the window taken for rotate generation gen: what
// the operator's rotate-now will take, and from what.
func (s *NodeService) rotateWindow(ctx context.Context, gen int64, window time.Duration) {
	cost := s.capacity.svidCost()
	s.log.InfoContext(ctx, "rotate-now window taken", logRotateGeneration, gen, logCount, s.capacity.liveEntries.Load(),
		logSVIDCost, cost, logWindow, window)
	if f := s.cfg.Metrics.RotateWindow; f != nil {
		f(window, cost)
	}
}
