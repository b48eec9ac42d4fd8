package server

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/signet-mesh/signet/ca/api"
	"github.com/signet-mesh/signet/ca/store"
	"github.com/signet-mesh/signet/ca/store/etcdstore"
	"github.com/signet-mesh/signet/ca/store/etcdstore/etcdtest"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
	nodev1 "github.com/signet-mesh/signet/proto/signet/node/v1"
)

// waitFor polls cond until it holds, failing after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestReplicasOnEtcd: two CA servers on one etcd share the roots (the
// soft root key travels encrypted through the store), each has its own
// intermediate, exactly one leads and the other takes over when it stops,
// a name is held by one live replica only, and a change made through one
// replica reaches the other's subscribers.
func TestReplicasOnEtcd(t *testing.T) {
	if testing.Short() {
		t.Skip("runs etcd")
	}
	cluster := etcdtest.New(t, 1)
	etcd := &EtcdConfig{Endpoints: cluster.Endpoints(), Prefix: "/replicas-test"}
	start := time.Now()
	// Room for the 50 attestations below at once: the race, not
	// admission control, decides.
	room := api.Admission{MaxAttestations: 64}
	a := startCA(t, testOpts{etcd: etcd, serverName: "a", noSync: true, admission: room})
	t.Logf("a started in %v", time.Since(start))
	b := startCA(t, testOpts{etcd: etcd, serverName: "b", noSync: true, admission: room})
	t.Logf("b started in %v", time.Since(start))

	if len(a.roots) != 1 || len(b.roots) != 1 || !a.roots[0].Equal(b.roots[0]) {
		t.Fatalf("replicas serve different roots: a %d, b %d", len(a.roots), len(b.roots))
	}
	var auths []*store.Authority
	var shared []byte
	err := b.srv.Store().View(t.Context(), func(tx store.Tx) (err error) {
		if auths, err = tx.ListAuthorities(); err != nil {
			return err
		}
		for _, a := range auths {
			if a.Kind == store.KindRoot {
				shared, err = tx.GetMeta(rootKeyMeta(a.KeyRef))
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var root *store.Authority
	inters := map[string]string{} // server name -> parent
	for _, au := range auths {
		switch au.Kind {
		case store.KindRoot:
			root = au
		case store.KindIntermediate:
			inters[au.ServerName] = au.ParentID
		}
	}
	if diff := cmp.Diff(map[string]string{"a": root.ID, "b": root.ID}, inters); diff != "" {
		t.Errorf("intermediates by server, their parent (-want +got):\n%s", diff)
	}
	if !strings.HasPrefix(string(shared), "-----BEGIN ENCRYPTED PRIVATE KEY-----") {
		t.Errorf("the shared root key is not an encrypted PEM: %.40q", shared)
	}
	// b signed its intermediate with the root key it fetched from the
	// store: a copy in its key directory, as encrypted as a's.
	fetched, err := os.ReadFile(filepath.Join(b.dir, "data", KeysDir, root.KeyRef))
	if err != nil || string(fetched) != string(shared) {
		t.Errorf("b's copy of the root key: %v (equal to the shared one: %v)", err, string(fetched) == string(shared))
	}

	// One name, one live replica.
	_, err = New(t.Context(), Config{TrustDomain: td, DataDir: t.TempDir(), Passphrase: []byte("test"), Etcd: etcd, ServerName: "a"})
	if !errors.Is(err, etcdstore.ErrNameTaken) {
		t.Errorf("a second replica named a: %v, want ErrNameTaken", err)
	}

	// An entry created through a reaches b's subscribers, pushed.
	_, nodeID := a.token(t, "n1", time.Hour)
	changes, cancel := b.srv.Store().Subscribe()
	defer cancel()
	_, err = a.admin.CreateEntries(t.Context(), &adminv1.CreateEntriesRequest{Entries: []*adminv1.Entry{{
		SpiffeId: "spiffe://example.org/web", ParentId: nodeID, Selectors: []string{"unix:uid:1000"},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-changes:
	case <-time.After(5 * time.Second):
		t.Fatal("b's store did not tell its subscribers of the entry created through a")
	}
	resp, err := b.admin.ListEntries(t.Context(), &adminv1.ListEntriesRequest{})
	if err != nil || len(resp.Entries) != 1 {
		t.Fatalf("entries through b: %v, %v; want the one created through a", resp, err)
	}

	// An agent connected to b counts for a: the activation gate and
	// `root status` on a wait for it too.
	n := b.attestWithToken(t, func() string { tok, _ := b.token(t, "n2", time.Hour); return tok }())
	sctx, stopSync := context.WithCancel(t.Context())
	defer stopSync()
	stream, err := n.client.SyncEntries(sctx, &nodev1.SyncEntriesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "a seeing b's agent", func() bool {
		_, ok := a.srv.conns.AppliedRevisions()[n.id.String()]
		return ok && a.srv.conns.Connected(n.id)
	})
	if _, ok := a.srv.conns.LocalAppliedRevisions()[n.id.String()]; ok {
		t.Error("b's agent counted as a's own")
	}
	nodes, err := a.admin.ListNodes(t.Context(), &adminv1.ListNodesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	replicas := map[string]string{}
	for _, pn := range nodes.Nodes {
		replicas[pn.SpiffeId] = pn.Replica
	}
	if got := replicas[n.id.String()]; got != "b" {
		t.Errorf("node list through a: the agent's replica is %q, want b", got)
	}

	// 50 attestations with one join token, spread over both replicas:
	// exactly one succeeds.
	tok, _ := a.token(t, "raced", time.Hour)
	waitFor(t, 5*time.Second, "b seeing the token", func() bool {
		ok := false
		b.srv.Store().View(t.Context(), func(tx store.Tx) error {
			ts, err := tx.ListJoinTokens()
			for _, jt := range ts {
				ok = ok || jt.SPIFFEID == "spiffe://example.org/signet/agent/join_token/raced"
			}
			return err
		})
		return ok
	})
	clients := []nodev1.NodeServiceClient{a.anonClient(t), b.anonClient(t)}
	// Fifty agents, each with its own key (the same key again would be
	// one agent's retry, which gets its attestation back).
	reqs := make([]*nodev1.AttestNodeRequest, 50)
	for i := range reqs {
		reqs[i] = &nodev1.AttestNodeRequest{JoinToken: tok, Csr: csr(t, newKey(t))}
	}
	var wg sync.WaitGroup
	codesSeen := make([]codes.Code, 50)
	for i := range codesSeen {
		wg.Go(func() {
			_, err := clients[i%2].AttestNode(t.Context(), reqs[i])
			codesSeen[i] = status.Code(err)
		})
	}
	wg.Wait()
	won := 0
	for i, c := range codesSeen {
		switch c {
		case codes.OK:
			won++
		case codes.PermissionDenied, codes.Aborted, codes.Unavailable:
		default:
			t.Errorf("attestation %d: %v", i, c)
		}
	}
	if won != 1 {
		t.Errorf("%d of 50 attestations with one token succeeded, want exactly 1 (codes %v)", won, codesSeen)
	}

	// A root prepared and activated through a: b's intermediate moves
	// under it (b follows a's step without one of its own).
	prep, err := a.admin.PrepareRoot(t.Context(), &adminv1.PrepareRootRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.admin.ActivateRoot(t.Context(), &adminv1.ActivateRootRequest{Force: true}); err != nil {
		t.Fatal(err)
	}
	newRoot := prep.GetAuthority().GetId()
	waitFor(t, 20*time.Second, "b's intermediate under the new root", func() bool {
		active := map[string]string{} // server -> parent of its active intermediate
		err := b.srv.Store().View(t.Context(), func(tx store.Tx) error {
			auths, err := tx.ListAuthorities()
			for _, au := range auths {
				if au.Kind == store.KindIntermediate && au.State == store.StateActive {
					active[au.ServerName] = au.ParentID
				}
			}
			return err
		})
		return err == nil && active["a"] == newRoot && active["b"] == newRoot
	})

	// Exactly one leads; when it stops, the other takes over.
	waitFor(t, 10*time.Second, "one replica leading", func() bool { return a.srv.Leading() != b.srv.Leading() })
	leader, follower := a, b
	if b.srv.Leading() {
		leader, follower = b, a
	}
	start = time.Now()
	leader.stop()
	waitFor(t, 10*time.Second, "the other replica leading", follower.srv.Leading)
	t.Logf("leadership moved in %v", time.Since(start).Round(time.Millisecond))
}
