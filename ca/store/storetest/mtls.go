package storetest

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/signet-mesh/signet/ca/store"
)

func mtlsPolicy(id, spiffeID, mode string) *store.MTLSPolicy {
	return &store.MTLSPolicy{
		ID:          id,
		SPIFFEID:    spiffeID,
		Port:        8443,
		Mode:        mode,
		ExemptPorts: []uint32{15021, 15090},
		DryRun:      true,
		Revision:    4,
		UpdatedAt:   t0,
	}
}

// testMTLSPolicies covers the policy Tx methods: round trip, replace by
// ID, list order, not found, delete, and refusal in a View.
func testMTLSPolicies(t *testing.T, st store.Store) {
	update(t, st, func(tx store.Tx) error {
		for _, p := range []*store.MTLSPolicy{
			mtlsPolicy("mp-b", "spiffe://example.org/b", "STRICT"),
			mtlsPolicy("mp-a", "spiffe://example.org/a", "PERMISSIVE"),
			{ID: "mp-c", Prefix: "spiffe://example.org/ns/", Mode: "DISABLE", Revision: 5, UpdatedAt: t0},
		} {
			if err := tx.PutMTLSPolicy(p); err != nil {
				return err
			}
		}
		return nil
	})
	// Put replaces the policy with the same ID.
	replaced := mtlsPolicy("mp-b", "spiffe://example.org/b", "DISABLE")
	replaced.ExemptPorts, replaced.DryRun, replaced.Revision = nil, false, 6
	update(t, st, func(tx store.Tx) error { return tx.PutMTLSPolicy(replaced) })

	view(t, st, func(tx store.Tx) error {
		got, err := tx.GetMTLSPolicy("mp-a")
		if err != nil {
			return err
		}
		if diff := cmp.Diff(mtlsPolicy("mp-a", "spiffe://example.org/a", "PERMISSIVE"), got); diff != "" {
			t.Errorf("GetMTLSPolicy (-want +got):\n%s", diff)
		}
		all, err := tx.ListMTLSPolicies()
		if err != nil {
			return err
		}
		var ids []string
		for _, p := range all {
			ids = append(ids, p.ID)
		}
		if diff := cmp.Diff([]string{"mp-a", "mp-b", "mp-c"}, ids); diff != "" {
			t.Errorf("ListMTLSPolicies order (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(replaced, all[1]); diff != "" {
			t.Errorf("replaced policy (-want +got):\n%s", diff)
		}
		if _, err := tx.GetMTLSPolicy("mp-x"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetMTLSPolicy of an unknown id: %v, want ErrNotFound", err)
		}
		if err := tx.PutMTLSPolicy(mtlsPolicy("mp-d", "", "STRICT")); !errors.Is(err, store.ErrReadOnly) {
			t.Errorf("PutMTLSPolicy in a View: %v, want ErrReadOnly", err)
		}
		if err := tx.DeleteMTLSPolicy("mp-a"); !errors.Is(err, store.ErrReadOnly) {
			t.Errorf("DeleteMTLSPolicy in a View: %v, want ErrReadOnly", err)
		}
		return nil
	})

	update(t, st, func(tx store.Tx) error { return tx.DeleteMTLSPolicy("mp-a") })
	err := st.Update(t.Context(), func(tx store.Tx) error { return tx.DeleteMTLSPolicy("mp-a") })
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deleting a deleted policy: %v, want ErrNotFound", err)
	}
	// A failed transaction leaves the policies as they were.
	errBoom := errors.New("boom")
	err = st.Update(t.Context(), func(tx store.Tx) error {
		if err := tx.DeleteMTLSPolicy("mp-b"); err != nil {
			return err
		}
		return errBoom
	})
	if !errors.Is(err, errBoom) {
		t.Fatalf("Update: %v", err)
	}
	view(t, st, func(tx store.Tx) error {
		all, err := tx.ListMTLSPolicies()
		if len(all) != 2 {
			t.Errorf("ListMTLSPolicies after delete and rollback: %d policies, want 2", len(all))
		}
		return err
	})
}
