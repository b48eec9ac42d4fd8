package audit_test

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/signet-mesh/signet/ca/audit"
	"github.com/signet-mesh/signet/ca/store"
)

func TestAppendChain(t *testing.T) {
	st := openStore(t)
	var appended []audit.Record
	for i := range 3 {
		appended = append(appended, appendRecords(t, st, i*40, 40)...)
	}
	got := scanAll(t, st)
	if diff := cmp.Diff(appended, got); diff != "" {
		t.Fatalf("records read back differ from those Append returned (-appended +read):\n%s", diff)
	}
	for i, r := range got {
		if r.Seq != uint64(i+1) {
			t.Errorf("record %d has seq %d, want %d", i, r.Seq, i+1)
		}
		wantPrev := audit.GenesisHash
		if i > 0 {
			wantPrev = got[i-1].Hash
		}
		if r.PrevHash != wantPrev {
			t.Errorf("record %d: prev_hash %s, want %s", r.Seq, r.PrevHash, wantPrev)
		}
		if h := referenceHash(r); r.Hash != h {
			t.Errorf("record %d: hash %s, the documented encoding gives %s", r.Seq, r.Hash, h)
		}
		if want := t0.Add(time.Duration(i) * time.Second); !r.Time.Equal(want) || r.Time.Location() != time.UTC {
			t.Errorf("record %d: time %v, want %v in UTC", r.Seq, r.Time, want)
		}
	}
}

// referenceHash computes a record's hash from the package documentation
// alone, as an auditor re-implementing verify would.
func referenceHash(r audit.Record) string {
	str := func(s string) []byte {
		return append(binary.BigEndian.AppendUint32(nil, uint32(len(s))), s...)
	}
	b := []byte("signet-audit-v1\n")
	b = append(b, str(strconv.FormatUint(r.Seq, 10))...)
	b = append(b, str(r.Time.UTC().Format("2006-01-02T15:04:05.000000000Z"))...)
	for _, f := range []string{r.Type, r.Outcome, r.Actor, r.Subject} {
		b = append(b, str(f)...)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(r.Details)))
	keys := make([]string, 0, len(r.Details))
	for k := range r.Details {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		b = append(b, str(k)...)
		b = append(b, str(r.Details[k])...)
	}
	for _, f := range []string{r.KeyID, r.Signature, r.PrevHash} {
		b = append(b, str(f)...)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// TestHashGolden pins the canonical encoding: a change to it would make
// every existing log fail to verify. The value was computed with a
// separate Python implementation of the encoding in doc.go.
func TestHashGolden(t *testing.T) {
	r := audit.Record{
		Seq:      42,
		Time:     t0,
		Type:     audit.TypeEntryCreated,
		Outcome:  audit.OutcomeSuccess,
		Actor:    "uid:1000(alice)",
		Subject:  webID,
		Details:  map[string]string{"entry_id": "e1", "parent_id": nodeID},
		PrevHash: audit.GenesisHash,
	}
	const want = "d5a7faa6e2cdeeb989f0d881ac7d0d7ac7a392ce16d8a86afc7f9b87ef045814"
	if got := audit.ComputeHash(&r); got != referenceHash(r) {
		t.Errorf("ComputeHash = %s, the documented encoding gives %s", got, referenceHash(r))
	}
	if got := audit.ComputeHash(&r); got != want {
		t.Errorf("ComputeHash = %s, want %s: the canonical encoding changed", got, want)
	}
}

func TestAppendInvalid(t *testing.T) {
	valid := issued(1)
	tests := []struct {
		name string
		edit func(r *audit.Record)
		now  time.Time
	}{
		{"unknown outcome", func(r *audit.Record) { r.Outcome = "ok" }, t0},
		{"empty type", func(r *audit.Record) { r.Type = "" }, t0},
		{"type with spaces", func(r *audit.Record) { r.Type = "svid issued" }, t0},
		{"type with upper case", func(r *audit.Record) { r.Type = "SVID.issued" }, t0},
		{"checkpoint", func(r *audit.Record) { r.Type = audit.TypeCheckpoint }, t0},
		{"signature", func(r *audit.Record) { r.Signature = "c2ln" }, t0},
		{"key id", func(r *audit.Record) { r.KeyID = "k" }, t0},
		{"detail key with a dot", func(r *audit.Record) { r.Details["a.b"] = "x" }, t0},
		{"empty detail key", func(r *audit.Record) { r.Details[""] = "x" }, t0},
		{"too large", func(r *audit.Record) { r.Details["reason"] = strings.Repeat("x", 20<<10) }, t0},
		{"zero time", func(r *audit.Record) {}, time.Time{}},
	}
	st := openStore(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := valid
			r.Details = map[string]string{"serial": "01"}
			tt.edit(&r)
			err := st.Update(t.Context(), func(tx store.Tx) error {
				_, err := audit.Append(tx, r, tt.now)
				return err
			})
			if !errors.Is(err, audit.ErrInvalidRecord) {
				t.Errorf("got error %v, want ErrInvalidRecord", err)
			}
		})
	}
	if got := scanAll(t, st); len(got) != 0 {
		t.Errorf("refused records were stored: %v", got)
	}
}

// TestAppendInvalidUTF8 checks that bytes that are not UTF-8 are replaced
// before hashing, so the record survives a text export and verifies.
func TestAppendInvalidUTF8(t *testing.T) {
	st := openStore(t)
	s := newSigner(t)
	r := issued(1)
	r.Subject = "spiffe://example.org/\xff"
	r.Details = map[string]string{"reason\xfe": "bad \xc0 byte"}
	err := st.Update(t.Context(), func(tx store.Tx) error {
		_, err := audit.Append(tx, r, t0)
		return err
	})
	if err == nil {
		t.Fatalf("Append with a detail key that is not a name succeeded")
	}
	r.Details = map[string]string{"reason": "bad \xc0 byte\n\"quoted\"\t\x01"}
	err = st.Update(t.Context(), func(tx store.Tx) error {
		_, err := audit.Append(tx, r, t0)
		return err
	})
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	got := scanAll(t, st)[0]
	if got.Subject != "spiffe://example.org/\uFFFD" || got.Details["reason"] != "bad \uFFFD byte\n\"quoted\"\t\x01" {
		t.Errorf("stored subject %q, reason %q: want the bad bytes replaced", got.Subject, got.Details["reason"])
	}
	for _, f := range []audit.Format{audit.FormatJSONL, audit.FormatCSV} {
		out, _ := export(t, st, s, audit.ExportParams{Format: f}, t0.Add(time.Minute))
		if _, err := audit.Verify(strings.NewReader(string(out)), s.keys); err != nil {
			t.Errorf("%s export does not verify: %v\n%s", f, err, out)
		}
	}
}

// failingTx is a transaction whose audit writes fail, as when the disk is
// full.
type failingTx struct{ store.Tx }

var errDisk = errors.New("disk full")

func (failingTx) AppendAudit(*store.AuditRecord) error { return errDisk }

// TestFailClosed checks "no change without its record, no record without
// its change".
func TestFailClosed(t *testing.T) {
	svid := &store.SVIDRecord{Serial: "01", SPIFFEID: webID, NotAfter: t0}
	tests := []struct {
		name    string
		fn      func(tx store.Tx) error
		wantErr error
	}{
		{
			name: "the record cannot be written",
			fn: func(tx store.Tx) error {
				if err := tx.PutSVID(svid); err != nil {
					return err
				}
				_, err := audit.Append(failingTx{tx}, issued(1), t0)
				return err
			},
			wantErr: errDisk,
		},
		{
			name: "the change fails after its record",
			fn: func(tx store.Tx) error {
				if _, err := audit.Append(tx, issued(1), t0); err != nil {
					return err
				}
				if err := tx.PutSVID(svid); err != nil {
					return err
				}
				return errDisk
			},
			wantErr: errDisk,
		},
		{
			name: "a read-only transaction",
			fn: func(tx store.Tx) error {
				_, err := audit.Append(tx, issued(1), t0)
				return err
			},
			wantErr: store.ErrReadOnly,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := openStore(t)
			run := st.Update
			if tt.wantErr == store.ErrReadOnly {
				run = st.View
			}
			if err := run(t.Context(), tt.fn); !errors.Is(err, tt.wantErr) {
				t.Fatalf("got error %v, want %v", err, tt.wantErr)
			}
			if got := scanAll(t, st); len(got) != 0 {
				t.Errorf("the log holds %d records, want none", len(got))
			}
			err := st.View(t.Context(), func(tx store.Tx) error {
				_, err := tx.GetSVID("01")
				return err
			})
			if !errors.Is(err, store.ErrNotFound) {
				t.Errorf("the change committed without its record: GetSVID error %v, want ErrNotFound", err)
			}
		})
	}
}

// TestBatch appends from concurrent Batch calls, as the issuance path
// does: the chain holds whatever the grouping.
func TestBatch(t *testing.T) {
	st := openStore(t)
	s := newSigner(t)
	const n = 50
	errs := make(chan error, n)
	for i := range n {
		go func() {
			errs <- st.Batch(t.Context(), func(tx store.Tx) error {
				_, err := audit.Append(tx, issued(i), t0)
				return err
			})
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("Batch: %v", err)
		}
	}
	out, _ := export(t, st, s, audit.ExportParams{}, t0.Add(time.Minute))
	rep, err := audit.Verify(strings.NewReader(string(out)), s.keys)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if rep.Records != n+1 {
		t.Errorf("verified %d records, want %d", rep.Records, n+1)
	}
}

func TestHead(t *testing.T) {
	st := openStore(t)
	s := newSigner(t)
	head := func() (audit.Record, bool) {
		var (
			r  audit.Record
			ok bool
		)
		err := st.View(t.Context(), func(tx store.Tx) (err error) {
			r, ok, err = audit.Head(tx)
			return err
		})
		if err != nil {
			t.Fatalf("Head: %v", err)
		}
		return r, ok
	}
	if r, ok := head(); ok {
		t.Errorf("Head of an empty log = %v, want none", r)
	}
	want := appendRecords(t, st, 0, 3)[2]
	if got, _ := head(); !cmp.Equal(want, got) {
		t.Errorf("Head = %v, want %v", got, want)
	}
	cp := checkpoint(t, st, s, t0)
	if got, _ := head(); !cmp.Equal(cp, got) {
		t.Errorf("Head = %v, want the checkpoint %v", got, cp)
	}
}
