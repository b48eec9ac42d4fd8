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
