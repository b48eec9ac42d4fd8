package rotation

import "context"

// Tick runs one of Run's checks, for tests that drive the clock step by
// step.
func (m *Manager) Tick(ctx context.Context) { m.tick(ctx) }
