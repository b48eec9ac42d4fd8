// Package storetest is the conformance suite of store.Store: every backend
// runs it from its own tests, so they all behave alike.
//
//	func TestBolt(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store {
//			st, err := store.Open(filepath.Join(t.TempDir(), "signet.db"), store.Options{})
//			if err != nil {
//				t.Fatal(err)
//			}
//			return st
//		})
//	}
package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/signet-mesh/signet/ca/store"
)

// waitTimeout bounds every wait of the suite, so a broken backend fails
// instead of hanging.
const waitTimeout = 10 * time.Second

// Run runs the conformance suite. open must return a new, empty store each
// time it is called; the suite closes it when the test ends (so open may
// register checks of the closed store with t.Cleanup).
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		run  func(t *testing.T, st store.Store)
	}{
		{"RoundTrip", testRoundTrip},
		{"NotFound", testNotFound},
		{"RecordsAreCopies", testRecordsAreCopies},
		{"ListAuthoritiesOrder", testListAuthoritiesOrder},
		{"CreateEntryConflicts", testCreateEntryConflicts},
		{"UpdateEntryIndexes", testUpdateEntryIndexes},
		{"DeleteEntryIndexes", testDeleteEntryIndexes},
		{"ListEntries", testListEntries},
		{"ListNodes", testListNodes},
		{"JoinTokens", testJoinTokens},
		{"EvictNode", testEvictNode},
		{"RecordTooLarge", testRecordTooLarge},
		{"TakeJoinTokenRace", testTakeJoinTokenRace},
		{"SVIDs", testSVIDs},
		{"CurrentSVIDs", testCurrentSVIDs},
		{"Meta", testMeta},
		{"Revision", testRevision},
		{"RollbackOnError", testRollbackOnError},
		{"PanicRollsBack", testPanicRollsBack},
		{"ReadOnlyView", testReadOnlyView},
		{"BatchConcurrent", testBatchConcurrent},
		{"BatchFailureIsolated", testBatchFailureIsolated},
		{"ContextCanceled", testContextCanceled},
		{"Subscribe", testSubscribe},
		{"SubscribeChanges", testSubscribeChanges},
		{"Pages", testPages},
		{"Close", testClose},
		{"MTLSPolicies", testMTLSPolicies},
		{"AuditRoundTrip", testAuditRoundTrip},
		{"AuditOrder", testAuditOrder},
		{"AuditSeqEnforced", testAuditSeqEnforced},
		{"AuditRollback", testAuditRollback},
		{"AuditBatch", testAuditBatch},
		{"AuditEarlyStop", testAuditEarlyStop},
		{"AuditDeleteBefore", testAuditDeleteBefore},
		{"SubscribeAudit", testSubscribeAudit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st := open(t)
			t.Cleanup(func() {
				if err := st.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tt.run(t, st)
		})
	}
}

// t0 has nanoseconds so that lossy time encodings show.
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 6007, time.UTC)

func authority(id string, created time.Time) *store.Authority {
	return &store.Authority{
		ID:               id,
		Kind:             store.KindIntermediate,
		State:            store.StateActive,
		CertDER:          []byte{0x30, 0x82, 0x01, id[0]},
		UpstreamChainDER: [][]byte{{0x30, 0x01}, {0x30, 0x02}},
		KeyRef:           "keys/" + id + ".pem",
		KeyType:          "ec-p256",
		ParentID:         "root-1",
		NotBefore:        t0,
		NotAfter:         t0.Add(7 * 24 * time.Hour),
		CreatedAt:        created,
		StateChangedAt:   created.Add(time.Minute),
	}
}

func entry(id, spiffeID, parentID string, selectors ...string) *store.Entry {
	return &store.Entry{
		ID:        id,
		SPIFFEID:  spiffeID,
		ParentID:  parentID,
		Selectors: selectors,
		X509TTL:   time.Hour,
		JWTTTL:    5 * time.Minute,
		DNSNames:  []string{id + ".example.org"},
		Revision:  7,
		CreatedAt: t0,
	}
}

func node(spiffeID string) *store.Node {
	return &store.Node{
		SPIFFEID:              spiffeID,
		Attestor:              "join_token",
		Serial:                "0a1b2c3d4e5f60718293a4b5c6d7e8f9",
		AttestedAt:            t0,
		ExpiresAt:             t0.Add(time.Hour),
		AppliedBundleRevision: 3,
	}
}

func joinToken(hash string) *store.JoinToken {
	return &store.JoinToken{
		Hash:      hash,
		ID:        "tok-" + hash,
		SPIFFEID:  "spiffe://example.org/signet/agent/join_token/tok-" + hash,
		ExpiresAt: t0.Add(10 * time.Minute),
		CreatedAt: t0,
	}
}

func svid(serial string, notAfter time.Time) *store.SVIDRecord {
	return &store.SVIDRecord{
		Serial:      serial,
		SPIFFEID:    "spiffe://example.org/web",
		NodeID:      "spiffe://example.org/signet/agent/join_token/n1",
		EntryID:     "e1",
		AuthorityID: "int-1",
		NotBefore:   notAfter.Add(-time.Hour),
		NotAfter:    notAfter,
	}
}

// serialN is a distinct 32-digit serial per n, in n's order.
func serialN(n int) string { return fmt.Sprintf("%032x", n) }

func update(t *testing.T, st store.Store, fn func(tx store.Tx) error) {
	t.Helper()
	if err := st.Update(t.Context(), fn); err != nil {
		t.Fatalf("Update: %v", err)
	}
}

func view(t *testing.T, st store.Store, fn func(tx store.Tx) error) {
	t.Helper()
	if err := st.View(t.Context(), fn); err != nil {
		t.Fatalf("View: %v", err)
	}
}

// listEntryIDs returns the IDs ListEntries(f) finds, in its order.
func listEntryIDs(t *testing.T, st store.Store, f store.EntryFilter) []string {
	t.Helper()
	var ids []string
	view(t, st, func(tx store.Tx) error {
		es, err := tx.ListEntries(f)
		for _, e := range es {
			ids = append(ids, e.ID)
		}
		return err
	})
	return ids
}

func testRoundTrip(t *testing.T, st store.Store) {
	tests := []struct {
		name string
		put  func(tx store.Tx) error
		get  func(tx store.Tx) (any, error)
		want any
	}{
		{
			name: "authority",
			put:  func(tx store.Tx) error { return tx.PutAuthority(authority("a1", t0)) },
			get:  func(tx store.Tx) (any, error) { return tx.GetAuthority("a1") },
			want: authority("a1", t0),
		},
		{
			name: "authority replaced",
			put: func(tx store.Tx) error {
				a := authority("a2", t0)
				if err := tx.PutAuthority(a); err != nil {
					return err
				}
				a.State = store.StateRetiring
				return tx.PutAuthority(a)
			},
			get: func(tx store.Tx) (any, error) { return tx.GetAuthority("a2") },
			want: func() any {
				a := authority("a2", t0)
				a.State = store.StateRetiring
				return a
			}(),
		},
		{
			name: "entry with selectors sorted and deduplicated",
			put: func(tx store.Tx) error {
				return tx.CreateEntry(entry("e1", "spiffe://example.org/web", "spiffe://example.org/node", "unix:uid:1000", "unix:gid:10", "unix:uid:1000"))
			},
			get:  func(tx store.Tx) (any, error) { return tx.GetEntry("e1") },
			want: entry("e1", "spiffe://example.org/web", "spiffe://example.org/node", "unix:gid:10", "unix:uid:1000"),
		},
		{
			name: "node",
			put:  func(tx store.Tx) error { return tx.PutNode(node("spiffe://example.org/n1")) },
			get:  func(tx store.Tx) (any, error) { return tx.GetNode("spiffe://example.org/n1") },
			want: node("spiffe://example.org/n1"),
		},
		{
			name: "join token",
			put:  func(tx store.Tx) error { return tx.PutJoinToken(joinToken("ab12")) },
			get:  func(tx store.Tx) (any, error) { return tx.GetJoinToken("ab12") },
			want: joinToken("ab12"),
		},
		{
			name: "svid",
			put:  func(tx store.Tx) error { return tx.PutSVID(svid(serialN(1), t0)) },
			get:  func(tx store.Tx) (any, error) { return tx.GetSVID(serialN(1)) },
			want: svid(serialN(1), t0),
		},
		{
			name: "meta",
			put:  func(tx store.Tx) error { return tx.PutMeta("bundle", []byte("v1")) },
			get:  func(tx store.Tx) (any, error) { return tx.GetMeta("bundle") },
			want: []byte("v1"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			update(t, st, tt.put)
			var got any
			update(t, st, func(tx store.Tx) (err error) {
				got, err = tt.get(tx)
				return err
			})
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("stored record differs (-want +got):\n%s", diff)
			}
		})
	}
}

func testNotFound(t *testing.T, st store.Store) {
	tests := []struct {
		name string
		op   func(tx store.Tx) error
	}{
		{"GetAuthority", func(tx store.Tx) error { _, err := tx.GetAuthority("nope"); return err }},
		{"GetEntry", func(tx store.Tx) error { _, err := tx.GetEntry("nope"); return err }},
		{"UpdateEntry", func(tx store.Tx) error {
			return tx.UpdateEntry(entry("nope", "spiffe://example.org/x", "spiffe://example.org/n"))
		}},
		{"DeleteEntry", func(tx store.Tx) error { return tx.DeleteEntry("nope") }},
		{"GetNode", func(tx store.Tx) error { _, err := tx.GetNode("spiffe://example.org/nope"); return err }},
		{"DeleteNode", func(tx store.Tx) error { return tx.DeleteNode("spiffe://example.org/nope") }},
		{"TakeJoinToken", func(tx store.Tx) error { _, err := tx.TakeJoinToken("nope", t0); return err }},
		{"GetJoinToken", func(tx store.Tx) error { _, err := tx.GetJoinToken("nope"); return err }},
		{"DeleteJoinToken", func(tx store.Tx) error { return tx.DeleteJoinToken("nope") }},
		{"EvictNode", func(tx store.Tx) error { _, err := tx.EvictNode("spiffe://example.org/nope", t0); return err }},
		{"GetEvictedNode", func(tx store.Tx) error { _, err := tx.GetEvictedNode("spiffe://example.org/nope"); return err }},
		{"GetSVID", func(tx store.Tx) error { _, err := tx.GetSVID(serialN(404)); return err }},
		{"GetMeta", func(tx store.Tx) error { _, err := tx.GetMeta("nope"); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := st.Update(t.Context(), tt.op)
			if !errors.Is(err, store.ErrNotFound) {
				t.Errorf("got error %v, want ErrNotFound", err)
			}
		})
	}
}

// testRecordsAreCopies checks that the store shares no memory with its
// callers: not the records they put (even before the commit), nor the
// records it returns (even inside the transaction).
func testRecordsAreCopies(t *testing.T, st store.Store) {
	want := entry("e1", "spiffe://example.org/web", "spiffe://example.org/node", "unix:uid:1", "unix:uid:2")
	update(t, st, func(tx store.Tx) error {
		e := entry("e1", "spiffe://example.org/web", "spiffe://example.org/node", "unix:uid:2", "unix:uid:1")
		if err := tx.CreateEntry(e); err != nil {
			return err
		}
		if diff := cmp.Diff([]string{"unix:uid:2", "unix:uid:1"}, e.Selectors); diff != "" {
			t.Errorf("CreateEntry changed the caller's selectors (-want +got):\n%s", diff)
		}
		meta := []byte("v1")
		if err := tx.PutMeta("bundle", meta); err != nil {
			return err
		}
		// The caller changes what it put, and what it got.
		e.SPIFFEID = "spiffe://example.org/changed"
		e.Selectors[0] = "changed"
		meta[0] = 'X'
		got, err := tx.GetEntry("e1")
		if err != nil {
			return err
		}
		got.Selectors[0] = "changed"
		got.DNSNames[0] = "changed"
		m, err := tx.GetMeta("bundle")
		if err != nil {
			return err
		}
		m[0] = 'Y'
		return nil
	})
	view(t, st, func(tx store.Tx) error {
		got, err := tx.GetEntry("e1")
		if err != nil {
			return err
		}
		got.Selectors[0] = "changed"
		m, err := tx.GetMeta("bundle")
		if err != nil {
			return err
		}
		m[0] = 'Y'
		return nil
	})
	view(t, st, func(tx store.Tx) error {
		got, err := tx.GetEntry("e1")
		if err != nil {
			return err
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("stored entry changed through a caller's copy (-want +got):\n%s", diff)
		}
		m, err := tx.GetMeta("bundle")
		if err != nil {
			return err
		}
		if diff := cmp.Diff([]byte("v1"), m); diff != "" {
			t.Errorf("stored meta changed through a caller's copy (-want +got):\n%s", diff)
		}
		return nil
	})
}

func testListAuthoritiesOrder(t *testing.T, st store.Store) {
	update(t, st, func(tx store.Tx) error {
		for _, a := range []*store.Authority{
			authority("c", t0.Add(time.Hour)),
			authority("b", t0),
			authority("a", t0.Add(2*time.Hour)),
			authority("d", t0),
		} {
			if err := tx.PutAuthority(a); err != nil {
				return err
			}
		}
		return nil
	})
	var got []string
	view(t, st, func(tx store.Tx) error {
		as, err := tx.ListAuthorities()
		for _, a := range as {
			got = append(got, a.ID)
		}
		return err
	})
	// Oldest first, ties by ID.
	if diff := cmp.Diff([]string{"b", "d", "c", "a"}, got); diff != "" {
		t.Errorf("ListAuthorities order (-want +got):\n%s", diff)
	}
}

func testCreateEntryConflicts(t *testing.T, st store.Store) {
	const (
		web  = "spiffe://example.org/web"
		n1   = "spiffe://example.org/n1"
		n2   = "spiffe://example.org/n2"
		uid  = "unix:uid:1000"
		gid  = "unix:gid:10"
		path = "unix:path:/bin/web"
	)
	update(t, st, func(tx store.Tx) error {
		return tx.CreateEntry(entry("e1", web, n1, uid, gid))
	})
	tests := []struct {
		name    string
		entry   *store.Entry
		wantErr error
	}{
		{"same id", entry("e1", "spiffe://example.org/other", n2, path), store.ErrAlreadyExists},
		{"same selectors", entry("e2", web, n1, uid, gid), store.ErrAlreadyExists},
		{"same selectors in another order", entry("e2", web, n1, gid, uid), store.ErrAlreadyExists},
		{"same selectors repeated", entry("e2", web, n1, gid, uid, gid), store.ErrAlreadyExists},
		{"other parent", entry("e3", web, n2, uid, gid), nil},
		{"other spiffe id", entry("e4", "spiffe://example.org/api", n1, uid, gid), nil},
		{"fewer selectors", entry("e5", web, n1, uid), nil},
		{"more selectors", entry("e6", web, n1, uid, gid, path), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := st.Update(t.Context(), func(tx store.Tx) error { return tx.CreateEntry(tt.entry) })
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("got error %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func testUpdateEntryIndexes(t *testing.T, st store.Store) {
	const (
		web = "spiffe://example.org/web"
		n1  = "spiffe://example.org/n1"
		n2  = "spiffe://example.org/n2"
	)
	update(t, st, func(tx store.Tx) error {
		if err := tx.CreateEntry(entry("e1", web, n1, "unix:uid:1")); err != nil {
			return err
		}
		return tx.CreateEntry(entry("e2", web, n1, "unix:uid:2"))
	})

	// Taking e2's selectors would make e1 its duplicate.
	err := st.Update(t.Context(), func(tx store.Tx) error {
		return tx.UpdateEntry(entry("e1", web, n1, "unix:uid:2"))
	})
	if !errors.Is(err, store.ErrAlreadyExists) {
		t.Errorf("UpdateEntry onto another entry's selectors: got error %v, want ErrAlreadyExists", err)
	}

	// Updating an entry to itself is no conflict.
	update(t, st, func(tx store.Tx) error {
		return tx.UpdateEntry(entry("e1", web, n1, "unix:uid:1"))
	})

	// Move e1 to another parent and selector: both indexes follow.
	update(t, st, func(tx store.Tx) error {
		return tx.UpdateEntry(entry("e1", web, n2, "unix:uid:3", "unix:gid:3"))
	})
	view(t, st, func(tx store.Tx) error {
		got, err := tx.GetEntry("e1")
		if err != nil {
			return err
		}
		if diff := cmp.Diff(entry("e1", web, n2, "unix:gid:3", "unix:uid:3"), got); diff != "" {
			t.Errorf("updated entry (-want +got):\n%s", diff)
		}
		return nil
	})
	if diff := cmp.Diff([]string{"e2"}, listEntryIDs(t, st, store.EntryFilter{ParentID: n1})); diff != "" {
		t.Errorf("entries of the old parent (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"e1"}, listEntryIDs(t, st, store.EntryFilter{ParentID: n2})); diff != "" {
		t.Errorf("entries of the new parent (-want +got):\n%s", diff)
	}

	// The old key is free, the new one taken.
	update(t, st, func(tx store.Tx) error {
		return tx.CreateEntry(entry("e3", web, n1, "unix:uid:1"))
	})
	err = st.Update(t.Context(), func(tx store.Tx) error {
		return tx.CreateEntry(entry("e4", web, n2, "unix:gid:3", "unix:uid:3"))
	})
	if !errors.Is(err, store.ErrAlreadyExists) {
		t.Errorf("CreateEntry with the updated entry's selectors: got error %v, want ErrAlreadyExists", err)
	}
}

func testDeleteEntryIndexes(t *testing.T, st store.Store) {
	const (
		web = "spiffe://example.org/web"
		n1  = "spiffe://example.org/n1"
	)
	update(t, st, func(tx store.Tx) error {
		if err := tx.CreateEntry(entry("e1", web, n1, "unix:uid:1")); err != nil {
			return err
		}
		if err := tx.CreateEntry(entry("e2", web, n1, "unix:uid:2")); err != nil {
			return err
		}
		return tx.DeleteEntry("e1")
	})
	err := st.View(t.Context(), func(tx store.Tx) error { _, err := tx.GetEntry("e1"); return err })
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetEntry after DeleteEntry: got error %v, want ErrNotFound", err)
	}
	if diff := cmp.Diff([]string{"e2"}, listEntryIDs(t, st, store.EntryFilter{ParentID: n1})); diff != "" {
		t.Errorf("entries of the parent after delete (-want +got):\n%s", diff)
	}
	// Its SPIFFE ID, parent and selectors are free again.
	update(t, st, func(tx store.Tx) error {
		return tx.CreateEntry(entry("e3", web, n1, "unix:uid:1"))
	})
}

func testListEntries(t *testing.T, st store.Store) {
	const (
		web = "spiffe://example.org/web"
		api = "spiffe://example.org/api"
		n1  = "spiffe://example.org/n1"
		n2  = "spiffe://example.org/n2"
		// n10 has n1 as a string prefix: it must not be mistaken for it.
		n10 = "spiffe://example.org/n10"
	)
	update(t, st, func(tx store.Tx) error {
		// Created out of ID order.
		for _, e := range []*store.Entry{
			entry("e5", api, n2, "unix:uid:5"),
			entry("e1", web, n1, "unix:uid:1"),
			entry("e4", web, n2, "unix:uid:4"),
			entry("e2", api, n1, "unix:uid:2"),
			entry("e3", web, n1, "unix:uid:3"),
			entry("e6", web, n10, "unix:uid:6"),
		} {
			if err := tx.CreateEntry(e); err != nil {
				return err
			}
		}
		return nil
	})
	tests := []struct {
		name   string
		filter store.EntryFilter
		want   []string
	}{
		{"all", store.EntryFilter{}, []string{"e1", "e2", "e3", "e4", "e5", "e6"}},
		{"parent", store.EntryFilter{ParentID: n1}, []string{"e1", "e2", "e3"}},
		{"parent with a longer sibling", store.EntryFilter{ParentID: n10}, []string{"e6"}},
		{"spiffe id", store.EntryFilter{SPIFFEID: web}, []string{"e1", "e3", "e4", "e6"}},
		{"parent and spiffe id", store.EntryFilter{ParentID: n2, SPIFFEID: api}, []string{"e5"}},
		{"unknown parent", store.EntryFilter{ParentID: "spiffe://example.org/n3"}, nil},
		{"unknown spiffe id", store.EntryFilter{SPIFFEID: "spiffe://example.org/db"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := listEntryIDs(t, st, tt.filter)
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("ListEntries(%+v) (-want +got):\n%s", tt.filter, diff)
			}
		})
	}
}

func testListNodes(t *testing.T, st store.Store) {
	update(t, st, func(tx store.Tx) error {
		for _, id := range []string{"spiffe://example.org/n2", "spiffe://example.org/n3", "spiffe://example.org/n1"} {
			if err := tx.PutNode(node(id)); err != nil {
				return err
			}
		}
		return tx.DeleteNode("spiffe://example.org/n3")
	})
	var got []*store.Node
	view(t, st, func(tx store.Tx) (err error) {
		got, err = tx.ListNodes()
		return err
	})
	want := []*store.Node{node("spiffe://example.org/n1"), node("spiffe://example.org/n2")}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ListNodes (-want +got):\n%s", diff)
	}
}

func testJoinTokens(t *testing.T, st store.Store) {
	update(t, st, func(tx store.Tx) error {
		for _, h := range []string{"cc", "aa", "bb"} {
			if err := tx.PutJoinToken(joinToken(h)); err != nil {
				return err
			}
		}
		return nil
	})
	err := st.Update(t.Context(), func(tx store.Tx) error { return tx.PutJoinToken(joinToken("aa")) })
	if !errors.Is(err, store.ErrAlreadyExists) {
		t.Errorf("PutJoinToken with a taken hash: got error %v, want ErrAlreadyExists", err)
	}

	view(t, st, func(tx store.Tx) error {
		got, err := tx.GetJoinToken("bb")
		if err != nil {
			return err
		}
		if diff := cmp.Diff(joinToken("bb"), got); diff != "" {
			t.Errorf("GetJoinToken (-want +got):\n%s", diff)
		}
		return nil
	})
	used := joinToken("bb")
	used.UsedAt = t0.Add(time.Minute)
	update(t, st, func(tx store.Tx) error {
		got, err := tx.TakeJoinToken("bb", used.UsedAt)
		if err != nil {
			return err
		}
		if diff := cmp.Diff(used, got); diff != "" {
			t.Errorf("TakeJoinToken (-want +got):\n%s", diff)
		}
		return nil
	})
	err = st.Update(t.Context(), func(tx store.Tx) error { _, err := tx.TakeJoinToken("bb", t0); return err })
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("TakeJoinToken a second time: got error %v, want ErrNotFound", err)
	}
	// A used token is kept, so a second attempt can be told so.
	view(t, st, func(tx store.Tx) error {
		got, err := tx.GetJoinToken("bb")
		if err != nil {
			return err
		}
		if diff := cmp.Diff(used, got); diff != "" {
			t.Errorf("GetJoinToken of a used token (-want +got):\n%s", diff)
		}
		return nil
	})
	err = st.Update(t.Context(), func(tx store.Tx) error { return tx.DeleteJoinToken("bb") })
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteJoinToken of a used token: got error %v, want ErrNotFound", err)
	}

	var got []*store.JoinToken
	view(t, st, func(tx store.Tx) (err error) {
		got, err = tx.ListJoinTokens()
		return err
	})
	if diff := cmp.Diff([]*store.JoinToken{joinToken("aa"), joinToken("cc")}, got); diff != "" {
		t.Errorf("ListJoinTokens after a take (-want +got):\n%s", diff)
	}

	// Revoking deletes an unused token.
	update(t, st, func(tx store.Tx) error { return tx.DeleteJoinToken("cc") })
	err = st.Update(t.Context(), func(tx store.Tx) error { _, err := tx.TakeJoinToken("cc", t0); return err })
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("TakeJoinToken of a revoked token: got error %v, want ErrNotFound", err)
	}

	// Pruning drops the tokens, used or not, that expired before the cut.
	late := joinToken("dd")
	late.ExpiresAt = t0.Add(time.Hour)
	update(t, st, func(tx store.Tx) error { return tx.PutJoinToken(late) })
	var pruned int
	update(t, st, func(tx store.Tx) (err error) {
		pruned, err = tx.PruneJoinTokens(t0.Add(30 * time.Minute))
		return err
	})
	if pruned != 2 { // aa (unused), bb (used)
		t.Errorf("PruneJoinTokens deleted %d, want 2", pruned)
	}
	view(t, st, func(tx store.Tx) error {
		for _, h := range []string{"aa", "bb"} {
			if _, err := tx.GetJoinToken(h); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("GetJoinToken(%s) after pruning: %v, want ErrNotFound", h, err)
			}
		}
		if _, err := tx.GetJoinToken("dd"); err != nil {
			t.Errorf("GetJoinToken of an unexpired token after pruning: %v", err)
		}
		return nil
	})
}

// testEvictNode: eviction removes the node and keeps its record with the
// eviction time; attesting again drops that record; pruning drops records
// of nodes whose SVIDs all expired.
func testEvictNode(t *testing.T, st store.Store) {
	const a, b = "spiffe://example.org/signet/agent/join_token/a", "spiffe://example.org/signet/agent/join_token/b"
	update(t, st, func(tx store.Tx) error {
		for _, id := range []string{a, b} {
			if err := tx.PutNode(node(id)); err != nil {
				return err
			}
		}
		return nil
	})
	evicted := node(a)
	evicted.EvictedAt = t0.Add(time.Minute)
	update(t, st, func(tx store.Tx) error {
		got, err := tx.EvictNode(a, evicted.EvictedAt)
		if err != nil {
			return err
		}
		if diff := cmp.Diff(evicted, got); diff != "" {
			t.Errorf("EvictNode (-want +got):\n%s", diff)
		}
		_, err = tx.EvictNode(b, evicted.EvictedAt)
		return err
	})
	view(t, st, func(tx store.Tx) error {
		if _, err := tx.GetNode(a); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetNode of an evicted node: %v, want ErrNotFound", err)
		}
		got, err := tx.GetEvictedNode(a)
		if err != nil {
			return err
		}
		if diff := cmp.Diff(evicted, got); diff != "" {
			t.Errorf("GetEvictedNode (-want +got):\n%s", diff)
		}
		return nil
	})
	// b attests again: its eviction record goes.
	update(t, st, func(tx store.Tx) error { return tx.PutNode(node(b)) })
	var ids []string
	view(t, st, func(tx store.Tx) error {
		ns, err := tx.ListEvictedNodes()
		for _, n := range ns {
			ids = append(ids, n.SPIFFEID)
		}
		return err
	})
	if diff := cmp.Diff([]string{a}, ids); diff != "" {
		t.Errorf("ListEvictedNodes after b attested again (-want +got):\n%s", diff)
	}
	var pruned int
	update(t, st, func(tx store.Tx) (err error) {
		pruned, err = tx.PruneEvictedNodes(evicted.ExpiresAt.Add(time.Second))
		return err
	})
	if pruned != 1 {
		t.Errorf("PruneEvictedNodes deleted %d, want 1", pruned)
	}
}

// testRecordTooLarge: a record over MaxRecordBytes is refused with
// ErrTooLarge and nothing is written.
func testRecordTooLarge(t *testing.T, st store.Store) {
	big := entry("big", "spiffe://example.org/web", "spiffe://example.org/n1", "unix:path:/"+strings.Repeat("x", store.MaxRecordBytes))
	err := st.Update(t.Context(), func(tx store.Tx) error { return tx.CreateEntry(big) })
	if !errors.Is(err, store.ErrTooLarge) {
		t.Fatalf("CreateEntry of a %d-byte selector: %v, want ErrTooLarge", store.MaxRecordBytes, err)
	}
	view(t, st, func(tx store.Tx) error {
		if _, err := tx.GetEntry("big"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetEntry after a refused CreateEntry: %v, want ErrNotFound", err)
		}
		return nil
	})
}

// testTakeJoinTokenRace is the attack a join token must withstand: many
// agents presenting the same token at once. Exactly one may attest.
func testTakeJoinTokenRace(t *testing.T, st store.Store) {
	const racers = 50
	tests := []struct {
		name string
		run  func(ctx context.Context, fn func(store.Tx) error) error
	}{
		{"Update", st.Update},
		{"Batch", st.Batch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hash := "race-" + tt.name
			update(t, st, func(tx store.Tx) error { return tx.PutJoinToken(joinToken(hash)) })

			start := make(chan struct{})
			errs := make([]error, racers)
			var wg sync.WaitGroup
			for i := range racers {
				wg.Go(func() {
					<-start
					errs[i] = tt.run(t.Context(), func(tx store.Tx) error {
						_, err := tx.TakeJoinToken(hash, t0)
						return err
					})
				})
			}
			close(start)
			wg.Wait()

			winners := 0
			for i, err := range errs {
				switch {
				case err == nil:
					winners++
				case !errors.Is(err, store.ErrNotFound):
					t.Errorf("racer %d: got error %v, want nil or ErrNotFound", i, err)
				}
			}
			if winners != 1 {
				t.Errorf("%d racers took the token, want exactly 1", winners)
			}
		})
	}
}

func testSVIDs(t *testing.T, st store.Store) {
	update(t, st, func(tx store.Tx) error {
		// Serials 5..1: inserted out of order, expiring an hour apart.
		for i := 5; i >= 1; i-- {
			if err := tx.PutSVID(svid(serialN(i), t0.Add(time.Duration(i)*time.Hour))); err != nil {
				return err
			}
		}
		return nil
	})

	t.Run("ForEachSVID order", func(t *testing.T) {
		var got []string
		view(t, st, func(tx store.Tx) error {
			return tx.ForEachSVID(func(r *store.SVIDRecord) error {
				got = append(got, r.Serial)
				return nil
			})
		})
		want := []string{serialN(1), serialN(2), serialN(3), serialN(4), serialN(5)}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("ForEachSVID order (-want +got):\n%s", diff)
		}
	})

	t.Run("ForEachSVID early stop", func(t *testing.T) {
		errStop := errors.New("stop")
		visited := 0
		err := st.View(t.Context(), func(tx store.Tx) error {
			return tx.ForEachSVID(func(r *store.SVIDRecord) error {
				visited++
				if visited == 2 {
					return errStop
				}
				return nil
			})
		})
		if !errors.Is(err, errStop) {
			t.Errorf("got error %v, want the callback's", err)
		}
		if visited != 2 {
			t.Errorf("visited %d records after the callback failed on the 2nd, want 2", visited)
		}
	})

	t.Run("PruneSVIDs", func(t *testing.T) {
		var pruned int
		update(t, st, func(tx store.Tx) (err error) {
			// NotAfter strictly before: serials 1 and 2 go, 3 expires at
			// exactly the cut and stays.
			pruned, err = tx.PruneSVIDs(t0.Add(3 * time.Hour))
			return err
		})
		if pruned != 2 {
			t.Errorf("PruneSVIDs deleted %d, want 2", pruned)
		}
		var got []string
		view(t, st, func(tx store.Tx) error {
			return tx.ForEachSVID(func(r *store.SVIDRecord) error {
				got = append(got, r.Serial)
				return nil
			})
		})
		if diff := cmp.Diff([]string{serialN(3), serialN(4), serialN(5)}, got); diff != "" {
			t.Errorf("SVIDs left after pruning (-want +got):\n%s", diff)
		}
	})
}

// currentSerials lists the serials of ForEachCurrentSVID, sorted.
func currentSerials(t *testing.T, tx store.Tx) []string {
	t.Helper()
	var out []string
	err := tx.ForEachCurrentSVID(func(r *store.SVIDRecord) error {
		out = append(out, r.Serial)
		return nil
	})
	if err != nil {
		t.Fatalf("ForEachCurrentSVID: %v", err)
	}
	slices.Sort(out)
	return out
}

// testCurrentSVIDs: PutSVID keeps the newest SVID (by NotBefore) of each
// entry and node in the current index, whatever order they are recorded
// in; node SVIDs have their own; pruning drops expired ones.
func testCurrentSVIDs(t *testing.T, st store.Store) {
	const n1, n2 = "spiffe://example.org/signet/agent/join_token/n1", "spiffe://example.org/signet/agent/join_token/n2"
	rec := func(serial int, entry, node string, notBefore time.Time) *store.SVIDRecord {
		r := svid(serialN(serial), notBefore.Add(time.Hour))
		r.EntryID, r.NodeID = entry, node
		return r
	}
	update(t, st, func(tx store.Tx) error {
		for _, r := range []*store.SVIDRecord{
			rec(1, "e1", n1, t0),
			rec(2, "e1", n1, t0.Add(30*time.Minute)), // newer: replaces 1
			rec(3, "e1", n1, t0.Add(10*time.Minute)), // recorded late, issued earlier: 2 stays
			rec(4, "e1", n2, t0),                     // same entry, other node
			rec(5, "", n1, t0),                       // node SVID
			rec(6, "e2", n1, t0.Add(-2*time.Hour)),   // expires before t0
		} {
			if err := tx.PutSVID(r); err != nil {
				return err
			}
		}
		return nil
	})
	// Same NotBefore in a later transaction: the last recorded wins.
	update(t, st, func(tx store.Tx) error { return tx.PutSVID(rec(7, "e1", n2, t0)) })
	view(t, st, func(tx store.Tx) error {
		want := []string{serialN(2), serialN(5), serialN(6), serialN(7)}
		if diff := cmp.Diff(want, currentSerials(t, tx)); diff != "" {
			t.Errorf("current SVIDs (-want +got):\n%s", diff)
		}
		return nil
	})
	update(t, st, func(tx store.Tx) error { _, err := tx.PruneSVIDs(t0); return err })
	view(t, st, func(tx store.Tx) error {
		want := []string{serialN(2), serialN(5), serialN(7)}
		if diff := cmp.Diff(want, currentSerials(t, tx)); diff != "" {
			t.Errorf("current SVIDs after pruning what expired (-want +got):\n%s", diff)
		}
		return nil
	})
}

func testMeta(t *testing.T, st store.Store) {
	update(t, st, func(tx store.Tx) error {
		if err := tx.PutMeta("k", []byte("v1")); err != nil {
			return err
		}
		return tx.PutMeta("k", []byte("v2"))
	})
	view(t, st, func(tx store.Tx) error {
		got, err := tx.GetMeta("k")
		if err != nil {
			return err
		}
		if diff := cmp.Diff([]byte("v2"), got); diff != "" {
			t.Errorf("GetMeta after a replace (-want +got):\n%s", diff)
		}
		return nil
	})
}

func testRevision(t *testing.T, st store.Store) {
	var rev int64
	view(t, st, func(tx store.Tx) (err error) {
		rev, err = tx.Revision()
		return err
	})
	if rev != 0 {
		t.Errorf("Revision of a new store = %d, want 0", rev)
	}

	// One per transaction, each exactly one more.
	for want := int64(1); want <= 3; want++ {
		update(t, st, func(tx store.Tx) (err error) {
			rev, err = tx.NextRevision()
			return err
		})
		if rev != want {
			t.Errorf("NextRevision = %d, want %d", rev, want)
		}
	}
	// Twice in one transaction.
	update(t, st, func(tx store.Tx) error {
		for _, want := range []int64{4, 5} {
			got, err := tx.NextRevision()
			if err != nil {
				return err
			}
			if got != want {
				t.Errorf("NextRevision = %d, want %d", got, want)
			}
		}
		return nil
	})

	// Concurrent batches get distinct revisions.
	const writers = 20
	revs := make([]int64, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			err := st.Batch(t.Context(), func(tx store.Tx) (err error) {
				revs[i], err = tx.NextRevision()
				return err
			})
			if err != nil {
				t.Errorf("Batch: %v", err)
			}
		})
	}
	wg.Wait()
	slices.Sort(revs)
	var want []int64
	for r := int64(6); r < 6+writers; r++ {
		want = append(want, r)
	}
	if diff := cmp.Diff(want, revs); diff != "" {
		t.Errorf("revisions of concurrent batches (-want +got):\n%s", diff)
	}
	view(t, st, func(tx store.Tx) (err error) {
		rev, err = tx.Revision()
		return err
	})
	if rev != 5+writers {
		t.Errorf("Revision = %d, want %d", rev, 5+writers)
	}
}

// writeEverything writes one record of each kind and takes a revision.
func writeEverything(tx store.Tx) error {
	if _, err := tx.NextRevision(); err != nil {
		return err
	}
	if err := tx.PutAuthority(authority("a1", t0)); err != nil {
		return err
	}
	if err := tx.CreateEntry(entry("e1", "spiffe://example.org/web", "spiffe://example.org/n1", "unix:uid:1")); err != nil {
		return err
	}
	if err := tx.PutNode(node("spiffe://example.org/n1")); err != nil {
		return err
	}
	if err := tx.PutJoinToken(joinToken("aa")); err != nil {
		return err
	}
	if err := tx.PutSVID(svid(serialN(1), t0)); err != nil {
		return err
	}
	if err := tx.AppendAudit(auditRecord(1, "")); err != nil {
		return err
	}
	return tx.PutMeta("k", []byte("v"))
}

// checkEmpty fails unless st holds nothing writeEverything writes.
func checkEmpty(t *testing.T, st store.Store) {
	t.Helper()
	view(t, st, func(tx store.Tx) error {
		lookups := []struct {
			name string
			err  error
		}{
			{"authority", second(tx.GetAuthority("a1"))},
			{"entry", second(tx.GetEntry("e1"))},
			{"node", second(tx.GetNode("spiffe://example.org/n1"))},
			{"svid", second(tx.GetSVID(serialN(1)))},
			{"meta", second(tx.GetMeta("k"))},
		}
		for _, l := range lookups {
			if !errors.Is(l.err, store.ErrNotFound) {
				t.Errorf("%s: got error %v, want ErrNotFound", l.name, l.err)
			}
		}
		if cur := currentSerials(t, tx); len(cur) != 0 {
			t.Errorf("current SVIDs %v, want none", cur)
		}
		if ts, err := tx.ListJoinTokens(); err != nil || len(ts) != 0 {
			t.Errorf("ListJoinTokens = %d tokens, %v; want none", len(ts), err)
		}
		if es, err := tx.ListEntries(store.EntryFilter{ParentID: "spiffe://example.org/n1"}); err != nil || len(es) != 0 {
			t.Errorf("ListEntries by parent = %d entries, %v; want none", len(es), err)
		}
		if rev, err := tx.Revision(); err != nil || rev != 0 {
			t.Errorf("Revision = %d, %v; want 0", rev, err)
		}
		if seq, hash, err := tx.AuditHead(); err != nil || seq != 0 || hash != "" {
			t.Errorf("AuditHead = %d, %q, %v; want 0, \"\"", seq, hash, err)
		}
		if seqs := auditSeqs(t, tx, 0); len(seqs) != 0 {
			t.Errorf("audit records %v, want none", seqs)
		}
		return nil
	})
	// The entry's SPIFFE ID, parent and selectors are free: creating them
	// again works (and is rolled back, leaving st empty).
	errProbe := errors.New("probe")
	err := st.Update(t.Context(), func(tx store.Tx) error {
		if err := tx.CreateEntry(entry("e2", "spiffe://example.org/web", "spiffe://example.org/n1", "unix:uid:1")); err != nil {
			return err
		}
		return errProbe
	})
	if !errors.Is(err, errProbe) {
		t.Errorf("creating a rolled back entry again: %v", err)
	}
}

func second[T any](_ T, err error) error { return err }

func testRollbackOnError(t *testing.T, st store.Store) {
	ch, cancel := st.Subscribe()
	defer cancel()
	errBoom := errors.New("boom")
	err := st.Update(t.Context(), func(tx store.Tx) error {
		if err := writeEverything(tx); err != nil {
			return err
		}
		return errBoom
	})
	if err != errBoom {
		t.Errorf("Update returned %v, want fn's error as is", err)
	}
	select {
	case <-ch:
		t.Errorf("Subscribe fired after a rolled back transaction")
	default:
	}
	checkEmpty(t, st)
}

func testPanicRollsBack(t *testing.T, st store.Store) {
	tests := []struct {
		name string
		run  func(ctx context.Context, fn func(store.Tx) error) error
	}{
		{"Update", st.Update},
		{"Batch", st.Batch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recovered := func() (r any) {
				defer func() { r = recover() }()
				_ = tt.run(t.Context(), func(tx store.Tx) error {
					if err := writeEverything(tx); err != nil {
						return err
					}
					panic("boom")
				})
				return nil
			}()
			if recovered == nil {
				t.Fatalf("%s did not propagate fn's panic", tt.name)
			}
			// The store is not left locked, and nothing was written.
			checkEmpty(t, st)
		})
	}
}

func testReadOnlyView(t *testing.T, st store.Store) {
	update(t, st, writeEverything)
	writes := []struct {
		name string
		op   func(tx store.Tx) error
	}{
		{"PutAuthority", func(tx store.Tx) error { return tx.PutAuthority(authority("a2", t0)) }},
		{"CreateEntry", func(tx store.Tx) error {
			return tx.CreateEntry(entry("e2", "spiffe://example.org/x", "spiffe://example.org/n1", "unix:uid:2"))
		}},
		{"UpdateEntry", func(tx store.Tx) error {
			return tx.UpdateEntry(entry("e1", "spiffe://example.org/web", "spiffe://example.org/n1", "unix:uid:3"))
		}},
		{"DeleteEntry", func(tx store.Tx) error { return tx.DeleteEntry("e1") }},
		{"PutNode", func(tx store.Tx) error { return tx.PutNode(node("spiffe://example.org/n2")) }},
		{"DeleteNode", func(tx store.Tx) error { return tx.DeleteNode("spiffe://example.org/n1") }},
		{"PutJoinToken", func(tx store.Tx) error { return tx.PutJoinToken(joinToken("bb")) }},
		{"TakeJoinToken", func(tx store.Tx) error { _, err := tx.TakeJoinToken("aa", t0); return err }},
		{"PutSVID", func(tx store.Tx) error { return tx.PutSVID(svid(serialN(2), t0)) }},
		{"PruneSVIDs", func(tx store.Tx) error { _, err := tx.PruneSVIDs(t0.Add(time.Hour)); return err }},
		{"NextRevision", func(tx store.Tx) error { _, err := tx.NextRevision(); return err }},
		{"PutMeta", func(tx store.Tx) error { return tx.PutMeta("k", []byte("w")) }},
		{"AppendAudit", func(tx store.Tx) error { return tx.AppendAudit(auditRecord(2, auditHash(1))) }},
		{"DeleteAuditBefore", func(tx store.Tx) error { _, err := tx.DeleteAuditBefore(2); return err }},
	}
	for _, w := range writes {
		t.Run(w.name, func(t *testing.T) {
			err := st.View(t.Context(), w.op)
			if !errors.Is(err, store.ErrReadOnly) {
				t.Errorf("got error %v, want ErrReadOnly", err)
			}
		})
	}
	// Nothing changed: the join token is still there to take.
	update(t, st, func(tx store.Tx) error { _, err := tx.TakeJoinToken("aa", t0); return err })
}

func testBatchConcurrent(t *testing.T, st store.Store) {
	const writers = 100
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			<-start
			err := st.Batch(t.Context(), func(tx store.Tx) error {
				return tx.PutSVID(svid(serialN(i), t0))
			})
			if err != nil {
				t.Errorf("Batch %d: %v", i, err)
			}
		})
	}
	close(start)
	wg.Wait()
	got := 0
	view(t, st, func(tx store.Tx) error {
		return tx.ForEachSVID(func(*store.SVIDRecord) error { got++; return nil })
	})
	if got != writers {
		t.Errorf("%d SVIDs stored, want %d", got, writers)
	}
}

// testBatchFailureIsolated checks that a failing fn loses its own writes
// and nobody else's. An Update holds the store while the callers line up,
// so that backends with group commit are likely to put them in one group.
func testBatchFailureIsolated(t *testing.T, st store.Store) {
	const (
		writers = 20
		failing = 7
	)
	errBoom := errors.New("boom")
	started := make(chan struct{}, writers)
	release := make(chan struct{})
	holdErr := make(chan error, 1)
	go func() {
		holdErr <- st.Update(t.Context(), func(tx store.Tx) error {
			<-release
			return nil
		})
	}()

	errs := make([]error, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			started <- struct{}{}
			errs[i] = st.Batch(t.Context(), func(tx store.Tx) error {
				if err := tx.PutSVID(svid(serialN(i), t0)); err != nil {
					return err
				}
				if i == failing {
					return fmt.Errorf("writer %d: %w", i, errBoom)
				}
				return nil
			})
		})
	}
	for range writers {
		<-started
	}
	close(release)
	wg.Wait()
	if err := <-holdErr; err != nil {
		t.Fatalf("holding Update: %v", err)
	}

	for i, err := range errs {
		if i == failing {
			if !errors.Is(err, errBoom) {
				t.Errorf("failing writer got error %v, want its own", err)
			}
		} else if err != nil {
			t.Errorf("writer %d: got error %v, want nil", i, err)
		}
	}
	view(t, st, func(tx store.Tx) error {
		for i := range writers {
			_, err := tx.GetSVID(serialN(i))
			switch {
			case i == failing && !errors.Is(err, store.ErrNotFound):
				t.Errorf("the failing writer's SVID: got error %v, want ErrNotFound", err)
			case i != failing && err != nil:
				t.Errorf("writer %d's SVID: %v", i, err)
			}
		}
		return nil
	})
}

func testContextCanceled(t *testing.T, st store.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	tests := []struct {
		name string
		run  func(ctx context.Context, fn func(store.Tx) error) error
	}{
		{"View", st.View},
		{"Update", st.Update},
		{"Batch", st.Batch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ran := false
			err := tt.run(ctx, func(tx store.Tx) error {
				ran = true
				return nil
			})
			if !errors.Is(err, context.Canceled) {
				t.Errorf("got error %v, want context.Canceled", err)
			}
			if ran {
				t.Errorf("fn ran under a canceled context")
			}
		})
	}
}

func testSubscribe(t *testing.T, st store.Store) {
	ch, cancel := st.Subscribe()
	defer cancel()
	quiet := func(after string) {
		t.Helper()
		select {
		case <-ch:
			t.Errorf("Subscribe fired after %s", after)
		default:
		}
	}
	fired := func(after string) {
		t.Helper()
		select {
		case _, ok := <-ch:
			if !ok {
				t.Fatalf("Subscribe channel closed after %s", after)
			}
		case <-time.After(waitTimeout):
			t.Fatalf("Subscribe did not fire within %v after %s", waitTimeout, after)
		}
	}

	quiet("nothing")
	view(t, st, func(tx store.Tx) error { _, err := tx.Revision(); return err })
	quiet("a View")
	update(t, st, func(tx store.Tx) error { return tx.PutSVID(svid(serialN(1), t0)) })
	quiet("an Update without NextRevision")

	update(t, st, func(tx store.Tx) error { _, err := tx.NextRevision(); return err })
	fired("an Update with NextRevision")
	quiet("one Update, read once")

	err := st.Batch(t.Context(), func(tx store.Tx) error { _, err := tx.NextRevision(); return err })
	if err != nil {
		t.Fatalf("Batch: %v", err)
	}
	fired("a Batch with NextRevision")

	// Two commits while nobody reads coalesce into one value.
	for range 2 {
		update(t, st, func(tx store.Tx) error { _, err := tx.NextRevision(); return err })
	}
	fired("two Updates with NextRevision")
	quiet("two Updates, read once")

	// Every subscriber is told.
	ch2, cancel2 := st.Subscribe()
	update(t, st, func(tx store.Tx) error { _, err := tx.NextRevision(); return err })
	fired("an Update, first subscriber")
	select {
	case <-ch2:
	case <-time.After(waitTimeout):
		t.Errorf("second subscriber not told within %v", waitTimeout)
	}

	// cancel closes the channel, and may be called again.
	cancel2()
	cancel2()
	select {
	case _, ok := <-ch2:
		if ok {
			t.Errorf("received a value after cancel, want a closed channel")
		}
	case <-time.After(waitTimeout):
		t.Errorf("channel not closed within %v of cancel", waitTimeout)
	}
}

func testClose(t *testing.T, st store.Store) {
	ch, cancel := st.Subscribe()
	defer cancel()
	auditCh, auditCancel := st.SubscribeAudit()
	defer auditCancel()
	changesClosed, changesCancel := st.SubscribeChanges(func(store.Change) {})
	defer changesCancel()
	if err := st.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Errorf("second Close: got error %v, want nil", err)
	}
	select {
	case _, ok := <-ch:
		if ok {
			t.Errorf("received a value after Close, want a closed channel")
		}
	case <-time.After(waitTimeout):
		t.Errorf("Subscribe channel not closed within %v of Close", waitTimeout)
	}
	select {
	case _, ok := <-auditCh:
		if ok {
			t.Errorf("SubscribeAudit: received a value after Close, want a closed channel")
		}
	case <-time.After(waitTimeout):
		t.Errorf("SubscribeAudit channel not closed within %v of Close", waitTimeout)
	}
	select {
	case <-changesClosed:
	case <-time.After(waitTimeout):
		t.Errorf("SubscribeChanges channel not closed within %v of Close", waitTimeout)
	}
	after, cancelAfter := st.Subscribe()
	defer cancelAfter()
	select {
	case _, ok := <-after:
		if ok {
			t.Errorf("Subscribe after Close: received a value, want a closed channel")
		}
	case <-time.After(waitTimeout):
		t.Errorf("Subscribe after Close: channel not closed within %v", waitTimeout)
	}

	tests := []struct {
		name string
		run  func(ctx context.Context, fn func(store.Tx) error) error
	}{
		{"View", st.View},
		{"Update", st.Update},
		{"Batch", st.Batch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.run(t.Context(), func(store.Tx) error { return nil })
			if !errors.Is(err, store.ErrClosed) {
				t.Errorf("after Close: got error %v, want ErrClosed", err)
			}
		})
	}
}
