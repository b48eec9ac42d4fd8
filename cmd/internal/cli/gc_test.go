package cli

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
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

// TestGCPercentAbove: the target stays Go's while the live heap is under
// the threshold, and changes at the first GC that finds it over; GOGC in
// the environment keeps it from changing at all.
func TestGCPercentAbove(t *testing.T) {
	t.Setenv("GOGC", "")
	old := debug.SetGCPercent(100)
	defer debug.SetGCPercent(old)

	const threshold = 64 << 20
	GCPercentAbove(threshold, 40)
	runtime.GC()
	runtime.GC()
	if live := liveHeap(); live < threshold {
		if got := gcPercent(); got != 100 {
			t.Fatalf("GC percent with %d bytes live (under %d) = %d, want 100", live, threshold, got)
		}
	}

	held := make([]byte, threshold) // live across the next cycles
	waitGCPercent(t, 40)
	runtime.KeepAlive(held)

	t.Setenv("GOGC", "100")
	debug.SetGCPercent(100)
	GCPercentAbove(1, 30)
	runtime.GC()
	runtime.GC()
	if got := gcPercent(); got != 100 {
		t.Errorf("GC percent with GOGC set = %d, want 100", got)
	}
}

// waitGCPercent runs GC cycles until the target is want, for up to 10 s.
func waitGCPercent(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for gcPercent() != want {
		if time.Now().After(deadline) {
			t.Fatalf("GC percent = %d after 10s of GC cycles, want %d", gcPercent(), want)
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}

// gcPercent reads the GC target without changing it.
func gcPercent() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}
