package api

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"runtime"
	"testing"
	"time"
)

// mintCalls feeds c n mint calls of svids SVIDs each, all in flight at
// once (started, then done in turn), the CA busy with nothing else: both
// clocks advance by perSVID for every SVID in all. It returns the clocks
// after the last.
func mintCalls(c *capacity, now clocks, n, svids int, perSVID time.Duration) clocks {
	return mintCallsOver(c, now, n, svids, perSVID, 0)
}

// mintCallsOver is mintCalls on a CA that also spends background cores of
// CPU on other work the whole time: each call takes svids x perSVID of
// wall time, and its CPU plus the background's share of that.
func mintCallsOver(c *capacity, now clocks, n, svids int, perSVID time.Duration, background float64) clocks {
	for range n {
		c.mintStarted(now)
	}
	for range n {
		wall := time.Duration(svids) * perSVID
		now = now.add(clocks{cpu: wall + time.Duration(background*float64(wall)), wall: wall})
		c.mintDone(now, svids)
	}
	return now
}

// onShare is the time work (CPU time) takes on the share of the cores a
// rotate-now may take.
func onShare(work time.Duration) time.Duration {
	return time.Duration(float64(work) / (float64(runtime.GOMAXPROCS(0)) * RotateUtilization))
}

// start is the clocks of a process that has run a second.
var start = clocks{cpu: time.Second, wall: time.Second}

// TestRotateSpread: the rotate-now window is the connected fleet's SVIDs
// over what the cores mint per second at the measured cost.
func TestRotateSpread(t *testing.T) {
	tests := []struct {
		name    string
		entries int64
		cpu     time.Duration // CPU per SVID of 100 mint calls of 10
		latency time.Duration // signature latency of a remote signer
		// work is the re-mint's cost in all: the entries times the cost
		// of one SVID.
		work time.Duration
	}{
		{name: "no fleet", entries: 0, work: 0},
		{name: "default cost", entries: 1000, work: time.Second},
		{name: "measured CPU cost", entries: 100_000, cpu: 250 * time.Microsecond, work: 25 * time.Second},
		{name: "remote signer slower than the CPU", entries: 50_000, cpu: 50 * time.Microsecond, latency: 5 * time.Millisecond, work: 250 * time.Second},
		{name: "remote signer faster than the CPU", entries: 100_000, cpu: 250 * time.Microsecond, latency: 100 * time.Microsecond, work: 25 * time.Second},
		{name: "capped", entries: 100_000_000, cpu: time.Millisecond, work: 100_000 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c capacity
			c.liveEntries.Store(tt.entries)
			if tt.cpu > 0 {
				now := start
				for range 100 {
					now = mintCalls(&c, now, 1, 10, tt.cpu)
				}
			}
			if tt.latency > 0 {
				c.observeSignLatency(tt.latency)
			}
			want := min(onShare(tt.work), MaxRotateSpread)
			if got := c.rotateSpread(); got.Round(time.Millisecond) != want.Round(time.Millisecond) {
				t.Errorf("rotateSpread = %v, want %v", got, want)
			}
		})
	}
}

// TestRotateSpreadUnderContention: the cost does not grow when the CA is
// busy. Calls that overlap (64 at once, each taking many times longer in
// wall time) share the CPU they use: counted once, not once per call.
// CPU the process spends with no mint in flight is not the mints'.
func TestRotateSpreadUnderContention(t *testing.T) {
	const perSVID = 460 * time.Microsecond
	var calm, busy capacity
	calm.liveEntries.Store(100_000)
	busy.liveEntries.Store(100_000)
	now := start
	for range 100 {
		now = mintCalls(&calm, now, 1, 10, perSVID)
		now.cpu += 50 * time.Millisecond // sync streams, keepalives between calls
	}
	now = start
	for range 10 {
		now = mintCalls(&busy, now, 64, 10, perSVID)
	}
	want := onShare(100_000 * perSVID)
	for name, c := range map[string]*capacity{"one call at a time": &calm, "64 calls at once": &busy} {
		if got := c.rotateSpread(); got.Round(time.Millisecond) != want.Round(time.Millisecond) {
			t.Errorf("%s: rotateSpread = %v, want %v (%v per SVID)", name, got, want, perSVID)
		}
	}
}

// TestRotateSpreadBackground: CPU the CA spends on other work while mint
// calls wait on their commits (sync streams, entry changes) is taken out
// of the cost at the rate measured while no call runs; a background
// measured too high takes out at most nine tenths.
func TestRotateSpreadBackground(t *testing.T) {
	const perSVID = 300 * time.Microsecond
	for _, tt := range []struct {
		name string
		// background is the CPU rate of the other work, between calls
		// and during them.
		between, during float64
		want            time.Duration
	}{
		{name: "half a core of other work", between: 0.5, during: 0.5, want: 100_000 * perSVID},
		{name: "none", want: 100_000 * perSVID},
		{name: "busier between calls than during them", between: 20, during: 0.5, want: 100_000 * (perSVID + perSVID/2) / 10},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var c capacity
			c.liveEntries.Store(100_000)
			now := start
			for range 200 {
				now = mintCallsOver(&c, now, 1, 10, perSVID, tt.during)
				gap := 100 * time.Millisecond
				now = now.add(clocks{cpu: time.Duration(tt.between * float64(gap)), wall: gap})
			}
			want := onShare(tt.want)
			if got := c.rotateSpread(); got.Round(time.Millisecond) != want.Round(time.Millisecond) {
				t.Errorf("rotateSpread = %v, want %v", got, want)
			}
		})
	}
}

// TestRotateSpreadUnreadableClock: a mint call measured at one end only
// changes nothing.
func TestRotateSpreadUnreadableClock(t *testing.T) {
	var c capacity
	c.liveEntries.Store(100_000)
	now := mintCalls(&c, start, 10, 10, 250*time.Microsecond)
	want := c.rotateSpread()

	c.mintStarted(clocks{}) // unread at the start
	later := now.add(clocks{cpu: time.Hour, wall: time.Hour})
	c.mintDone(later, 10)
	c.mintStarted(later)
	c.mintDone(clocks{}, 10) // unread at the end
	if got := c.rotateSpread(); got != want {
		t.Errorf("rotateSpread after unmeasured calls = %v, want %v", got, want)
	}
	if c.inFlight != 0 {
		t.Errorf("%d mint calls still in flight, want 0", c.inFlight)
	}
}

// TestRotateSpreadPerGeneration: every agent is given the window its
// rotate generation was first sent with, though mints measured during the
// re-mint change the cost; a newer generation takes a new window.
func TestRotateSpreadPerGeneration(t *testing.T) {
	var c capacity
	c.liveEntries.Store(100_000)
	now := mintCalls(&c, start, 10, 10, 250*time.Microsecond)
	first, taken := c.rotateSpreadFor(1)
	if first <= 0 || !taken {
		t.Fatalf("window of generation 1 = %v (taken %v), want positive and taken", first, taken)
	}
	for range 10 {
		now = mintCalls(&c, now, 64, 10, 2*time.Millisecond) // the re-mint costs more
	}
	if got, taken := c.rotateSpreadFor(1); got != first || taken {
		t.Errorf("window of generation 1 sent later = %v (taken %v), want the first one's %v", got, taken, first)
	}
	got, taken := c.rotateSpreadFor(2)
	if want := c.rotateSpread(); got != want || got == first || !taken {
		t.Errorf("window of generation 2 = %v (taken %v), want the cost measured now, %v (not generation 1's %v)", got, taken, want, first)
	}
	if old, taken := c.rotateSpreadFor(1); taken || old == first {
		t.Errorf("window of generation 1 sent after 2 = %v (taken %v), want the current one, not taken", old, taken)
	}
}

// remoteSigner stands for an HSM or KMS key: a crypto.Signer that is not a
// key in memory.
type remoteSigner struct{ crypto.Signer }

// TestSignsInProcess: soft keys are CPU-bound; anything else is a signer
// whose latency counts.
func TestSignsInProcess(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for name, tt := range map[string]struct {
		s    crypto.Signer
		want bool
	}{
		"ecdsa": {ec, true}, "rsa": {rk, true}, "ed25519": {ed, true}, "hsm": {remoteSigner{ec}, false},
	} {
		if got := signsInProcess(tt.s); got != tt.want {
			t.Errorf("signsInProcess(%s) = %v, want %v", name, got, tt.want)
		}
	}
}

// TestProcessCPU: the clock reads and moves with work done.
func TestProcessCPU(t *testing.T) {
	before := processCPU()
	if before <= 0 {
		t.Fatalf("processCPU = %v, want positive", before)
	}
	deadline := time.Now().Add(10 * time.Second)
	for processCPU() == before {
		if time.Now().After(deadline) {
			t.Fatal("the process CPU clock did not move")
		}
		for i := range 1_000_000 {
			_ = i * i
		}
	}
}
