package server

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
	nodev1 "github.com/signet-mesh/signet/proto/signet/node/v1"
)

// nextBundle returns the next bundle a stream is sent, skipping updates
// without one.
func (s *syncStream) nextBundle(t *testing.T, who string) *nodev1.Bundle {
	t.Helper()
	for {
		if b := s.next(t, who).GetBundle(); b != nil {
			return b
		}
	}
}

// wantBundle is the bundle the admin API reports, as a sync stream sends it.
func wantBundle(t *testing.T, c *testCA) (rev int64, roots [][]byte) {
	t.Helper()
	resp, err := c.admin.GetBundle(context.Background(), &adminv1.GetBundleRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetRevision(), resp.GetX509Authorities()
}

// TestSyncStreamsShareTheBundle: a bundle change reaches every sync
// stream with the new bundle, which the server builds once per revision
// for all of them (issue 16: at 10,000 agents, each stream reading and
// parsing the authorities itself made the fan-out take 22 s). After a
// second change every stream has the second bundle, not the shared first
// one, and a stream opened later starts from the latest.
func TestSyncStreamsShareTheBundle(t *testing.T) {
	c := startCA(t, testOpts{noSync: true})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	streams := map[string]*syncStream{}
	for i := range 5 {
		name := fmt.Sprintf("share-%d", i)
		streams[name] = openSync(ctx, t, c.attest(t, name))
	}

	builds := c.srv.node.SyncBundleBuilds()
	prep, err := c.admin.PrepareRoot(ctx, &adminv1.PrepareRootRequest{})
	if err != nil {
		t.Fatal(err)
	}
	check := func(step string) map[int64]bool {
		t.Helper()
		wantRev, wantRoots := wantBundle(t, c)
		revs := map[int64]bool{}
		for who, s := range streams {
			// A stream may see an intermediate revision first; the
			// last bundle it is sent is the admin API's.
			b := s.nextBundle(t, who)
			revs[b.GetRevision()] = true
			for b.GetRevision() != wantRev {
				b = s.nextBundle(t, who)
				revs[b.GetRevision()] = true
			}
			if diff := cmp.Diff(wantRoots, b.GetX509Authorities()); diff != "" {
				t.Errorf("%s: %s: bundle roots (-want +got):\n%s", step, who, diff)
			}
		}
		return revs
	}
	revs := check("after root prepare")
	if !containsDER(wantRootsOf(t, c), prep.GetAuthority().GetCertificate()) {
		t.Fatalf("the prepared root is not in the bundle")
	}
	// One build per revision the streams were sent, not one per stream.
	if got := c.srv.node.SyncBundleBuilds() - builds; got != int64(len(revs)) {
		t.Errorf("%d streams were sent %d bundle revisions built %d times, want once per revision", len(streams), len(revs), got)
	}

	// A second change: the prepared root active, another prepared.
	if _, err := c.admin.ActivateRoot(ctx, &adminv1.ActivateRootRequest{Id: prep.GetAuthority().GetId(), Force: true}); err != nil {
		t.Fatal(err)
	}
	prep2, err := c.admin.PrepareRoot(ctx, &adminv1.PrepareRootRequest{})
	if err != nil {
		t.Fatal(err)
	}
	check("after a second root prepare")
	if !containsDER(wantRootsOf(t, c), prep2.GetAuthority().GetCertificate()) {
		t.Fatalf("the second prepared root is not in the bundle")
	}

	late, err := c.attest(t, "share-late").client.SyncEntries(ctx, &nodev1.SyncEntriesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	first, err := late.Recv()
	if err != nil {
		t.Fatal(err)
	}
	wantRev, wantRoots := wantBundle(t, c)
	if got := first.GetBundle(); got.GetRevision() != wantRev || !cmp.Equal(wantRoots, got.GetX509Authorities()) {
		t.Errorf("a stream opened after the changes starts from bundle revision %d with %d roots, want revision %d with %d",
			got.GetRevision(), len(got.GetX509Authorities()), wantRev, len(wantRoots))
	}
}

func wantRootsOf(t *testing.T, c *testCA) [][]byte {
	t.Helper()
	_, roots := wantBundle(t, c)
	return roots
}

func containsDER(set [][]byte, der []byte) bool {
	for _, d := range set {
		if string(d) == string(der) {
			return true
		}
	}
	return false
}

// TestSyncSlowAgentHoldsUpNoOne: agents that do not read their sync
// stream (their flow-control window is full, the server's send waits)
// do not delay the updates of the others: a stream's send holds nothing
// another stream needs.
func TestSyncSlowAgentHoldsUpNoOne(t *testing.T) {
	c := startCA(t, testOpts{noSync: true})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// Each slow agent's entries are well over the HTTP/2 windows (64 KiB
	// for its stream and for its connection) and the server's write quota:
	// its first update is queued, the next one waits.
	const slots = 4 // slow agents
	pad := strings.Repeat("x", 200)
	for i := range slots {
		n := c.attest(t, fmt.Sprintf("slow-%d", i))
		var entries []*adminv1.Entry
		for j := range 600 {
			entries = append(entries, &adminv1.Entry{
				SpiffeId:  fmt.Sprintf("spiffe://example.org/slow/%d/%d/%s", i, j, pad),
				ParentId:  n.id.String(),
				Selectors: []string{"unix:uid:" + fmt.Sprint(j), "k8s:ns:" + pad},
			})
		}
		if _, err := c.admin.CreateEntries(ctx, &adminv1.CreateEntriesRequest{Entries: entries}); err != nil {
			t.Fatal(err)
		}
		// Opened and never read.
		if _, err := n.client.SyncEntries(ctx, &nodev1.SyncEntriesRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	fast := c.attest(t, "fast")
	sf := openSync(ctx, t, fast)

	// A bundle change: every slow stream has a second update to send,
	// and stays in that send.
	if _, err := c.admin.PrepareRoot(ctx, &adminv1.PrepareRootRequest{}); err != nil {
		t.Fatal(err)
	}
	sf.nextBundle(t, "fast")
	deadline := time.Now().Add(10 * time.Second)
	for c.srv.node.SyncSending() < int64(slots) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d slow streams are in a send after 10s, want all", c.srv.node.SyncSending(), slots)
		}
		time.Sleep(5 * time.Millisecond)
	}

	// The fast agent's own entry still reaches it.
	id := c.entry(t, "spiffe://example.org/fast/w", fast.id.String())
	if diff := cmp.Diff([]string{id}, entryIDs(sf.next(t, "fast"))); diff != "" {
		t.Errorf("fast agent's update (-want +got):\n%s", diff)
	}
}
