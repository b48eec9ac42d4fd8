package api

import (
	"sync"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Connections tracks which agents hold an entry-sync stream open right now
// and the bundle revision each reported. Root rotation asks it whether every
// connected agent has applied a bundle before moving on.
type Connections struct {
	mu    sync.Mutex
	nodes map[spiffeid.ID]*connState
	// traffic holds the proxies' connection counts (mtls_traffic.go).
	traffic *mtlsTraffic
}

type connState struct {
	streams int
	applied int64
}

// NewConnections returns an empty registry.
func NewConnections() *Connections {
	return &Connections{nodes: map[spiffeid.ID]*connState{}, traffic: newMTLSTraffic()}
}

func (c *Connections) connect(id spiffeid.ID) (done func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, ok := c.nodes[id]
	if !ok {
		st = &connState{}
		c.nodes[id] = st
	}
	st.streams++
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		st.streams--
		if st.streams == 0 {
			delete(c.nodes, id)
		}
	}
}

func (c *Connections) setApplied(id spiffeid.ID, rev int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.nodes[id]; ok {
		st.applied = rev
	}
}

// Connected reports whether id has a sync stream open.
func (c *Connections) Connected(id spiffeid.ID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.nodes[id]
	return ok
}

// AppliedRevisions is Snapshot keyed by the agents' SPIFFE IDs as
// strings, the form root activation checks take.
func (c *Connections) AppliedRevisions() map[string]int64 {
	snap := c.Snapshot()
	out := make(map[string]int64, len(snap))
	for id, rev := range snap {
		out[id.String()] = rev
	}
	return out
}

// Snapshot returns each connected agent with the bundle revision it last
// reported applying.
func (c *Connections) Snapshot() map[spiffeid.ID]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[spiffeid.ID]int64, len(c.nodes))
	for id, st := range c.nodes {
		out[id] = st.applied
	}
	return out
}
