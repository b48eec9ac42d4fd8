package main

import (
	"runtime/debug"
	"testing"
)

// TestSimulatorGC: the bench process relaxes its own GC target unless the
// environment sets GOGC, which then stays as the runtime read it.
func TestSimulatorGC(t *testing.T) {
	tests := []struct {
		name string
		gogc string
		want int
	}{
		{name: "GOGC unset", gogc: "", want: simulatorGOGC},
		{name: "GOGC set", gogc: "100", want: 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("GOGC", tt.gogc)
			old := debug.SetGCPercent(100)
			defer debug.SetGCPercent(old)
			simulatorGC()
			if got := debug.SetGCPercent(100); got != tt.want {
				t.Errorf("GC percent after simulatorGC = %d, want %d", got, tt.want)
			}
		})
	}
}
