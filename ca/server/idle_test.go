package server

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signet-mesh/signet/ca/store"
	nodev1 "github.com/signet-mesh/signet/proto/signet/node/v1"
)

// countingStore counts the transactions the CA opens.
type countingStore struct {
	store.Store
	n *atomic.Int64
}

func (s countingStore) View(ctx context.Context, fn func(store.Tx) error) error {
	s.n.Add(1)
	return s.Store.View(ctx, fn)
}

func (s countingStore) Update(ctx context.Context, fn func(store.Tx) error) error {
	s.n.Add(1)
	return s.Store.Update(ctx, fn)
}

func (s countingStore) Batch(ctx context.Context, fn func(store.Tx) error) error {
	s.n.Add(1)
	return s.Store.Batch(ctx, fn)
}

// TestIdleAgentsCostNothing: agents connected with their sync streams
// open and nothing changing make the CA open no transaction at all: the
// streams wait on the store's change notifications, no per-agent timer or
// poll (issue 16; SPIRE's agents poll every 5 s).
func TestIdleAgentsCostNothing(t *testing.T) {
	var txs atomic.Int64
	c := startCA(t, testOpts{noSync: true, wrapStore: func(s store.Store) store.Store { return countingStore{s, &txs} }})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const agents = 20
	for i := range agents {
		n := c.attest(t, fmt.Sprintf("idle-%02d", i))
		c.entry(t, fmt.Sprintf("spiffe://example.org/idle/%d", i), n.id.String())
		stream, err := n.client.SyncEntries(ctx, &nodev1.SyncEntriesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != nil {
			t.Fatal(err)
		}
		go func() {
			for {
				if _, err := stream.Recv(); err != nil {
					return
				}
			}
		}()
	}
	// Let anything the setup set off settle, then watch an idle spell
	// longer than any per-agent period would be.
	time.Sleep(500 * time.Millisecond)
	before := txs.Load()
	time.Sleep(6 * time.Second)
	if got := txs.Load() - before; got > 1 {
		t.Fatalf("%d store transactions in 6 idle seconds with %d agents connected; want none for the agents (1 for a server-wide loop at most)", got, agents)
	}
}
