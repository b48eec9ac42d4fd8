package store_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.etcd.io/bbolt"

	"github.com/signet-mesh/signet/ca/store"
)

// issuedAudit is an audit record as the CA writes one per issuance.
func issuedAudit(seq uint64, prev string) *store.AuditRecord {
	h := func(s string) string { return fmt.Sprintf("%064x", []byte(s))[:64] }
	return &store.AuditRecord{Seq: seq, Time: t0.Add(time.Duration(seq) * time.Second), Type: "svid.issued", Outcome: "success",
		Actor: "spiffe://example.org/signet/agent/join_token/node-00042", Subject: "spiffe://example.org/ns/default/sa/web",
		Details: map[string]string{
			"authority_id": "b0296d2a41d866f8", "csr_sha256": h(fmt.Sprint("csr", seq)), "entry_id": "0190e6c8-0000-7000-8000-000000000042",
			"not_after": "2026-12-04T18:10:07.000000000Z", "not_before": "2026-12-04T17:09:57.000000000Z",
			"public_key_sha256": h(fmt.Sprint("key", seq)), "serial": fmt.Sprintf("%032x", seq),
		},
		PrevHash: prev, Hash: h(fmt.Sprint("hash", seq))}
}

// TestAuditPackedHex: the store keeps an issuance's audit record in at
// most four fifths of the bytes of the encoding it used before, reads
// records of both encodings back as they were appended (a log written by
// an older signet, continued by this one), and other backends' form
// (MarshalAudit) is still the older one.
func TestAuditPackedHex(t *testing.T) {
	path := filepath.Join(t.TempDir(), "signet.db")
	st, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var want []*store.AuditRecord
	prev := ""
	for seq := uint64(1); seq <= 4; seq++ {
		r := issuedAudit(seq, prev)
		if seq == 4 {
			r.Details["note"] = "not hex: " + strings.Repeat("z", 70) // longer than a one-byte length
			r.KeyID, r.Signature = "k1", "c2lnbmF0dXJl"
		}
		err := st.Update(context.Background(), func(tx store.Tx) error { return tx.AppendAudit(r) })
		if err != nil {
			t.Fatal(err)
		}
		want, prev = append(want, r), r.Hash
	}
	st.Close()

	// The first two records as an older signet wrote them.
	var sizes []int
	rawUpdate(t, path, func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte("audit"))
		for seq := uint64(1); seq <= 2; seq++ {
			k := binary.BigEndian.AppendUint64(nil, seq)
			sizes = append(sizes, len(b.Get(k)))
			if err := b.Put(k, store.MarshalAudit(want[seq-1])); err != nil {
				return err
			}
		}
		return nil
	})
	v1 := len(store.MarshalAudit(want[0]))
	if sizes[0]*5 > v1*4 {
		t.Errorf("an issuance's audit record takes %d bytes, want at most 4/5 of the %d it took before", sizes[0], v1)
	}
	if b := store.MarshalAudit(want[0]); b[0] != 1 {
		t.Errorf("MarshalAudit writes encoding %d, want 1 (what other backends' older replicas read)", b[0])
	}

	st, err = store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var got []*store.AuditRecord
	err = st.View(context.Background(), func(tx store.Tx) error {
		return tx.ForEachAudit(1, func(r *store.AuditRecord) error { got = append(got, r); return nil })
	})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("audit log of both encodings (-appended +read):\n%s", diff)
	}
	for _, r := range want {
		back, err := store.UnmarshalAudit(store.MarshalAudit(r))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(r, back); diff != "" {
			t.Errorf("MarshalAudit and back (-want +got):\n%s", diff)
		}
	}
	if err := st.Check(); err != nil {
		t.Errorf("store inconsistent: %v", err)
	}
}
