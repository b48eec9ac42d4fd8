package storetest

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/signet-mesh/signet/ca/store"
)

// testSubscribeChanges: each commit that takes a revision tells
// SubscribeChanges whom it concerns: the parents of the entries it wrote
// (before and after), the nodes it wrote, or everyone for the bundle, the
// settings, the mTLS policies and a bare revision; and which kinds of
// record it wrote, so that a bundle change does not make streams re-read
// their entries and a node's status (its applied bundle, its renewed
// SVID) concerns nobody. A commit without a revision tells nothing;
// nothing is told after cancel.
func testSubscribeChanges(t *testing.T, st store.Store) {
	const (
		n1 = "spiffe://example.org/signet/agent/join_token/n1"
		n2 = "spiffe://example.org/signet/agent/join_token/n2"
		n3 = "spiffe://example.org/signet/agent/join_token/n3"
	)
	got := make(chan store.Change, 100)
	closed, cancel := st.SubscribeChanges(func(c store.Change) { got <- c })
	defer cancel()
	revise := func(fn func(tx store.Tx) error) func(tx store.Tx) error {
		return func(tx store.Tx) error {
			if err := fn(tx); err != nil {
				return err
			}
			_, err := tx.NextRevision()
			return err
		}
	}
	// status is n3 as its agent's reports and renewals leave it.
	status := node(n3)
	status.AppliedBundleRevision, status.Serial, status.ExpiresAt = 9, "ff", t0.Add(2*time.Hour)
	quiet := func(after string) {
		t.Helper()
		select {
		case c := <-got:
			t.Errorf("SubscribeChanges told %+v after %s, want nothing", c, after)
		case <-closed:
			t.Fatalf("SubscribeChanges closed after %s", after)
		default:
		}
	}
	tests := []struct {
		name  string
		batch bool
		fn    func(tx store.Tx) error
		want  store.Change
	}{
		{name: "entry created", fn: revise(func(tx store.Tx) error {
			return tx.CreateEntry(entry("e1", "spiffe://example.org/web", n1, "unix:uid:1"))
		}),
			want: store.Change{Keys: []string{n1}, Kinds: store.ChangeEntries}},
		{name: "entry moved to another parent", fn: revise(func(tx store.Tx) error {
			return tx.UpdateEntry(entry("e1", "spiffe://example.org/web", n2, "unix:uid:1"))
		}),
			want: store.Change{Keys: []string{n1, n2}, Kinds: store.ChangeEntries}},
		{name: "entry created in a batch, with an SVID and a token", batch: true, fn: revise(func(tx store.Tx) error {
			if err := tx.PutSVID(svid(serialN(1), t0)); err != nil {
				return err
			}
			if err := tx.PutJoinToken(joinToken("h1")); err != nil {
				return err
			}
			return tx.CreateEntry(entry("e2", "spiffe://example.org/api", n3, "unix:uid:2"))
		}), want: store.Change{Keys: []string{n3}, Kinds: store.ChangeEntries}},
		{name: "entry deleted", fn: revise(func(tx store.Tx) error { return tx.DeleteEntry("e1") }),
			want: store.Change{Keys: []string{n2}, Kinds: store.ChangeEntries}},
		{name: "node written", fn: revise(func(tx store.Tx) error { return tx.PutNode(node(n3)) }),
			want: store.Change{Keys: []string{n3}, Kinds: store.ChangeNodes}},
		{name: "node status written", fn: revise(func(tx store.Tx) error { return tx.PutNode(status) }),
			want: store.Change{Kinds: store.ChangeNodeStatus}},
		{name: "node status written in a batch with an entry", batch: true, fn: revise(func(tx store.Tx) error {
			s := *status
			s.AppliedBundleRevision++
			if err := tx.PutNode(&s); err != nil {
				return err
			}
			return tx.CreateEntry(entry("e4", "spiffe://example.org/cache", n1, "unix:uid:4"))
		}), want: store.Change{Keys: []string{n1}, Kinds: store.ChangeEntries | store.ChangeNodeStatus}},
		{name: "node selectors written", fn: revise(func(tx store.Tx) error {
			s := *status
			s.Selectors = []string{"k8s_psat:cluster:prod"}
			return tx.PutNode(&s)
		}), want: store.Change{Keys: []string{n3}, Kinds: store.ChangeNodes}},
		{name: "node attested again", fn: revise(func(tx store.Tx) error {
			s := *status
			s.Incarnation, s.AttestedAt = "i2", t0.Add(time.Minute)
			return tx.PutNode(&s)
		}), want: store.Change{Keys: []string{n3}, Kinds: store.ChangeNodes}},
		{name: "node evicted", fn: revise(func(tx store.Tx) error { _, err := tx.EvictNode(n3, t0); return err }),
			want: store.Change{Keys: []string{n3}, Kinds: store.ChangeNodes}},
		{name: "evicted node attested again", fn: revise(func(tx store.Tx) error { return tx.PutNode(node(n3)) }),
			want: store.Change{Keys: []string{n3}, Kinds: store.ChangeNodes}},
		{name: "authority written", fn: revise(func(tx store.Tx) error { return tx.PutAuthority(authority("a1", t0)) }),
			want: store.Change{All: true, Kinds: store.ChangeShared}},
		{name: "setting written", fn: revise(func(tx store.Tx) error { return tx.PutMeta("bundle_x", []byte("1")) }),
			want: store.Change{All: true, Kinds: store.ChangeShared}},
		{name: "mTLS policy written", fn: revise(func(tx store.Tx) error {
			return tx.PutMTLSPolicy(mtlsPolicy("mp-a", "spiffe://example.org/a", "STRICT"))
		}), want: store.Change{All: true, Kinds: store.ChangeShared}},
		{name: "entry and authority", fn: revise(func(tx store.Tx) error {
			if err := tx.CreateEntry(entry("e3", "spiffe://example.org/db", n1)); err != nil {
				return err
			}
			return tx.PutAuthority(authority("a2", t0))
		}), want: store.Change{All: true, Kinds: store.ChangeEntries | store.ChangeShared}},
		{name: "a bare revision", fn: revise(func(tx store.Tx) error { return nil }), want: store.Change{All: true}},
	}
	for _, tt := range tests {
		run := st.Update
		if tt.batch {
			run = st.Batch
		}
		if err := run(t.Context(), tt.fn); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		select {
		case c := <-got:
			if diff := cmp.Diff(tt.want, c); diff != "" {
				t.Errorf("%s: change (-want +got):\n%s", tt.name, diff)
			}
		case <-time.After(waitTimeout):
			t.Fatalf("%s: SubscribeChanges not told within %v", tt.name, waitTimeout)
		}
	}
	update(t, st, func(tx store.Tx) error { return tx.PutNode(node(n1)) })
	update(t, st, func(tx store.Tx) error { _, err := tx.Revision(); return err })
	// A commit that takes a revision flushes what came before, so that
	// quiet sees anything the two commits without one told.
	update(t, st, revise(func(tx store.Tx) error { return nil }))
	select {
	case c := <-got:
		if !c.All {
			t.Errorf("change %+v, want the bare revision's", c)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("SubscribeChanges not told within %v", waitTimeout)
	}
	quiet("commits without a revision")

	cancel()
	update(t, st, revise(func(tx store.Tx) error { return tx.DeleteEntry("e2") }))
	quiet("cancel")
}

// testSubscribeChangesAcross: a commit of one instance tells the other
// instance's SubscribeChanges whom it concerns, and the change is
// readable there when it is told.
func testSubscribeChangesAcross(t *testing.T, a, b store.Store) {
	const n1 = "spiffe://example.org/signet/agent/join_token/n1"
	got := make(chan store.Change, 100)
	_, cancel := b.SubscribeChanges(func(c store.Change) { got <- c })
	defer cancel()
	next := func(what string) store.Change {
		t.Helper()
		select {
		case c := <-got:
			return c
		case <-time.After(waitTimeout):
			t.Fatalf("%s: the other instance's SubscribeChanges not told within %v", what, waitTimeout)
			return store.Change{}
		}
	}
	update(t, a, func(tx store.Tx) error {
		if _, err := tx.NextRevision(); err != nil {
			return err
		}
		return tx.CreateEntry(entry("e1", "spiffe://example.org/web", n1, "unix:uid:1"))
	})
	if diff := cmp.Diff(store.Change{Keys: []string{n1}, Kinds: store.ChangeEntries}, next("an entry")); diff != "" {
		t.Errorf("change of an entry (-want +got):\n%s", diff)
	}
	view(t, b, func(tx store.Tx) error {
		if _, err := tx.GetEntry("e1"); err != nil {
			t.Errorf("when told: %v", err)
		}
		return nil
	})
	update(t, a, func(tx store.Tx) error {
		if _, err := tx.NextRevision(); err != nil {
			return err
		}
		return tx.PutAuthority(authority("a1", t0))
	})
	if c := next("an authority"); !c.All || !c.EntriesUnchanged() {
		t.Errorf("change of an authority %+v, want every agent's, with no entry changed", c)
	}
}
