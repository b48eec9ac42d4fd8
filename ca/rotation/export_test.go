package rotation

import "context"

// Tick runs one of Run's checks, for tests that drive the clock step by
// step.
func (m *Manager) Tick(ctx context.Context) { m.tick(ctx) }

// CachesSigner reports whether the signer cache holds the key ref.
func (m *Manager) CachesSigner(ref string) bool { return m.signers.has(ref) }
