package store_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.etcd.io/bbolt"

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

// TestMigrateCurrentSVIDCopies: a version 4 file, as signet wrote it until
// the current index pointed at the SVID index, holds a copy of each current
// record; opening it replaces the copies with pointers, the same SVIDs
// stay current, and pruning still drops them with their records.
func TestMigrateCurrentSVIDCopies(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v4.db")
	st, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rec := func(serial int, entry, node string, notBefore time.Time) *store.SVIDRecord {
		return &store.SVIDRecord{Serial: fmt.Sprintf("%032x", serial), SPIFFEID: "spiffe://example.org/w", EntryID: entry, NodeID: node,
			AuthorityID: "i1", NotBefore: notBefore, NotAfter: notBefore.Add(time.Hour)}
	}
	all := []*store.SVIDRecord{
		rec(1, "e1", "n1", t0), rec(2, "e1", "n1", t0.Add(time.Minute)), rec(3, "e1", "n1", t0.Add(-time.Minute)),
		rec(4, "e2", "n1", t0), rec(5, "", "n1", t0), rec(6, "e3", "n2", t0.Add(-2*time.Hour)),
	}
	err = st.Update(context.Background(), func(tx store.Tx) error {
		for _, r := range all {
			if err := tx.PutSVID(r); err != nil {
				return err
			}
		}
		return nil
	})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}

	// Write the file back as version 4 did: each current value is the
	// record's NotBefore and its JSON.
	bySerial := map[string]*store.SVIDRecord{}
	for _, r := range all {
		bySerial[r.Serial] = r
	}
	current := map[string]*store.SVIDRecord{}
	for _, s := range []int{2, 4, 5, 6} {
		r := all[s-1]
		current[r.EntryID+"\x00"+r.NodeID] = r
	}
	rawUpdate(t, path, func(tx *bbolt.Tx) error {
		if err := tx.Bucket([]byte("meta")).Put([]byte(store.MetaSchemaVersionKey), be64(4)); err != nil {
			return err
		}
		b := tx.Bucket([]byte("svids_current"))
		for k, r := range current {
			data, err := store.EncodeRecord(r)
			if err != nil {
				return err
			}
			if err := b.Put([]byte(k), append(be64(uint64(r.NotBefore.UnixNano())), data...)); err != nil {
				return err
			}
		}
		return nil
	})

	st, err = store.Open(path, store.Options{})
	if err != nil {
		t.Fatalf("opening a version 4 store: %v", err)
	}
	defer func() {
		st.Close()
		re, err := store.Open(path, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer re.Close()
		if err := re.Check(); err != nil {
			t.Errorf("store left inconsistent: %v", err)
		}
	}()
	currentSerials := func() []string {
		var out []string
		err := st.View(context.Background(), func(tx store.Tx) error {
			return tx.ForEachCurrentSVID(func(r *store.SVIDRecord) error {
				if diff := cmp.Diff(bySerial[r.Serial], r); diff != "" {
					t.Errorf("current SVID %s (-want +got):\n%s", r.Serial, diff)
				}
				out = append(out, r.Serial[31:])
				return nil
			})
		})
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(out)
		return out
	}
	if diff := cmp.Diff([]string{"2", "4", "5", "6"}, currentSerials()); diff != "" {
		t.Errorf("current SVIDs after migration (-want +got):\n%s", diff)
	}
	if err := st.Update(context.Background(), func(tx store.Tx) error { _, err := tx.PruneSVIDs(t0); return err }); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"2", "4", "5"}, currentSerials()); diff != "" {
		t.Errorf("current SVIDs after pruning what expired (-want +got):\n%s", diff)
	}
}

// TestSVIDRecordBytes: an issuance's SVID index record takes at most
// half the bytes of the JSON that signet stored until schema 6, for a
// workload SVID and a node SVID alike, and the index of 4,000 SVIDs (keys
// and bbolt's own bytes counted) at most half of its leaf pages in
// JSON.
func TestSVIDRecordBytes(t *testing.T) {
	workload := issuedSVID(42)
	node := &store.SVIDRecord{Serial: workload.Serial, SPIFFEID: workload.NodeID, NodeID: workload.NodeID,
		AuthorityID: workload.AuthorityID, NotBefore: workload.NotBefore, NotAfter: workload.NotBefore.Add(24 * time.Hour)}
	for name, r := range map[string]*store.SVIDRecord{"workload": workload, "node": node} {
		old, err := store.EncodeRecord(r)
		if err != nil {
			t.Fatal(err)
		}
		now := store.EncodeSVID(r)
		t.Logf("%s SVID: %d bytes, %d in JSON", name, len(now), len(old))
		if 2*len(now) > len(old) {
			t.Errorf("a %s SVID's record takes %d bytes, want at most half the %d of its JSON", name, len(now), len(old))
		}
	}

	// The whole index: the records as PutSVID stores them, and the same
	// keys with JSON values appended as PutSVID appends, pages as full.
	path := filepath.Join(t.TempDir(), "signet.db")
	st, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 4000
	var recs []*store.SVIDRecord
	err = st.Update(context.Background(), func(tx store.Tx) error {
		for i := range n {
			recs = append(recs, issuedSVID(i))
			if err := tx.PutSVID(recs[i]); err != nil {
				return err
			}
		}
		return nil
	})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	var keys [][]byte
	binPages := leafPages(t, path, func(b *bbolt.Bucket) error {
		return b.ForEach(func(k, _ []byte) error { keys = append(keys, slices.Clone(k)); return nil })
	})
	jsonPages := leafPages(t, filepath.Join(t.TempDir(), "json.db"), func(b *bbolt.Bucket) error {
		b.FillPercent = 1
		for i, k := range keys {
			data, err := store.EncodeRecord(recs[i]) // keys are in issuance order
			if err != nil {
				return err
			}
			if err := b.Put(k, data); err != nil {
				return err
			}
		}
		return nil
	})
	t.Logf("%d SVIDs: %d leaf pages (%d bytes an SVID), %d in JSON (%d bytes an SVID)", n, binPages, binPages*4096/n, jsonPages, jsonPages*4096/n)
	if 2*binPages > jsonPages {
		t.Errorf("the index of %d SVIDs takes %d leaf pages, want at most half the %d in JSON", n, binPages, jsonPages)
	}
}

// leafPages runs fn on the bucket svids of the bbolt file at path
// (creating both if need be) and returns how many leaf pages it has then.
func leafPages(t *testing.T, path string, fn func(b *bbolt.Bucket) error) int {
	t.Helper()
	var pages int
	rawUpdate(t, path, func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte("svids"))
		if err != nil {
			return err
		}
		return fn(b)
	})
	rawUpdate(t, path, func(tx *bbolt.Tx) error {
		s := tx.Bucket([]byte("svids")).Stats()
		pages = s.LeafPageN + s.LeafOverflowN
		return nil
	})
	return pages
}
