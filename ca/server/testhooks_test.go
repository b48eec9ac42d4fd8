package server

import (
	"errors"
	"testing"
)

// This package's tests use the test hooks.
func init() { testHooks = true }

// TestNewForTestRefusedInProduct: a binary built without the
// signet_testhooks tag cannot turn on a test hook, whatever calls it.
func TestNewForTestRefusedInProduct(t *testing.T) {
	testHooks = testHooksBuilt
	defer func() { testHooks = true }()
	if testHooksBuilt {
		t.Skip("built with -tags signet_testhooks")
	}
	_, err := NewForTest(t.Context(), Config{TrustDomain: td, DataDir: t.TempDir(), Passphrase: []byte("x")}, TestOptions{NoAudit: true})
	if !errors.Is(err, ErrTestHooksDisabled) {
		t.Errorf("NewForTest in a product build = %v, want ErrTestHooksDisabled", err)
	}
}
