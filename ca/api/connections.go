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
	// name is this server's replica name (SetPeers).
	name string
	// peers, when set, returns the agents connected to the other CA
	// replicas sharing the store (SetPeers).
	peers func() map[string]PeerAgent
}

// PeerAgent is an agent connected to another CA replica.
type PeerAgent struct {
	// Replica is that replica's server name.
	Replica string `json:"replica"`
	// Applied is the bundle revision the agent last reported applying.
	Applied int64 `json:"applied"`
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

// SetPeers names this server among the CA replicas sharing its store
// and makes Connected, Replica and AppliedRevisions also count the agents
// of the other replicas, as peers returns them (by SPIFFE ID). Call it
// before serving.
func (c *Connections) SetPeers(name string, peers func() map[string]PeerAgent) {
	c.name, c.peers = name, peers
}

// Connected reports whether id has a sync stream open, to this server or
// (see SetPeers) to another replica.
func (c *Connections) Connected(id spiffeid.ID) bool {
	_, ok := c.Replica(id)
	return ok
}

// Replica returns the name of the replica id has a sync stream open with
// (this server's name, empty without SetPeers, when it is this server);
// ok is false when it has none.
func (c *Connections) Replica(id spiffeid.ID) (string, bool) {
	c.mu.Lock()
	_, ok := c.nodes[id]
	c.mu.Unlock()
	if ok {
		return c.name, true
	}
	if c.peers != nil {
		if p, ok := c.peers()[id.String()]; ok {
			return p.Replica, true
		}
	}
	return "", false
}

// AppliedRevisions is Snapshot keyed by the agents' SPIFFE IDs as
// strings, the form root activation checks take, with the agents of the
// other replicas (SetPeers): the activation gate waits for every agent,
// whichever replica it talks to.
func (c *Connections) AppliedRevisions() map[string]int64 {
	snap := c.Snapshot()
	out := make(map[string]int64, len(snap))
	if c.peers != nil {
		for id, p := range c.peers() {
			out[id] = p.Applied
		}
	}
	for id, rev := range snap {
		out[id.String()] = rev
	}
	return out
}

// LocalAppliedRevisions is AppliedRevisions of this server's own
// agents only: what it publishes to the other replicas.
func (c *Connections) LocalAppliedRevisions() map[string]int64 {
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

// ByReplica counts the connected agents by the replica each holds its
// sync stream with: this server's under its name (empty without
// SetPeers), the other replicas' as they last published them. An agent
// that moved here and is still listed by its old replica counts here.
func (c *Connections) ByReplica() map[string]int {
	local := c.Snapshot()
	out := map[string]int{}
	if len(local) > 0 {
		out[c.name] = len(local)
	}
	if c.peers != nil {
		for id, p := range c.peers() {
			if sid, err := spiffeid.FromString(id); err == nil {
				if _, here := local[sid]; here {
					continue
				}
			}
			out[p.Replica]++
		}
	}
	return out
}
