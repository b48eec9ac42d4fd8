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
// CA needs to mint them all on its cores at the measured cost.
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
	// RotateUtilization is the share of the cores the window is sized
	// for: all of them, so the window is the least time in which the CA
	// can sign the fleet's SVIDs, and a shorter one could only overload
	// it. The fleet's other calls (sync streams, node SVID renewals) are
	// not starved: admission control refuses what the cores cannot take,
	// with a retry hint. At half the cores, the bench's 10,000-agent
	// rotate-now on two cores was spread over 129 s; at three quarters,
	// 90 s, and the server used 0.84 of a core over its first 30 s.
	RotateUtilization = 1.0
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
// The cost of an SVID is the process CPU time while at least one mint
// call is in flight, over the SVIDs those calls signed. That is the whole
// mint path (TLS and gRPC of the call, CSR check, signature, store commit,
// audit record, and the garbage collection their allocations cause while
// the calls run), which is what a rotate-now asks of the CA.
//
// What the CA does meanwhile for other reasons (sync streams, entry
// changes, keepalives) is taken out: the CA's CPU rate while no mint call
// runs, its background, times the time calls ran. A call of a few SVIDs
// spends most of its time waiting on its group commit, and the CA serves
// other calls meanwhile.
//
// A signer outside the process (a PKCS#11 HSM, a cloud KMS) costs the CA
// little CPU but takes a round trip per signature: its latency is its
// limit, and the cost is then the larger of the two.
type capacity struct {
	// liveEntries counts the entries every open sync stream has sent:
	// the SVIDs the connected fleet holds.
	liveEntries atomic.Int64

	mu sync.Mutex
	// inFlight counts the mint calls running; mark is the clocks when
	// last read: while a call ran, or when the last one ended.
	inFlight int
	mark     clocks
	// busy adds up the clocks while calls ran, and busySVIDs their SVIDs,
	// for the current sample, folded into cpuCost every costSample SVIDs;
	// idle adds up the clocks while none ran.
	busy, idle clocks
	busySVIDs  int
	// background is the CPU the process spends per second of wall time
	// while no mint call runs: a moving average.
	background float64
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

// clocks is the process CPU clock (processCPU) and the wall clock, read
// together; cpu is 0 when the CPU clock could not be read.
type clocks struct{ cpu, wall time.Duration }

func (c clocks) sub(d clocks) clocks { return clocks{cpu: c.cpu - d.cpu, wall: c.wall - d.wall} }
func (c clocks) add(d clocks) clocks { return clocks{cpu: c.cpu + d.cpu, wall: c.wall + d.wall} }

// readable tells whether now follows mark on both clocks.
func readable(mark, now clocks) bool {
	return mark.cpu > 0 && now.cpu >= mark.cpu && now.wall >= mark.wall
}

// mintStarted marks a mint call starting at now.
func (c *capacity) mintStarted(now clocks) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inFlight == 0 {
		if now.cpu > 0 && readable(c.mark, now) {
			c.idle = c.idle.add(now.sub(c.mark))
		}
		c.mark = now
	}
	c.inFlight++
}

// mintDone marks a mint call that signed svids SVIDs ending at now: the
// time since the clocks were last read goes to the current sample.
func (c *capacity) mintDone(now clocks, svids int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inFlight--
	if now.cpu <= 0 { // the clock could not be read: nothing measured
		return
	}
	if !readable(c.mark, now) {
		c.mark = now // a start not measured: measure from here
		return
	}
	c.busy = c.busy.add(now.sub(c.mark))
	c.mark = now
	c.busySVIDs += svids
	if c.busySVIDs < costSample {
		return
	}
	c.foldLocked()
}

// foldLocked turns the current sample into the cost of an SVID.
func (c *capacity) foldLocked() {
	if c.idle.wall > 0 {
		rate := c.idle.cpu.Seconds() / c.idle.wall.Seconds()
		if c.background == 0 {
			c.background = rate
		} else {
			c.background += (rate - c.background) / 8
		}
	}
	// The background's share of the busy time is taken out, but never
	// more than nine tenths of the sample: a background measured high
	// must not make a rotate-now window of nothing.
	cpu := c.busy.cpu - time.Duration(c.background*float64(c.busy.wall))
	cpu = max(cpu, c.busy.cpu/10)
	sample := cpu / time.Duration(c.busySVIDs)
	c.busy, c.idle, c.busySVIDs = clocks{}, clocks{}, 0
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
	perSecond := float64(runtime.GOMAXPROCS(0)) * RotateUtilization / c.costLocked().Seconds()
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

// mintStarted and mintDone feed the capacity the clocks around a mint call
// that signed svids SVIDs.
func (s *NodeService) mintStarted()       { s.capacity.mintStarted(readClocks()) }
func (s *NodeService) mintDone(svids int) { s.capacity.mintDone(readClocks(), svids) }

// readClocks reads both clocks. The wall clock is the real one, as the
// CPU clock is: monotonic time since the process started.
func readClocks() clocks {
	return clocks{cpu: processCPU(), wall: time.Since(processStart)}
}

var processStart = time.Now()

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
