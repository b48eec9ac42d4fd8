package store_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.etcd.io/bbolt"

	"github.com/signet-mesh/signet/ca/store"
)

// svidRecordCases are records of every shape the encoding distinguishes:
// strings that pack (hex, UUIDs) and strings that look like them but do
// not, SPIFFE IDs that share all, part or none of the node's ID, empty
// fields and zero, far and sub-second times.
func svidRecordCases() map[string]*store.SVIDRecord {
	nb := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	node := &store.SVIDRecord{Serial: fmt.Sprintf("%032x", 7), SPIFFEID: "spiffe://example.org/signet/agent/join_token/n1",
		NodeID: "spiffe://example.org/signet/agent/join_token/n1", AuthorityID: "7cf32b56e6b2158d", NotBefore: nb, NotAfter: nb.Add(24 * time.Hour)}
	with := func(r *store.SVIDRecord, f func(r *store.SVIDRecord)) *store.SVIDRecord {
		c := *r
		f(&c)
		return &c
	}
	return map[string]*store.SVIDRecord{
		"workload":                issuedSVID(42),
		"node, no entry":          node,
		"zero":                    {},
		"zero times":              with(issuedSVID(1), func(r *store.SVIDRecord) { r.NotBefore, r.NotAfter = time.Time{}, time.Time{} }),
		"non-hex serial":          with(node, func(r *store.SVIDRecord) { r.Serial = "n000000000000000000000000000002a" }),
		"upper-case hex serial":   with(node, func(r *store.SVIDRecord) { r.Serial = "0A1B" }),
		"odd-length hex serial":   with(node, func(r *store.SVIDRecord) { r.Serial = "abc" }),
		"upper-case UUID entry":   with(issuedSVID(3), func(r *store.SVIDRecord) { r.EntryID = strings.ToUpper(r.EntryID) }),
		"UUID with a dash moved":  with(issuedSVID(3), func(r *store.SVIDRecord) { r.EntryID = "0190e6c80-000-7000-8000-000000000042" }),
		"hex entry ID":            with(issuedSVID(3), func(r *store.SVIDRecord) { r.EntryID = "00ff" }),
		"name entry ID":           with(issuedSVID(3), func(r *store.SVIDRecord) { r.EntryID = "k8s/ns/default/sa/web" }),
		"non-hex authority":       with(node, func(r *store.SVIDRecord) { r.AuthorityID = "int-1" }),
		"SPIFFE ID a prefix":      with(node, func(r *store.SVIDRecord) { r.SPIFFEID = "spiffe://example.org/signet" }),
		"node ID a prefix":        with(node, func(r *store.SVIDRecord) { r.SPIFFEID = r.NodeID + "/ab" }),
		"no node":                 with(issuedSVID(5), func(r *store.SVIDRecord) { r.NodeID = "" }),
		"no SPIFFE ID":            with(issuedSVID(5), func(r *store.SVIDRecord) { r.SPIFFEID = "" }),
		"bytes JSON would mangle": with(issuedSVID(6), func(r *store.SVIDRecord) { r.SPIFFEID = "spiffe://example.org/\x00\"\\<>\xff\u2028" }),
		"long strings":            with(issuedSVID(7), func(r *store.SVIDRecord) { r.SPIFFEID = "spiffe://example.org/" + strings.Repeat("x", 300) }),
		"nanoseconds, other zone": with(issuedSVID(8), func(r *store.SVIDRecord) {
			r.NotBefore, r.NotAfter = t0, t0.Add(time.Hour+1).In(time.FixedZone("x", 3600))
		}),
		"expires before valid":    with(issuedSVID(9), func(r *store.SVIDRecord) { r.NotAfter = r.NotBefore.Add(-time.Hour - time.Nanosecond) }),
		"before 1970, after 9999": with(issuedSVID(10), func(r *store.SVIDRecord) { r.NotBefore, r.NotAfter = time.Unix(-1e12, 999999999), time.Unix(1e12, 1) }),
		"TTL past 64 bits":        with(issuedSVID(11), func(r *store.SVIDRecord) { r.NotBefore, r.NotAfter = time.Unix(-1<<62, 0), time.Unix(1<<62, 0) }),
	}
}

// TestSVIDRecordRoundTrip: every field of an SVID index record reads back
// as written, in whichever form its strings are stored, and times read
// back as the same instants (in UTC).
func TestSVIDRecordRoundTrip(t *testing.T) {
	for name, r := range svidRecordCases() {
		t.Run(name, func(t *testing.T) {
			data := store.EncodeSVID(r)
			var got store.SVIDRecord
			if err := store.DecodeSVID([]byte("key"), data, &got); err != nil {
				t.Fatalf("decoding %x: %v", data, err)
			}
			if diff := cmp.Diff(r, &got); diff != "" {
				t.Errorf("record through the encoding (-written +read):\n%s", diff)
			}
			if got.NotBefore.Location() != time.UTC || got.NotAfter.Location() != time.UTC {
				t.Errorf("times read back in %v and %v, want UTC", got.NotBefore.Location(), got.NotAfter.Location())
			}
		})
	}
}

// TestSVIDRecordsInTheStore: records put through the store read back
// whole through every way the store reads the index (a walk, a lookup by
// serial, the current index).
func TestSVIDRecordsInTheStore(t *testing.T) {
	st := openBolt(t)
	ctx := context.Background()
	cases := svidRecordCases()
	var want []*store.SVIDRecord
	err := st.Update(ctx, func(tx store.Tx) error {
		for name, r := range cases {
			r := *r
			r.Serial += "/" + name // one serial each, to look it up
			r.EntryID += "/" + name
			if err := tx.PutSVID(&r); err != nil {
				return err
			}
			want = append(want, &r)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	bySerial := func(a, b *store.SVIDRecord) int { return strings.Compare(a.Serial, b.Serial) }
	slices.SortFunc(want, bySerial)
	var walked, current []*store.SVIDRecord
	err = st.View(ctx, func(tx store.Tx) error {
		if err := tx.ForEachSVID(func(r *store.SVIDRecord) error { walked = append(walked, r); return nil }); err != nil {
			return err
		}
		if err := tx.ForEachCurrentSVID(func(r *store.SVIDRecord) error { current = append(current, r); return nil }); err != nil {
			return err
		}
		for _, w := range want {
			got, err := tx.GetSVID(w.Serial)
			if err != nil {
				return err
			}
			if diff := cmp.Diff(w, got); diff != "" {
				t.Errorf("GetSVID(%q) (-put +got):\n%s", w.Serial, diff)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(walked, bySerial)
	slices.SortFunc(current, bySerial)
	if diff := cmp.Diff(want, walked); diff != "" {
		t.Errorf("ForEachSVID (-put +walked):\n%s", diff)
	}
	if diff := cmp.Diff(want, current); diff != "" {
		t.Errorf("ForEachCurrentSVID (-put +current):\n%s", diff)
	}
	if err := st.Check(); err != nil {
		t.Errorf("store inconsistent: %v", err)
	}
}

// TestSVIDRecordsOfBothEncodings: a store file of schema 5, whose SVID
// index holds JSON records, opens; its records read back as written,
// stay as they are (pruning drops them in time), and records written
// after are in the binary form. The current index, pruning and a lookup
// work across both.
func TestSVIDRecordsOfBothEncodings(t *testing.T) {
	path := filepath.Join(t.TempDir(), "signet.db")
	st, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var old []*store.SVIDRecord
	for i := range 6 {
		old = append(old, issuedSVID(i))
	}
	old[5].NodeID, old[5].EntryID, old[5].SPIFFEID = old[4].NodeID, old[4].EntryID, old[4].SPIFFEID // renews 4
	err = st.Update(ctx, func(tx store.Tx) error {
		for _, r := range old {
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
	// Write the index back as schema 5 did: the same keys, JSON values.
	rawUpdate(t, path, func(tx *bbolt.Tx) error {
		if err := tx.Bucket([]byte("meta")).Put([]byte(store.MetaSchemaVersionKey), be64(5)); err != nil {
			return err
		}
		b := tx.Bucket([]byte("svids"))
		var keys [][]byte
		if err := b.ForEach(func(k, _ []byte) error { keys = append(keys, k); return nil }); err != nil {
			return err
		}
		for i, k := range keys {
			data, err := store.EncodeRecord(old[i]) // the index's order is issuance order here
			if err != nil {
				return err
			}
			if err := b.Put(k, data); err != nil {
				return err
			}
		}
		return nil
	})

	var migrations [][2]uint64
	st, err = store.Open(path, store.Options{OnMigrate: func(_ store.Tx, from, to uint64) error {
		migrations = append(migrations, [2]uint64{from, to})
		return nil
	}})
	if err != nil {
		t.Fatalf("opening a schema 5 store: %v", err)
	}
	defer st.Close()
	if diff := cmp.Diff([][2]uint64{{5, store.SchemaVersion}}, migrations); diff != "" || store.SchemaVersion != 6 {
		t.Errorf("migrations (-want +got):\n%s\nschema version %d, want 6", diff, store.SchemaVersion)
	}
	newer := []*store.SVIDRecord{issuedSVID(6), issuedSVID(7)}
	newer[1].NodeID, newer[1].EntryID, newer[1].SPIFFEID = old[0].NodeID, old[0].EntryID, old[0].SPIFFEID // renews 0
	err = st.Update(ctx, func(tx store.Tx) error {
		for _, r := range newer {
			if err := tx.PutSVID(r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	all := append(slices.Clone(old), newer...)
	walk := func() []*store.SVIDRecord {
		var got []*store.SVIDRecord
		if err := st.View(ctx, func(tx store.Tx) error {
			return tx.ForEachSVID(func(r *store.SVIDRecord) error { got = append(got, r); return nil })
		}); err != nil {
			t.Fatal(err)
		}
		return got
	}
	if diff := cmp.Diff(all, walk()); diff != "" {
		t.Errorf("index of both encodings (-put +read):\n%s", diff)
	}
	if err := st.Check(); err != nil {
		t.Errorf("store inconsistent: %v", err)
	}
	var current []string
	err = st.View(ctx, func(tx store.Tx) error {
		if r, err := tx.GetSVID(old[2].Serial); err != nil || r.EntryID != old[2].EntryID {
			t.Errorf("GetSVID of a JSON record: %+v, %v", r, err)
		}
		return tx.ForEachCurrentSVID(func(r *store.SVIDRecord) error { current = append(current, r.Serial); return nil })
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(current)
	want := []string{old[1].Serial, old[2].Serial, old[3].Serial, old[5].Serial, newer[0].Serial, newer[1].Serial}
	if diff := cmp.Diff(want, current); diff != "" {
		t.Errorf("current SVIDs (-want +got):\n%s", diff)
	}

	// The JSON records were left as they were; the new ones are binary.
	var firsts []byte
	st.Close()
	rawUpdate(t, path, func(tx *bbolt.Tx) error {
		return tx.Bucket([]byte("svids")).ForEach(func(_, v []byte) error { firsts = append(firsts, v[0]); return nil })
	})
	if string(firsts) != "{{{{{{\x01\x01" {
		t.Errorf("first bytes of the records %q, want six JSON then two binary", firsts)
	}
	st, err = store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Pruning reads both: the three oldest JSON records expire first.
	var pruned int
	err = st.Update(ctx, func(tx store.Tx) (err error) { pruned, err = tx.PruneSVIDs(old[3].NotAfter); return err })
	if err != nil || pruned != 3 {
		t.Errorf("pruning: %d pruned, %v; want 3", pruned, err)
	}
	if diff := cmp.Diff(all[3:], walk()); diff != "" {
		t.Errorf("index after pruning (-want +read):\n%s", diff)
	}
	if err := st.Check(); err != nil {
		t.Errorf("store inconsistent after pruning: %v", err)
	}
}

// TestSVIDRecordCorrupt: a damaged binary record is reported as
// ErrCorrupt, naming the bucket, by every read of the index; nothing
// panics.
func TestSVIDRecordCorrupt(t *testing.T) {
	good := store.EncodeSVID(issuedSVID(1))
	for name, data := range map[string][]byte{
		"truncated":              good[:len(good)-1],
		"only the encoding byte": {1},
		"trailing byte":          append(slices.Clone(good), 0),
		"string past the end":    {1, 0xff, 0x01, 'a'},
		"odd packed hex":         {1, 3<<2 | 1, 0xab, 0xcd},
		"empty packed hex":       {1, 0<<2 | 1},
		"short UUID":             {1, 35<<2 | 2, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
		"unknown string form":    {1, 1<<2 | 3, 'a'},
		"shares more than node":  {1, 0, 4 << 2, 'n', 'o', 'd', 'e', 5, 0, 0, 0, 0, 0, 0, 0},
		"nanoseconds too many":   {1, 0, 0, 0, 0, 0, 0, 0, 0x80, 0x94, 0xeb, 0xdc, 0x03, 0, 0},
		"varint overflows":       {1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
		"neither JSON nor ours":  {2, 0, 0},
		"empty":                  {},
	} {
		t.Run(name, func(t *testing.T) {
			var r store.SVIDRecord
			if err := store.DecodeSVID([]byte("key"), data, &r); !errors.Is(err, store.ErrCorrupt) || !strings.Contains(err.Error(), "svids") {
				t.Errorf("decoding %x: %v, want ErrCorrupt naming the bucket", data, err)
			}
		})
	}

	// Through the store: a walk, a lookup and pruning report it.
	path := filepath.Join(t.TempDir(), "signet.db")
	st, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Update(context.Background(), func(tx store.Tx) error { return tx.PutSVID(issuedSVID(1)) }); err != nil {
		t.Fatal(err)
	}
	st.Close()
	rawUpdate(t, path, func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte("svids"))
		k, _ := b.Cursor().First()
		return b.Put(k, good[:len(good)-2])
	})
	st, err = store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for name, read := range map[string]func(tx store.Tx) error{
		"ForEachSVID":        func(tx store.Tx) error { return tx.ForEachSVID(func(*store.SVIDRecord) error { return nil }) },
		"GetSVID":            func(tx store.Tx) error { _, err := tx.GetSVID("x"); return err },
		"ForEachCurrentSVID": func(tx store.Tx) error { return tx.ForEachCurrentSVID(func(*store.SVIDRecord) error { return nil }) },
		"PruneSVIDs":         func(tx store.Tx) error { _, err := tx.PruneSVIDs(t0.Add(48 * time.Hour)); return err },
	} {
		if err := st.Update(context.Background(), read); !errors.Is(err, store.ErrCorrupt) {
			t.Errorf("%s over a damaged record: %v, want ErrCorrupt", name, err)
		}
	}
	if err := st.Check(); !errors.Is(err, store.ErrCorrupt) {
		t.Errorf("Check: %v, want ErrCorrupt", err)
	}
}

// FuzzDecodeSVID checks that the decoder of SVID index records never
// panics, reports every failure as ErrCorrupt, and that what it accepts
// encodes back, in about as many bytes, to a record that decodes the same.
func FuzzDecodeSVID(f *testing.F) {
	for _, r := range svidRecordCases() {
		f.Add(store.EncodeSVID(r))
		data, err := store.EncodeRecord(r)
		if err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte{1})
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		var r store.SVIDRecord
		if err := store.DecodeSVID([]byte("key"), data, &r); err != nil {
			if !errors.Is(err, store.ErrCorrupt) {
				t.Fatalf("decode error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		again := store.EncodeSVID(&r)
		var r2 store.SVIDRecord
		if err := store.DecodeSVID([]byte("key"), again, &r2); err != nil {
			t.Fatalf("re-encoded record %x does not decode: %v", again, err)
		}
		if diff := cmp.Diff(r, r2); diff != "" {
			t.Errorf("record changed through encode and decode (-first +second):\n%s", diff)
		}
		// Strings re-encode in their shortest form, but for the SPIFFE
		// ID: the longest prefix shared with the node ID can leave a rest
		// that no longer packs as hex.
		if slack := len(r.SPIFFEID)/2 + 1; data[0] == 1 && len(again) > len(data)+slack {
			t.Errorf("re-encoded record is %d bytes, more than the %d decoded and %d", len(again), len(data), slack)
		}
	})
}
