package server

import (
	"context"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/signet-mesh/signet/ca/store/etcdstore/etcdtest"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
	nodev1 "github.com/signet-mesh/signet/proto/signet/node/v1"
)

// TestSyncBundleWithoutEntryReads: a bundle change reaches every sync
// stream without any stream reading its entries again; the agents'
// reports of the bundle they applied wake no stream; an entry change
// still reaches its node's stream, with one entry read (issue 16: at
// 10,000 agents, every stream re-reading its entries for a new bundle
// made the fan-out take 5 s). On both stores.
func TestSyncBundleWithoutEntryReads(t *testing.T) {
	backends := []struct {
		name string
		opts func(t *testing.T) testOpts
	}{
		{name: "bolt", opts: func(*testing.T) testOpts { return testOpts{noSync: true} }},
		{name: "etcd", opts: func(t *testing.T) testOpts {
			if testing.Short() {
				t.Skip("runs etcd")
			}
			cluster := etcdtest.New(t, 1)
			return testOpts{etcd: &EtcdConfig{Endpoints: cluster.Endpoints(), Prefix: "/kinds-test"}, serverName: "a", noSync: true}
		}},
	}
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			c := startCA(t, be.opts(t))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			nodes := map[string]*node{}
			streams := map[string]*syncStream{}
			for i := range 3 {
				name := fmt.Sprintf("kinds-%d", i)
				n := c.attest(t, name)
				c.entry(t, "spiffe://example.org/kinds/"+name, n.id.String())
				nodes[name], streams[name] = n, openSync(ctx, t, n)
			}

			reads := c.srv.node.SyncEntryReads()
			prep, err := c.admin.PrepareRoot(ctx, &adminv1.PrepareRootRequest{})
			if err != nil {
				t.Fatal(err)
			}
			wantRev, wantRoots := wantBundle(t, c)
			for who, s := range streams {
				for {
					m := s.next(t, who)
					if len(m.GetEntries()) > 0 || len(m.GetDeletedEntryIds()) > 0 {
						t.Errorf("%s: a bundle change sent entries %v, deleted %v", who, entryIDs(m), m.GetDeletedEntryIds())
					}
					if m.GetBundle().GetRevision() == wantRev {
						if diff := cmp.Diff(wantRoots, m.GetBundle().GetX509Authorities()); diff != "" {
							t.Errorf("%s: bundle roots (-want +got):\n%s", who, diff)
						}
						break
					}
				}
			}
			if !containsDER(wantRoots, prep.GetAuthority().GetCertificate()) {
				t.Fatalf("the prepared root is not in the bundle")
			}
			// Every stream has sent the bundle: it has done its reads.
			if got := c.srv.node.SyncEntryReads() - reads; got != 0 {
				t.Errorf("a bundle change made the streams read their entries %d times, want 0", got)
			}

			// Each agent reports the bundle it applied, as the real one
			// does: a write of its node that no stream reads.
			wakes, reads := c.srv.node.SyncWakes(), c.srv.node.SyncEntryReads()
			for _, n := range nodes {
				if _, err := n.client.ReportStatus(ctx, &nodev1.ReportStatusRequest{AppliedBundleRevision: wantRev}); err != nil {
					t.Fatal(err)
				}
			}
			// A later change to one node's entries, once its stream has
			// it, orders everything before it: a wake from the reports
			// would show by then.
			n0 := nodes["kinds-0"]
			id := c.entry(t, "spiffe://example.org/kinds/new", n0.id.String())
			if diff := cmp.Diff([]string{id}, entryIDs(streams["kinds-0"].next(t, "kinds-0"))); diff != "" {
				t.Errorf("kinds-0's update after its entry (-want +got):\n%s", diff)
			}
			if got := c.srv.node.SyncWakes() - wakes; got != 1 {
				t.Errorf("status reports and one entry woke %d streams, want 1 (the entry's node)", got)
			}
			if got := c.srv.node.SyncEntryReads() - reads; got != 1 {
				t.Errorf("status reports and one entry made %d entry reads, want 1", got)
			}
			for who, s := range streams {
				if who != "kinds-0" {
					s.none(t, who)
				}
			}
		})
	}
}
