package api

import (
	"runtime"
	"testing"
	"time"
)

// TestRotateSpread: the rotate-now window is the connected fleet's SVIDs
// over what half the cores sign per second at the measured cost.
func TestRotateSpread(t *testing.T) {
	cores := time.Duration(runtime.GOMAXPROCS(0))
	tests := []struct {
		name    string
		entries int64
		costs   []time.Duration
		want    time.Duration
	}{
		{name: "no fleet", entries: 0, want: 0},
		{name: "default cost", entries: 1000, want: 2 * time.Second / cores},
		{name: "measured cost", entries: 100_000, costs: []time.Duration{250 * time.Microsecond}, want: 50 * time.Second / cores},
		{name: "capped", entries: 100_000_000, costs: []time.Duration{time.Millisecond}, want: MaxRotateSpread},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c capacity
			c.liveEntries.Store(tt.entries)
			for _, d := range tt.costs {
				c.observe(d)
			}
			if got := c.rotateSpread(); got.Round(time.Millisecond) != tt.want.Round(time.Millisecond) {
				t.Errorf("rotateSpread = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestRotateSpreadPerGeneration: every agent is given the window its
// rotate generation was first sent with, though signings measured during
// the re-mint grow the cost; a newer generation takes a new window.
func TestRotateSpreadPerGeneration(t *testing.T) {
	var c capacity
	c.liveEntries.Store(100_000)
	c.observe(250 * time.Microsecond)
	first := c.rotateSpreadFor(1)
	if first <= 0 {
		t.Fatalf("window of generation 1 = %v, want positive", first)
	}
	for range 64 {
		c.observe(5 * time.Millisecond) // the re-mint loads the CA
	}
	if got := c.rotateSpreadFor(1); got != first {
		t.Errorf("window of generation 1 sent later = %v, want the first one's %v", got, first)
	}
	if got, want := c.rotateSpreadFor(2), c.rotateSpread(); got != want || got == first {
		t.Errorf("window of generation 2 = %v, want the cost measured now, %v (not generation 1's %v)", got, want, first)
	}
}
