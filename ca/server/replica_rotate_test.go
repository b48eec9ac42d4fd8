package server

import (
	"context"
	"testing"
	"time"

	"github.com/signet-mesh/signet/ca/store"
	"github.com/signet-mesh/signet/ca/store/etcdstore/etcdtest"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
	nodev1 "github.com/signet-mesh/signet/proto/signet/node/v1"
)

// TestRotateNowReachesAnotherReplicasAgentsOnceItSignsUnderTheNewRoot: a
// root activated with --rotate-now through replica a reaches an agent of
// replica b only once b signs under the new root. Otherwise the agent
// re-mints at once, under the old root, and not again before half-life:
// the old root could not be retired until then.
func TestRotateNowReachesAnotherReplicasAgentsOnceItSignsUnderTheNewRoot(t *testing.T) {
	if testing.Short() {
		t.Skip("runs etcd")
	}
	cluster := etcdtest.New(t, 1)
	etcd := &EtcdConfig{Endpoints: cluster.Endpoints(), Prefix: "/rotate-now-test"}
	a := startCA(t, testOpts{etcd: etcd, serverName: "a", noSync: true})
	b := startCA(t, testOpts{etcd: etcd, serverName: "b", noSync: true})
	tok, _ := b.token(t, "n1", time.Hour)
	n := b.attestWithToken(t, tok)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	stream, err := n.client.SyncEntries(ctx, &nodev1.SyncEntriesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}

	prep, err := a.admin.PrepareRoot(t.Context(), &adminv1.PrepareRootRequest{})
	if err != nil {
		t.Fatal(err)
	}
	newRoot := prep.GetAuthority().GetId()
	if _, err := a.admin.ActivateRoot(t.Context(), &adminv1.ActivateRootRequest{Force: true, RotateNow: true}); err != nil {
		t.Fatal(err)
	}
	for {
		msg, err := stream.Recv()
		if err != nil {
			t.Fatalf("no new rotate generation on b's stream: %v", err)
		}
		if msg.GetRotateGeneration() == first.GetRotateGeneration() {
			continue
		}
		// The generation is here: b's CA must sign under the new root now.
		signing := b.srv.ca.X509Authority().ID
		var parent string
		err = b.srv.Store().View(t.Context(), func(tx store.Tx) error {
			au, err := tx.GetAuthority(signing)
			if err == nil {
				parent = au.ParentID
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if parent != newRoot {
			t.Fatalf("rotate generation %d reached b's agent while b signs with %s under %s, not the new root %s",
				msg.GetRotateGeneration(), signing, parent, newRoot)
		}
		return
	}
}
