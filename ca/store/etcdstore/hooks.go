package etcdstore

import "errors"

// testHooks let this package's tests stop a chunked commit at a chosen
// point. They are set only through export_test.go: no product
// configuration reaches them.
type testHooks struct {
	// afterChunk runs after chunk i of a chunked commit was written.
	afterChunk func(i int)
	// beforePublish runs before the publishing Txn. errTestCrash makes
	// the writer stop as if its process died (its lease runs out, nothing
	// is rolled back); another error makes it fail and roll back.
	beforePublish func() error
}

// errTestCrash is the error of beforePublish that simulates a crash.
var errTestCrash = errors.New("etcdstore: simulated crash before publishing")
