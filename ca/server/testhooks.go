package server

import (
	"context"
	"errors"

	"github.com/signet-mesh/signet/ca/keys"
	"github.com/signet-mesh/signet/ca/store"
)

// TestOptions are hooks for tests only. They are not part of Config: no
// flag or config file reaches them, and NewForTest refuses them in a
// binary that was not built for tests (see ErrTestHooksDisabled).
type TestOptions struct {
	// CrashPoint is called at the root rotation steps' crash points
	// (rotation.Config.CrashPoint); crash-safety tests kill the process
	// there.
	CrashPoint func(point string)
	// StoreNoSync skips fsync: a crash can lose data.
	StoreNoSync bool
	// WrapStore wraps the store every component writes through, to
	// inject failures.
	WrapStore func(store.Store) store.Store
	// WrapKeys wraps the key manager, to slow or fail key operations.
	WrapKeys func(keys.Manager) keys.Manager
	// NoAudit makes the store drop every audit record (the records are
	// still built and hashed): only for the benchmark that measures what
	// storing them costs. Nothing outside a test can issue a certificate
	// without its record.
	NoAudit bool
	// KeyKDFIterations is the PBKDF2 iteration count of the soft keys
	// the server writes (keys.Config.KDFIterations); 0 keeps the default
	// of 600,000. At the default, every CA a test starts spends about 7 s
	// of CPU under the race detector encrypting its keys.
	KeyKDFIterations int
	// CheckpointRecords replaces checkpointRecords, the number of audit
	// records after which the CA signs a checkpoint sooner than its
	// period; 0 keeps the default.
	CheckpointRecords int
}

// ErrTestHooksDisabled: NewForTest was called in a binary built without
// test hooks.
var ErrTestHooksDisabled = errors.New("server: test hooks are not built into this binary (go build -tags signet_testhooks)")

// testHooks is whether NewForTest may run: in binaries built with the
// signet_testhooks tag (the end-to-end tests build signet so), and in
// this package's own tests, which set it.
var testHooks = testHooksBuilt

// NewForTest is New with test hooks. It fails with ErrTestHooksDisabled
// unless the binary was built for tests.
func NewForTest(ctx context.Context, cfg Config, hooks TestOptions) (*Server, error) {
	if !testHooks {
		return nil, ErrTestHooksDisabled
	}
	return newServer(ctx, cfg, hooks)
}

// noAuditStore drops audit records (TestOptions.NoAudit).
type noAuditStore struct{ store.Store }

func (s noAuditStore) View(ctx context.Context, fn func(store.Tx) error) error {
	return s.Store.View(ctx, func(tx store.Tx) error { return fn(noAuditTx{tx}) })
}

func (s noAuditStore) Update(ctx context.Context, fn func(store.Tx) error) error {
	return s.Store.Update(ctx, func(tx store.Tx) error { return fn(noAuditTx{tx}) })
}

func (s noAuditStore) Batch(ctx context.Context, fn func(store.Tx) error) error {
	return s.Store.Batch(ctx, func(tx store.Tx) error { return fn(noAuditTx{tx}) })
}

// noAuditTx keeps the audit log empty: every record is the first, and
// none is stored.
type noAuditTx struct{ store.Tx }

func (noAuditTx) AuditHead() (uint64, string, error)   { return 0, "", nil }
func (noAuditTx) AppendAudit(*store.AuditRecord) error { return nil }
