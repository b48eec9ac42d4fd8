package cli

import (
	"runtime/debug"
	"testing"
)

// TestDefaultGCPercent: a command's GC target applies unless the
// environment sets GOGC, which then stays as the runtime read it.
func TestDefaultGCPercent(t *testing.T) {
	tests := []struct {
		name string
		gogc string
		want int
	}{
		{name: "GOGC unset", gogc: "", want: 40},
		{name: "GOGC set", gogc: "100", want: 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("GOGC", tt.gogc)
			old := debug.SetGCPercent(100)
			defer debug.SetGCPercent(old)
			DefaultGCPercent(40)
			if got := debug.SetGCPercent(100); got != tt.want {
				t.Errorf("GC percent after DefaultGCPercent(40) = %d, want %d", got, tt.want)
			}
		})
	}
}
