package api

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Signing capacity, as root activation with --rotate-now needs it: the
// re-mint of every connected agent's SVIDs is spread over the time the
// CA needs to sign them all at half its cores, so agents' other calls
// still get through.
const (
	// defaultSignCost is the assumed cost of one workload SVID (CSR
	// check, signature, record) until one is measured.
	defaultSignCost = time.Millisecond
	// rotateUtilization is the share of the cores a rotate-now may take.
	rotateUtilization = 0.5
	// MaxRotateSpread caps the window, whatever the fleet size: agents cap
	// it again at a tenth of each SVID's lifetime.
	MaxRotateSpread = 10 * time.Minute
)

// capacity tracks what the rotate-now spread is computed from.
type capacity struct {
	// liveEntries counts the entries every open sync stream has sent:
	// the SVIDs the connected fleet holds.
	liveEntries atomic.Int64

	mu sync.Mutex
	// signCost is a moving average of the time one workload SVID takes.
	signCost time.Duration
	// gen and genSpread are the window of the newest rotate generation
	// sent (rotateSpreadFor).
	gen       int64
	genSpread time.Duration
}

// observe adds one signing's duration to the moving average.
func (c *capacity) observe(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.signCost == 0 {
		c.signCost = d
		return
	}
	c.signCost += (d - c.signCost) / 32
}

// rotateSpreadFor is the window of rotate generation gen, the same for
// every agent: taken once, when the first stream sends gen. Taken again
// for each stream, it grew as the re-mint it set off loaded the CA (a
// signing measured while the cores are busy with the others takes
// longer), so the agents told last were given windows several times the
// first ones' and made the rotation last as long (2,000 agents: a few
// agents in a 300 s window, the rest done in 40 s).
func (c *capacity) rotateSpreadFor(gen int64) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen == c.gen && c.genSpread > 0 {
		return c.genSpread
	}
	d := c.spreadLocked()
	if gen > c.gen {
		c.gen, c.genSpread = gen, d
	}
	return d
}

// rotateSpread is the window over which the connected fleet should
// spread a rotate-now.
func (c *capacity) rotateSpread() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.spreadLocked()
}

func (c *capacity) spreadLocked() time.Duration {
	cost := c.signCost
	if cost <= 0 {
		cost = defaultSignCost
	}
	perSecond := float64(runtime.GOMAXPROCS(0)) * rotateUtilization / cost.Seconds()
	return min(time.Duration(float64(c.liveEntries.Load())/perSecond*float64(time.Second)), MaxRotateSpread)
}
