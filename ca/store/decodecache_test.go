package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/signet-mesh/signet/ca/store"
)

// GetNode and GetEntry serve repeated reads from a cache of decoded
// records (decodecache.go). These tests check that a read after a change
// sees the change, and that a caller changing what it got changes nothing
// stored or cached.

func TestGetEntrySeesChanges(t *testing.T) {
	st := openBolt(t)
	ctx := context.Background()
	e := &store.Entry{ID: "e1", SPIFFEID: "spiffe://example.org/web", ParentID: "spiffe://example.org/signet/agent/n1",
		Selectors: []string{"unix:uid:1"}, X509TTL: time.Hour, DNSNames: []string{"web.example.org"}, FederatesWith: []string{"other.org"}, CreatedAt: t0}
	mustUpdate(t, st, func(tx store.Tx) error { return tx.CreateEntry(e) })
	want := *e
	if got := getEntry(t, st, "e1"); !cmp.Equal(got, &want) {
		t.Fatalf("first read: %s", cmp.Diff(&want, got))
	}

	// A caller may change what it got: the next read is unchanged.
	got := getEntry(t, st, "e1")
	got.Selectors[0], got.DNSNames[0], got.FederatesWith[0], got.X509TTL = "changed", "changed", "changed", time.Minute
	if got := getEntry(t, st, "e1"); !cmp.Equal(got, &want) {
		t.Fatalf("after the caller changed its copy: %s", cmp.Diff(&want, got))
	}

	// An update is seen by the next read.
	upd := want
	upd.Selectors, upd.X509TTL, upd.DNSNames = []string{"unix:uid:2"}, 2*time.Hour, nil
	mustUpdate(t, st, func(tx store.Tx) error { return tx.UpdateEntry(&upd) })
	if got := getEntry(t, st, "e1"); !cmp.Equal(got, &upd) {
		t.Fatalf("after an update: %s", cmp.Diff(&upd, got))
	}

	// A deleted entry is not found.
	mustUpdate(t, st, func(tx store.Tx) error { return tx.DeleteEntry("e1") })
	err := st.View(ctx, func(tx store.Tx) error { _, err := tx.GetEntry("e1"); return err })
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after delete: got %v, want ErrNotFound", err)
	}
}

func TestGetNodeSeesChanges(t *testing.T) {
	st := openBolt(t)
	ctx := context.Background()
	const id = "spiffe://example.org/signet/agent/n1"
	n := &store.Node{SPIFFEID: id, Attestor: "join_token", Serial: "01", AttestedAt: t0, ExpiresAt: t0.Add(time.Hour), Incarnation: "inc-1", Selectors: []string{"a:b"}}
	mustUpdate(t, st, func(tx store.Tx) error { return tx.PutNode(n) })
	want := *n
	got := getNode(t, st, id)
	if !cmp.Equal(got, &want) {
		t.Fatalf("first read: %s", cmp.Diff(&want, got))
	}
	got.Selectors[0], got.Incarnation = "changed", "changed"
	if got := getNode(t, st, id); !cmp.Equal(got, &want) {
		t.Fatalf("after the caller changed its copy: %s", cmp.Diff(&want, got))
	}

	// Attested again: a new incarnation, seen at once.
	again := want
	again.Incarnation, again.AttestedAt, again.Selectors = "inc-2", t0.Add(time.Minute), nil
	mustUpdate(t, st, func(tx store.Tx) error { return tx.PutNode(&again) })
	if got := getNode(t, st, id); !cmp.Equal(got, &again) {
		t.Fatalf("after attesting again: %s", cmp.Diff(&again, got))
	}

	// Evicted: not found any more.
	mustUpdate(t, st, func(tx store.Tx) error { _, err := tx.EvictNode(id, t0.Add(time.Hour)); return err })
	err := st.View(ctx, func(tx store.Tx) error { _, err := tx.GetNode(id); return err })
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after eviction: got %v, want ErrNotFound", err)
	}
}

func getEntry(t *testing.T, st store.Store, id string) *store.Entry {
	t.Helper()
	var e *store.Entry
	if err := st.View(context.Background(), func(tx store.Tx) (err error) { e, err = tx.GetEntry(id); return err }); err != nil {
		t.Fatal(err)
	}
	return e
}

func getNode(t *testing.T, st store.Store, id string) *store.Node {
	t.Helper()
	var n *store.Node
	if err := st.View(context.Background(), func(tx store.Tx) (err error) { n, err = tx.GetNode(id); return err }); err != nil {
		t.Fatal(err)
	}
	return n
}

func mustUpdate(t *testing.T, st store.Store, fn func(store.Tx) error) {
	t.Helper()
	if err := st.Update(context.Background(), fn); err != nil {
		t.Fatal(err)
	}
}
