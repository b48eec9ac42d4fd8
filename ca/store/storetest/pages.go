package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/signet-mesh/signet/ca/store"
)

// testPages: a listing read page by page from each page's last key
// (EntryFilter.After and Limit, ListNodesAfter, ListEvictedNodesAfter,
// ForEachSVIDFrom) gives what the whole listing gives, in order, with
// every filter; and entries created and deleted between pages shift
// nothing: every entry that exists throughout is read exactly once.
func testPages(t *testing.T, st store.Store) {
	const (
		n1 = "spiffe://example.org/signet/agent/join_token/n1"
		n2 = "spiffe://example.org/signet/agent/join_token/n2"
	)
	update(t, st, func(tx store.Tx) error {
		for i := range 23 {
			parent, id := n1, fmt.Sprintf("spiffe://example.org/w%d", i%4)
			if i%3 == 0 {
				parent = n2
			}
			if err := tx.CreateEntry(entry(fmt.Sprintf("e%02d", i), id, parent, fmt.Sprintf("unix:uid:%d", i))); err != nil {
				return err
			}
		}
		for i := range 9 {
			if err := tx.PutNode(node(fmt.Sprintf("spiffe://example.org/signet/agent/join_token/n%02d", i))); err != nil {
				return err
			}
		}
		for i := range 4 {
			if _, err := tx.EvictNode(fmt.Sprintf("spiffe://example.org/signet/agent/join_token/n%02d", 2*i), t0); err != nil {
				return err
			}
		}
		return nil
	})
	for _, f := range []store.EntryFilter{{}, {ParentID: n1}, {ParentID: n2}, {SPIFFEID: "spiffe://example.org/w1"}, {ParentID: n1, SPIFFEID: "spiffe://example.org/w2"}} {
		for _, limit := range []int{1, 4, 100} {
			t.Run(fmt.Sprintf("entries %+v by %d", f, limit), func(t *testing.T) {
				want := listEntryIDs(t, st, f)
				var got []string
				paged := f
				paged.Limit = limit
				for pages := 0; ; pages++ {
					page := listEntryIDs(t, st, paged)
					if len(page) > limit {
						t.Fatalf("a page of %d entries, the limit is %d", len(page), limit)
					}
					got = append(got, page...)
					if len(page) < limit || pages > 30 {
						break
					}
					paged.After = page[len(page)-1]
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("paged listing (-whole +paged):\n%s", diff)
				}
			})
		}
	}
	for _, evicted := range []bool{false, true} {
		t.Run(fmt.Sprintf("nodes, evicted %v", evicted), func(t *testing.T) {
			list := func(tx store.Tx, after string, limit int) ([]*store.Node, error) {
				if evicted {
					if after == "" && limit == 0 {
						return tx.ListEvictedNodes()
					}
					return tx.ListEvictedNodesAfter(after, limit)
				}
				if after == "" && limit == 0 {
					return tx.ListNodes()
				}
				return tx.ListNodesAfter(after, limit)
			}
			var want, got []string
			view(t, st, func(tx store.Tx) error {
				all, err := list(tx, "", 0)
				if err != nil {
					return err
				}
				for _, n := range all {
					want = append(want, n.SPIFFEID)
				}
				after := ""
				for {
					page, err := list(tx, after, 2)
					if err != nil || len(page) == 0 {
						return err
					}
					for _, n := range page {
						got = append(got, n.SPIFFEID)
					}
					after = page[len(page)-1].SPIFFEID
				}
			})
			if len(want) == 0 {
				t.Fatal("no nodes listed")
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("paged listing (-whole +paged):\n%s", diff)
			}
		})
	}
	t.Run("svids from an expiry", func(t *testing.T) {
		update(t, st, func(tx store.Tx) error {
			for i := range 10 {
				if err := tx.PutSVID(svid(serialN(i), t0.Add(time.Duration(i/2)*time.Minute))); err != nil {
					return err
				}
			}
			return nil
		})
		var got []string
		view(t, st, func(tx store.Tx) error {
			return tx.ForEachSVIDFrom(t0.Add(3*time.Minute), func(r *store.SVIDRecord) error {
				got = append(got, r.Serial)
				return nil
			})
		})
		if diff := cmp.Diff([]string{serialN(6), serialN(7), serialN(8), serialN(9)}, got); diff != "" {
			t.Errorf("SVIDs from the 4th minute (-want +got):\n%s", diff)
		}
	})
	t.Run("entries come and go between pages", func(t *testing.T) {
		want := listEntryIDs(t, st, store.EntryFilter{ParentID: n1})
		var got []string
		paged := store.EntryFilter{ParentID: n1, Limit: 3}
		created := 0
		for pages := 0; pages < 30; pages++ {
			page := listEntryIDs(t, st, paged)
			got = append(got, page...)
			if len(page) < paged.Limit {
				break
			}
			paged.After = page[len(page)-1]
			// Before and after the page's end: a new entry, and one of
			// those created earlier deleted.
			update(t, st, func(tx store.Tx) error {
				created++
				for _, id := range []string{fmt.Sprintf("a%02d", created), fmt.Sprintf("z%02d", created)} {
					if err := tx.CreateEntry(entry(id, "spiffe://example.org/churn/"+id, n1)); err != nil {
						return err
					}
				}
				if created > 1 {
					return tx.DeleteEntry(fmt.Sprintf("a%02d", created-1))
				}
				return nil
			})
		}
		var stable []string
		for _, id := range got {
			if id[0] == 'e' {
				stable = append(stable, id)
			}
		}
		if diff := cmp.Diff(want, stable); diff != "" {
			t.Errorf("entries that existed throughout (-want +paged):\n%s", diff)
		}
		seen := map[string]bool{}
		for _, id := range got {
			if seen[id] {
				t.Errorf("entry %s listed twice", id)
			}
			seen[id] = true
		}
	})
}
