package cli

import (
	"os"
	"runtime/debug"
)

// DefaultGCPercent sets this process's GC target to percent unless GOGC
// is set in its environment, which wins (GOGC=100 gives Go's default
// back). Each long-running command picks the target that fits its heap.
func DefaultGCPercent(percent int) {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(percent)
	}
}
