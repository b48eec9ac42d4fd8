package api

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// TestConnectionsByReplica: agents are counted under the replica they
// talk to; one that moved here and is still listed by its old replica
// counts here only.
func TestConnectionsByReplica(t *testing.T) {
	a := spiffeid.RequireFromString("spiffe://example.org/node/a")
	c := NewConnections()
	if diff := cmp.Diff(map[string]int{}, c.ByReplica()); diff != "" {
		t.Errorf("no agent (-want +got):\n%s", diff)
	}
	done := c.connect(a)
	defer done()
	if diff := cmp.Diff(map[string]int{"": 1}, c.ByReplica()); diff != "" {
		t.Errorf("one agent, no peers (-want +got):\n%s", diff)
	}
	c.SetPeers("r1", func() map[string]PeerAgent {
		return map[string]PeerAgent{
			a.String():                    {Replica: "r2"}, // moved here from r2
			"spiffe://example.org/node/b": {Replica: "r2"},
			"spiffe://example.org/node/c": {Replica: "r3"},
			"spiffe://example.org/node/d": {Replica: "r3"},
		}
	})
	if diff := cmp.Diff(map[string]int{"r1": 1, "r2": 1, "r3": 2}, c.ByReplica()); diff != "" {
		t.Errorf("with peers (-want +got):\n%s", diff)
	}
}
