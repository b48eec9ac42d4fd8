package server

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
	nodev1 "github.com/signet-mesh/signet/proto/signet/node/v1"
)

// syncStream is an open entry sync stream whose updates arrive on msgs.
type syncStream struct {
	msgs chan *nodev1.SyncEntriesResponse
}

func openSync(ctx context.Context, t *testing.T, n *node) *syncStream {
	t.Helper()
	stream, err := n.client.SyncEntries(ctx, &nodev1.SyncEntriesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	s := &syncStream{msgs: make(chan *nodev1.SyncEntriesResponse, 16)}
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				return
			}
			s.msgs <- m
		}
	}()
	return s
}

func (s *syncStream) next(t *testing.T, who string) *nodev1.SyncEntriesResponse {
	t.Helper()
	select {
	case m := <-s.msgs:
		return m
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no update within 10s", who)
		return nil
	}
}

func (s *syncStream) none(t *testing.T, who string) {
	t.Helper()
	select {
	case m := <-s.msgs:
		t.Errorf("%s got an update it has no part in: %v", who, m)
	default:
	}
}

func entryIDs(m *nodev1.SyncEntriesResponse) []string {
	var ids []string
	for _, e := range m.GetEntries() {
		ids = append(ids, e.GetId())
	}
	return ids
}

// TestSyncWakesOnlyTheNodeConcerned: an entry for node A wakes A's sync
// stream and no other: node B's stream gets no update and the server
// does no work for it (it is not woken to read). A change every node
// sees (an mTLS policy) still reaches every stream (issue 16: at 10,000
// agents, waking every stream for each entry is what breaks sync_p99).
func TestSyncWakesOnlyTheNodeConcerned(t *testing.T) {
	c := startCA(t, testOpts{noSync: true})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, b := c.attest(t, "wake-a"), c.attest(t, "wake-b")
	sa, sb := openSync(ctx, t, a), openSync(ctx, t, b)
	// The streams are registered before their first message is sent:
	// from here every change is counted.

	wakes := c.srv.node.SyncWakes()
	idA := c.entry(t, "spiffe://example.org/wake/a", a.id.String())
	// The waker runs in the commit, before CreateEntries returns.
	if got := c.srv.node.SyncWakes() - wakes; got != 1 {
		t.Errorf("an entry for A woke %d streams, want 1 (A's)", got)
	}
	if diff := cmp.Diff([]string{idA}, entryIDs(sa.next(t, "A"))); diff != "" {
		t.Errorf("A's update (-want +got):\n%s", diff)
	}
	sb.none(t, "B")

	wakes = c.srv.node.SyncWakes()
	idB := c.entry(t, "spiffe://example.org/wake/b", b.id.String())
	if got := c.srv.node.SyncWakes() - wakes; got != 1 {
		t.Errorf("an entry for B woke %d streams, want 1 (B's)", got)
	}
	// B's next update is its own entry: nothing about A came before it.
	if diff := cmp.Diff([]string{idB}, entryIDs(sb.next(t, "B"))); diff != "" {
		t.Errorf("B's update (-want +got):\n%s", diff)
	}
	sa.none(t, "A")

	wakes = c.srv.node.SyncWakes()
	if _, err := c.admin.SetMTLSPolicy(ctx, &adminv1.SetMTLSPolicyRequest{Policy: &adminv1.MTLSPolicy{
		Mode: adminv1.MTLSMode_MTLS_MODE_PERMISSIVE, SpiffeId: "spiffe://example.org/wake/a"}, Force: true}); err != nil {
		t.Fatal(err)
	}
	if got := c.srv.node.SyncWakes() - wakes; got != 2 {
		t.Errorf("an mTLS policy woke %d streams, want 2 (every one)", got)
	}
	for who, s := range map[string]*syncStream{"A": sa, "B": sb} {
		if m := s.next(t, who); len(m.GetMtlsPolicies().GetPolicies()) != 1 {
			t.Errorf("%s's update after a policy change has policies %v, want the one set", who, m.GetMtlsPolicies())
		}
	}
}
