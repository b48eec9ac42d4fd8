package api

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-mesh/signet/ca/store"
)

// TestSyncWakerReach: an entry wakes the streams of the nodes that read
// its parent: its node's, or every node of a cluster for an entry
// parented by the cluster; a node change wakes that node's; a bundle
// change wakes every stream. Nobody else is woken.
func TestSyncWakerReach(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "signet.db"), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	w := newSyncWaker(st)
	td := spiffeid.RequireTrustDomainFromString("example.org")
	prod1 := spiffeid.RequireFromString("spiffe://example.org/signet/agent/k8s_psat/prod/uid-1")
	prod2 := spiffeid.RequireFromString("spiffe://example.org/signet/agent/k8s_psat/prod/uid-2")
	staging := spiffeid.RequireFromString("spiffe://example.org/signet/agent/k8s_psat/staging/uid-3")
	joined := spiffeid.RequireFromString("spiffe://example.org/signet/agent/join_token/n1")
	nodes := []spiffeid.ID{prod1, prod2, staging, joined}
	waiters := map[spiffeid.ID]*syncWaiter{}
	for _, n := range nodes {
		waiter, remove := w.add(parentIDs(n))
		defer remove()
		waiters[n] = waiter
	}
	prodCluster, err := ClusterID(td, "prod")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	revise := func(fn func(tx store.Tx) error) func(tx store.Tx) error {
		return func(tx store.Tx) error {
			if err := fn(tx); err != nil {
				return err
			}
			_, err := tx.NextRevision()
			return err
		}
	}
	newEntry := func(parent string) func(tx store.Tx) error {
		n++
		id := fmt.Sprintf("e%d", n)
		return revise(func(tx store.Tx) error {
			return tx.CreateEntry(&store.Entry{ID: id, SPIFFEID: "spiffe://example.org/w", ParentID: parent, Selectors: []string{"unix:uid:1"}, CreatedAt: time.Now()})
		})
	}
	tests := []struct {
		name string
		fn   func(tx store.Tx) error
		want []spiffeid.ID
	}{
		{name: "entry parented by a node", fn: newEntry(prod1.String()), want: []spiffeid.ID{prod1}},
		{name: "entry parented by the node's cluster", fn: newEntry(prodCluster.String()), want: []spiffeid.ID{prod1, prod2}},
		{name: "entry parented by a join-token node", fn: newEntry(joined.String()), want: []spiffeid.ID{joined}},
		{name: "entry parented by nobody connected", fn: newEntry("spiffe://example.org/signet/cluster/dev"), want: nil},
		{name: "node evicted", fn: revise(func(tx store.Tx) error {
			if err := tx.PutNode(&store.Node{SPIFFEID: staging.String()}); err != nil {
				return err
			}
			_, err := tx.EvictNode(staging.String(), time.Now())
			return err
		}), want: []spiffeid.ID{staging}},
		{name: "bundle changed", fn: revise(func(tx store.Tx) error { return tx.PutMeta("bundle_test", []byte("x")) }), want: nodes},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := w.wakes.Load()
			if err := st.Update(t.Context(), tt.fn); err != nil {
				t.Fatal(err)
			}
			want := map[spiffeid.ID]bool{}
			for _, id := range tt.want {
				want[id] = true
			}
			for id, waiter := range waiters {
				select {
				case <-waiter.ch:
					if !want[id] {
						t.Errorf("%s woken", id)
					}
				default:
					if want[id] {
						t.Errorf("%s not woken", id)
					}
				}
			}
			if got := w.wakes.Load() - before; got != int64(len(tt.want)) {
				t.Errorf("%d wakes, want %d", got, len(tt.want))
			}
		})
	}
}

// TestSyncWakerEntriesCoalesce: a stream woken for a bundle change alone
// is told its entries are unchanged; one woken for an entry change, or
// for an entry change and a bundle change that coalesced into one wake,
// in either order, is told to read them. None is lost.
func TestSyncWakerEntriesCoalesce(t *testing.T) {
	const n1 = "spiffe://example.org/signet/agent/join_token/n1"
	bundleChange := store.Change{All: true, Kinds: store.ChangeShared}
	entryChange := store.Change{Keys: []string{n1}, Kinds: store.ChangeEntries}
	tests := []struct {
		name    string
		changes []store.Change
		woken   bool
		entries bool
	}{
		{name: "bundle only", changes: []store.Change{bundleChange}, woken: true, entries: false},
		{name: "entry", changes: []store.Change{entryChange}, woken: true, entries: true},
		{name: "entry then bundle", changes: []store.Change{entryChange, bundleChange}, woken: true, entries: true},
		{name: "bundle then entry", changes: []store.Change{bundleChange, entryChange}, woken: true, entries: true},
		{name: "kinds unknown", changes: []store.Change{{All: true}}, woken: true, entries: true},
		{name: "node status only", changes: []store.Change{{Kinds: store.ChangeNodeStatus}}, woken: false, entries: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &syncWaker{byKey: map[string]map[*syncWaiter]struct{}{}, all: map[*syncWaiter]struct{}{}}
			waiter, remove := w.add([]string{n1})
			defer remove()
			for _, c := range tt.changes {
				w.publish(c)
			}
			woken := false
			select {
			case <-waiter.ch:
				woken = true
			default:
			}
			if woken != tt.woken {
				t.Fatalf("woken %v, want %v", woken, tt.woken)
			}
			if got := waiter.takeEntries(); got != tt.entries {
				t.Errorf("takeEntries() = %v, want %v", got, tt.entries)
			}
			if waiter.takeEntries() {
				t.Errorf("takeEntries() true a second time: it is not cleared")
			}
		})
	}
}
