package cli

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
)

// DefaultGCPercent sets this process's GC target to percent unless GOGC
// is set in its environment, which wins (GOGC=100 gives Go's default
// back). Each long-running command picks the target that fits its heap.
func DefaultGCPercent(percent int) {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(percent)
	}
}

// GCPercentAbove is DefaultGCPercent(percent) deferred until the live
// heap, as the end of a GC cycle finds it, has reached threshold bytes:
// for a process whose heap is small unless its load is large. Go never
// collects a heap below 4 MB at its default target, and a lower target
// lowers that floor too, which costs a small idle process a GC and the
// memory it touches. It returns at once; the check rides on GC cycles,
// so an idle process does no work for it.
func GCPercentAbove(threshold uint64, percent int) {
	if os.Getenv("GOGC") != "" {
		return
	}
	afterGC(func() bool {
		if liveHeap() < threshold {
			return true
		}
		debug.SetGCPercent(percent)
		return false
	})
}

// afterGC calls fn after each GC cycle, from the runtime's cleanup
// goroutine, until fn returns false.
func afterGC(fn func() bool) {
	type sentinel struct{ _ [16]byte } // not tiny-allocated: freed with its cycle
	runtime.AddCleanup(new(sentinel), func(struct{}) {
		if fn() {
			afterGC(fn)
		}
	}, struct{}{})
}

// liveHeap is the heap the last GC cycle found reachable.
func liveHeap() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}
