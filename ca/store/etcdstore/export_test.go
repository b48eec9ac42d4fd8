package etcdstore

// Hooks for the tests of package etcdstore_test.

// SetTestHooks stops s's chunked commits where the tests need (see
// testHooks). Call it before s is used.
func SetTestHooks(s *Store, afterChunk func(chunk int), beforePublish func() error) {
	s.hooks = testHooks{afterChunk: afterChunk, beforePublish: beforePublish}
}

// ErrTestCrash returned by beforePublish makes the writer stop as if its
// process died.
var ErrTestCrash = errTestCrash

// Key layout, for the tests that look at etcd directly.
const (
	DirMirror = dirMirror
	KeyCommit = keyCommit
	DirSVIDs  = dirSVIDs
	DirAudit  = dirAudit
	DirUndo   = dirUndo
)
