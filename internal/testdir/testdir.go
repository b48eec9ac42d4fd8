// Package testdir gives tests directories for Unix sockets. Only _test.go
// files and test helpers (test/testserver) import it.
package testdir

import (
	"os"
	"testing"
)

// Short returns a new temporary directory with a short path, removed when
// the test ends: a Unix socket's path is limited to 108 bytes, and
// t.TempDir's paths, named after the test, can be longer.
func Short(tb testing.TB) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", "sg")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
