package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/signet-mesh/signet/ca/store"
)

// TestSVIDIndexPagesFull: the SVID index, one record per certificate ever
// issued, is written as agents mint (batches of workload SVIDs of one TTL,
// node SVIDs of another), and its pages stay nearly full, so the store
// file, and the CA's mapped memory, are not twice the records' size.
func TestSVIDIndexPagesFull(t *testing.T) {
	st := openBolt(t)
	ctx := context.Background()
	const batches, perBatch = 400, 10
	for i := range batches {
		now := t0.Add(time.Duration(i) * time.Second)
		err := st.Update(ctx, func(tx store.Tx) error {
			for j := range perBatch {
				r := &store.SVIDRecord{Serial: fmt.Sprintf("%032x", i*perBatch+j), SPIFFEID: fmt.Sprintf("spiffe://example.org/ns/default/sa/w%d", j),
					NodeID: fmt.Sprintf("spiffe://example.org/signet/agent/join_token/node-%05d", i), EntryID: fmt.Sprintf("0190e6c8-0000-7000-8000-%012d", i*perBatch+j),
					AuthorityID: "7cf32b56e6b2158d", NotBefore: now, NotAfter: now.Add(time.Hour)}
				if err := tx.PutSVID(r); err != nil {
					return err
				}
			}
			// Every tenth batch, a node SVID of a longer TTL: a second
			// point of the index where issuance appends.
			if i%10 == 0 {
				return tx.PutSVID(&store.SVIDRecord{Serial: fmt.Sprintf("n%031x", i), SPIFFEID: fmt.Sprintf("spiffe://example.org/signet/agent/join_token/node-%05d", i),
					NodeID: fmt.Sprintf("spiffe://example.org/signet/agent/join_token/node-%05d", i), AuthorityID: "7cf32b56e6b2158d", NotBefore: now, NotAfter: now.Add(24 * time.Hour)})
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	fill, pages, err := st.BucketFill("svids")
	if err != nil {
		t.Fatal(err)
	}
	if fill < 0.85 {
		t.Errorf("the SVID index's %d leaf pages are %.0f%% full, want at least 85%%", pages, 100*fill)
	}
	var n int
	err = st.View(ctx, func(tx store.Tx) error {
		return tx.ForEachSVID(func(*store.SVIDRecord) error { n++; return nil })
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := batches*perBatch + batches/10; n != want {
		t.Errorf("the index holds %d SVIDs, want %d", n, want)
	}
}
