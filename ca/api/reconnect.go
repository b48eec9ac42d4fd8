package api

import "time"

// DefaultReconnectRate is how many agents per second a CA takes back
// after a restart (TLS handshake, entry sync, the mints they missed) with
// room to spare on two cores; agents spread their reconnection over
// connected agents / rate (SyncEntriesResponse.reconnect_spread_ms).
const DefaultReconnectRate = 500

// MaxReconnectSpread caps the spread, whatever the fleet size.
const MaxReconnectSpread = 2 * time.Minute

// Count returns how many agents hold a sync stream open.
func (c *Connections) Count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.nodes)
}

// reconnectSpread is the window over which the connected agents should
// spread their reconnection if their streams break now.
func (s *NodeService) reconnectSpread() time.Duration {
	rate := s.cfg.ReconnectRate
	if rate <= 0 {
		rate = DefaultReconnectRate
	}
	return min(time.Duration(float64(s.cfg.Connections.Count())/rate*float64(time.Second)), MaxReconnectSpread)
}
