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
// once (started, then done in turn), the process CPU clock advancing by
// perSVID for every SVID in all: the CPU the calls took together. It
// returns the clock's reading after the last.
func mintCalls(c *capacity, cpu time.Duration, n, svids int, perSVID time.Duration) time.Duration {
	for range n {
		c.mintStarted(cpu)
	}
	for range n {
		cpu += time.Duration(svids) * perSVID
		c.mintDone(cpu, svids)
	}
	return cpu
}

// TestRotateSpread: the rotate-now window is the connected fleet's SVIDs
// over what half the cores mint per second at the measured cost.
func TestRotateSpread(t *testing.T) {
	cores := time.Duration(runtime.GOMAXPROCS(0))
	tests := []struct {
		name    string
		entries int64
		cpu     time.Duration // CPU per SVID of 100 mint calls of 10
		latency time.Duration // signature latency of a remote signer
		want    time.Duration
	}{
		{name: "no fleet", entries: 0, want: 0},
		{name: "default cost", entries: 1000, want: 2 * time.Second / cores},
		{name: "measured CPU cost", entries: 100_000, cpu: 250 * time.Microsecond, want: 50 * time.Second / cores},
		{name: "remote signer slower than the CPU", entries: 50_000, cpu: 50 * time.Microsecond, latency: 5 * time.Millisecond, want: 500 * time.Second / cores},
		{name: "remote signer faster than the CPU", entries: 100_000, cpu: 250 * time.Microsecond, latency: 100 * time.Microsecond, want: 50 * time.Second / cores},
		{name: "capped", entries: 100_000_000, cpu: time.Millisecond, want: MaxRotateSpread},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c capacity
			c.liveEntries.Store(tt.entries)
			if tt.cpu > 0 {
				cpu := time.Second
				for range 100 {
					cpu = mintCalls(&c, cpu, 1, 10, tt.cpu)
				}
			}
			if tt.latency > 0 {
				c.observeSignLatency(tt.latency)
			}
			if got := c.rotateSpread(); got.Round(time.Millisecond) != tt.want.Round(time.Millisecond) {
				t.Errorf("rotateSpread = %v, want %v", got, tt.want)
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
	cpu := time.Second
	for range 100 {
		cpu = mintCalls(&calm, cpu, 1, 10, perSVID)
		cpu += 50 * time.Millisecond // sync streams, keepalives between calls
	}
	cpu = time.Second
	for range 10 {
		cpu = mintCalls(&busy, cpu, 64, 10, perSVID)
	}
	want := 100_000 * perSVID / time.Duration(float64(runtime.GOMAXPROCS(0))*rotateUtilization)
	for name, c := range map[string]*capacity{"one call at a time": &calm, "64 calls at once": &busy} {
		if got := c.rotateSpread(); got.Round(time.Millisecond) != want.Round(time.Millisecond) {
			t.Errorf("%s: rotateSpread = %v, want %v (%v per SVID)", name, got, want, perSVID)
		}
	}
}

// TestRotateSpreadUnreadableClock: a mint call measured at one end only
// changes nothing.
func TestRotateSpreadUnreadableClock(t *testing.T) {
	var c capacity
	c.liveEntries.Store(100_000)
	cpu := mintCalls(&c, time.Second, 10, 10, 250*time.Microsecond)
	want := c.rotateSpread()

	c.mintStarted(0) // unread at the start
	c.mintDone(cpu+time.Hour, 10)
	c.mintStarted(cpu + time.Hour)
	c.mintDone(0, 10) // unread at the end
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
	cpu := mintCalls(&c, time.Second, 10, 10, 250*time.Microsecond)
	first, taken := c.rotateSpreadFor(1)
	if first <= 0 || !taken {
		t.Fatalf("window of generation 1 = %v (taken %v), want positive and taken", first, taken)
	}
	for range 10 {
		cpu = mintCalls(&c, cpu, 64, 10, 2*time.Millisecond) // the re-mint costs more
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
