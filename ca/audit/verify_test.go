package audit_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/csv"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/signet-mesh/signet/ca/audit"
	"github.com/signet-mesh/signet/ca/store"
)

// tamperLog builds the log the tamper tests export: records 1-8, a
// periodic checkpoint (9), records 10-17; the export's checkpoint is 18.
// In an unfiltered JSON Lines export, line n holds seq n.
func tamperLog(t *testing.T, s signer) store.Store {
	t.Helper()
	st := openStore(t)
	appendRecords(t, st, 0, 8)
	checkpoint(t, st, s, t0.Add(10*time.Second))
	appendRecords(t, st, 11, 8)
	return st
}

// encodeLine is r as an export line (with its newline) in format f.
func encodeLine(t *testing.T, r audit.Record, f audit.Format) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := audit.NewWriter(&buf, f)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(&r); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	ls := lines(buf.Bytes())
	return ls[len(ls)-1] // after the CSV header
}

// parseAny parses a record line of either format.
func parseAny(t *testing.T, line []byte, f audit.Format) audit.Record {
	t.Helper()
	if f == audit.FormatJSONL {
		r, err := audit.ParseLine(line)
		if err != nil {
			t.Fatalf("ParseLine: %v", err)
		}
		return r
	}
	row, err := csv.NewReader(bytes.NewReader(line)).Read()
	if err != nil {
		t.Fatalf("reading CSV row: %v", err)
	}
	seq, err := strconv.ParseUint(row[0], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	ts, err := time.Parse(audit.TimeFormat, row[1])
	if err != nil {
		t.Fatal(err)
	}
	r := audit.Record{
		Seq: seq, Time: ts, Type: row[2], Outcome: row[3], Actor: row[4], Subject: row[5],
		KeyID: row[7], Signature: row[8], PrevHash: row[9], Hash: row[10],
	}
	if row[6] != "" {
		if err := json.Unmarshal([]byte(row[6]), &r.Details); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// rehashed returns line with edit applied to its record and the hash
// recomputed: a forger's edit.
func rehashed(t *testing.T, line []byte, f audit.Format, edit func(r *audit.Record)) []byte {
	t.Helper()
	r := parseAny(t, line, f)
	edit(&r)
	r.Hash = audit.ComputeHash(&r)
	return encodeLine(t, r, f)
}

func TestVerifyTamper(t *testing.T) {
	s := newSigner(t)
	st := tamperLog(t, s)
	exports := map[audit.Format][]byte{}
	for _, f := range []audit.Format{audit.FormatJSONL, audit.FormatCSV} {
		exports[f], _ = export(t, st, s, audit.ExportParams{Format: f}, t0.Add(time.Minute))
	}
	// Each export appends its checkpoint: the JSON Lines export ends with
	// 18, the CSV export holds 18 too and ends with 19. The tests take
	// records 1-18 of both.

	other := newKey(t)
	tests := []struct {
		name string
		// edit changes the record lines (no CSV header), 0-based.
		edit     func(t *testing.T, f audit.Format, ls [][]byte) [][]byte
		keys     audit.Keys
		wantErr  error
		wantLine int // of JSON Lines; CSV lines are one more
		wantSeq  uint64
	}{
		{
			name: "untouched",
			edit: func(t *testing.T, f audit.Format, ls [][]byte) [][]byte { return ls },
		},
		{
			name: "edit one field",
			edit: func(t *testing.T, f audit.Format, ls [][]byte) [][]byte {
				ls[4] = bytes.Replace(ls[4], []byte("example.org/web"), []byte("example.org/wEb"), 1)
				return ls
			},
			wantErr: audit.ErrHashMismatch, wantLine: 5, wantSeq: 5,
		},
		{
			name: "edit the time",
			edit: func(t *testing.T, f audit.Format, ls [][]byte) [][]byte {
				ls[4] = bytes.Replace(ls[4], []byte("2030-01-02T03:04:09"), []byte("2030-01-02T03:04:08"), 1)
				return ls
			},
			wantErr: audit.ErrHashMismatch, wantLine: 5, wantSeq: 5,
		},
		{
			name: "edit one field and rehash",
			edit: func(t *testing.T, f audit.Format, ls [][]byte) [][]byte {
				ls[4] = rehashed(t, ls[4], f, func(r *audit.Record) { r.Subject = "spiffe://example.org/evil" })
				return ls
			},
			wantErr: audit.ErrBrokenChain, wantLine: 6, wantSeq: 6,
		},
		{
			name: "delete a line",
			edit: func(t *testing.T, f audit.Format, ls [][]byte) [][]byte {
				return slices.Delete(ls, 4, 5)
			},
			wantErr: audit.ErrMissing, wantLine: 5, wantSeq: 6,
		},
		{
			name: "swap two lines",
			edit: func(t *testing.T, f audit.Format, ls [][]byte) [][]byte {
				ls[4], ls[5] = ls[5], ls[4]
				return ls
			},
			wantErr: audit.ErrMissing, wantLine: 5, wantSeq: 6,
		},
		{
			name: "swap two distant lines",
			edit: func(t *testing.T, f audit.Format, ls [][]byte) [][]byte {
				ls[2], ls[12] = ls[12], ls[2]
				return ls
			},
			wantErr: audit.ErrMissing, wantLine: 3, wantSeq: 13,
		},
		{
			name: "duplicate a line",
			edit: func(t *testing.T, f audit.Format, ls [][]byte) [][]byte {
				return slices.Insert(ls, 5, ls[4])
			},
			wantErr: audit.ErrOrder, wantLine: 6, wantSeq: 5,
		},
		{
			name: "truncate the tail",
			edit: func(t *testing.T, f audit.Format, ls [][]byte) [][]byte {
				return ls[:15]
			},
			wantErr: audit.ErrTruncated, wantLine: 15, wantSeq: 15,
		},
		{
			name: "drop the final checkpoint",
			edit: func(t *testing.T, f audit.Format, ls [][]byte) [][]byte {
				return ls[:17]
			},
			wantErr: audit.ErrTruncated, wantLine: 17, wantSeq: 17,
		},
		{
			name: "append a record after the final checkpoint",
			edit: func(t *testing.T, f audit.Format, ls [][]byte) [][]byte {
				last := parseAny(t, ls[17], f)
				r := issued(99)
				r.Seq, r.Time, r.PrevHash = last.Seq+1, last.Time, last.Hash
				r.Hash = audit.ComputeHash(&r)
				return append(ls[:18], encodeLine(t, r, f))
			},
			wantErr: audit.ErrTruncated, wantLine: 19, wantSeq: 19,
		},
		{
			name: "delete the first line",
			edit: func(t *testing.T, f audit.Format, ls [][]byte) [][]byte {
				return ls[1:]
			},
			wantErr: audit.ErrMissing, wantLine: 1, wantSeq: 2,
		},
		{
			// The export alone cannot tell this from an older export;
			// Report.LastSeq and Final.Time can (see doc.go).
			name: "cut right after an earlier checkpoint",
			edit: func(t *testing.T, f audit.Format, ls [][]byte) [][]byte {
				return ls[:9]
			},
		},
		{
			name: "delete the first lines up to an earlier checkpoint",
			edit: func(t *testing.T, f audit.Format, ls [][]byte) [][]byte {
				return ls[8:]
			},
			wantErr: audit.ErrMissing, wantLine: 1, wantSeq: 9,
		},
		{
			name: "delete a line, and edit a later one",
			edit: func(t *testing.T, f audit.Format, ls [][]byte) [][]byte {
				ls[11] = bytes.Replace(ls[11], []byte("example.org/web"), []byte("example.org/wEb"), 1)
				return slices.Delete(ls, 4, 5)
			},
			wantErr: audit.ErrMissing, wantLine: 5, wantSeq: 6,
		},
		{
			name: "claim the export was filtered",
			edit: func(t *testing.T, f audit.Format, ls [][]byte) [][]byte {
				ls[17] = rehashed(t, ls[17], f, func(r *audit.Record) { r.Details[audit.DetailFilterTypes] = audit.TypeSVIDIssued })
				return slices.Delete(ls, 4, 5)
			},
			wantErr: audit.ErrMissing, wantLine: 5, wantSeq: 6,
		},
		{
			name: "edit the final checkpoint's first_seq",
			edit: func(t *testing.T, f audit.Format, ls [][]byte) [][]byte {
				ls[17] = rehashed(t, ls[17], f, func(r *audit.Record) { r.Details[audit.DetailFirstSeq] = "2" })
				return ls
			},
			wantErr: audit.ErrSignature, wantLine: 18, wantSeq: 18,
		},
		{
			name: "forge the final checkpoint with another key",
			edit: func(t *testing.T, f audit.Format, ls [][]byte) [][]byte {
				cp := parseAny(t, ls[17], f)
				cp.Details[audit.DetailFilterTypes] = audit.TypeSVIDIssued
				cp.Signature = referenceSign(t, other, cp)
				cp.Hash = audit.ComputeHash(&cp)
				ls[17] = encodeLine(t, cp, f)
				return ls
			},
			wantErr: audit.ErrSignature, wantLine: 18, wantSeq: 18,
		},
		{
			name:    "verify with the wrong key",
			edit:    func(t *testing.T, f audit.Format, ls [][]byte) [][]byte { return ls },
			keys:    audit.KeyMap(map[string]crypto.PublicKey{keyID: other.Public()}),
			wantErr: audit.ErrSignature, wantLine: 9, wantSeq: 9,
		},
		{
			name:    "verify without the key",
			edit:    func(t *testing.T, f audit.Format, ls [][]byte) [][]byte { return ls },
			keys:    audit.KeyMap(nil),
			wantErr: audit.ErrUnknownKey, wantLine: 18, wantSeq: 18,
		},
		{
			name: "a line that is not a record",
			edit: func(t *testing.T, f audit.Format, ls [][]byte) [][]byte {
				ls[4] = []byte("hello")
				return ls
			},
			wantErr: audit.ErrMalformed, wantLine: 5,
		},
		{
			name: "empty",
			edit: func(t *testing.T, f audit.Format, ls [][]byte) [][]byte {
				if f == audit.FormatCSV {
					return [][]byte{} // the header only
				}
				return nil
			},
			wantErr: audit.ErrTruncated,
		},
	}
	for _, f := range []audit.Format{audit.FormatJSONL, audit.FormatCSV} {
		all := lines(exports[f])
		var header [][]byte
		if f == audit.FormatCSV {
			header, all = all[:1], all[1:]
		}
		all = all[:18] // the CSV export's own checkpoint is 19: verify the first export's 18 records
		for _, tt := range tests {
			t.Run(string(f)+"/"+tt.name, func(t *testing.T) {
				ls := tt.edit(t, f, slices.Clone(all))
				in := join(append(slices.Clone(header), ls...))
				if ls == nil {
					in = nil
				}
				keys := s.keys
				if tt.keys != nil {
					keys = tt.keys
				}
				rep, err := audit.Verify(bytes.NewReader(in), keys)
				if tt.wantErr == nil {
					if err != nil {
						t.Fatalf("Verify: %v", err)
					}
					if rep.Records != len(ls) || rep.LastSeq != uint64(len(ls)) || rep.Final.Seq != rep.LastSeq {
						t.Errorf("report %+v: want %d records ending with the final checkpoint", rep, len(ls))
					}
					return
				}
				var ve *audit.VerifyError
				if !errors.As(err, &ve) || !errors.Is(err, tt.wantErr) {
					t.Fatalf("got error %v, want a VerifyError of %v", err, tt.wantErr)
				}
				wantLine := tt.wantLine
				if f == audit.FormatCSV && wantLine != 0 {
					wantLine++
				}
				if ve.Line != wantLine || ve.Seq != tt.wantSeq {
					t.Errorf("error names line %d, seq %d; want line %d, seq %d: %v", ve.Line, ve.Seq, wantLine, tt.wantSeq, err)
				}
				t.Log(err)
			})
		}
	}
}

func TestVerifyReport(t *testing.T) {
	s := newSigner(t)
	st := tamperLog(t, s)
	out, res := export(t, st, s, audit.ExportParams{}, t0.Add(time.Minute))
	rep, err := audit.Verify(bytes.NewReader(out), s.keys)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	want := audit.Report{Records: 18, FirstSeq: 1, LastSeq: 18, Checkpoints: 2, Final: res.Checkpoint}
	if diff := cmp.Diff(want, rep); diff != "" {
		t.Errorf("report (-want +got):\n%s", diff)
	}
	if res.Checkpoint.Actor != audit.AdminActor(1000, "alice") || res.Checkpoint.Details[audit.DetailReason] != audit.ReasonExport {
		t.Errorf("export checkpoint %+v: want the admin as actor and reason %q", res.Checkpoint, audit.ReasonExport)
	}

	// A checkpoint signed by a key since rotated out verifies through the
	// chain, and is counted apart.
	old := audit.CheckpointParams{Signer: newKey(t), KeyID: "jwt-key-0"}
	err = st.Update(t.Context(), func(tx store.Tx) error {
		_, err := audit.Checkpoint(tx, old, t0.Add(2*time.Minute))
		return err
	})
	if err != nil {
		t.Fatalf("Checkpoint: %v", err)
	}
	out, _ = export(t, st, s, audit.ExportParams{}, t0.Add(3*time.Minute))
	rep, err = audit.Verify(bytes.NewReader(out), s.keys)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if rep.Checkpoints != 3 || rep.UnverifiedCheckpoints != 1 {
		t.Errorf("report counts %d verified, %d unverified checkpoints; want 3 and 1", rep.Checkpoints, rep.UnverifiedCheckpoints)
	}
}

// tamperStore changes the audit records its transactions read, as an
// attacker editing the store file would.
type tamperStore struct {
	store.Store
	edit func(r *store.AuditRecord) (keep bool)
}

func (s tamperStore) View(ctx context.Context, fn func(store.Tx) error) error {
	return s.Store.View(ctx, func(tx store.Tx) error { return fn(tamperTx{tx, s.edit}) })
}

type tamperTx struct {
	store.Tx
	edit func(r *store.AuditRecord) bool
}

func (tx tamperTx) ForEachAudit(from uint64, fn func(*store.AuditRecord) error) error {
	return tx.Tx.ForEachAudit(from, func(r *store.AuditRecord) error {
		if !tx.edit(r) {
			return nil
		}
		return fn(r)
	})
}

func TestVerifyStore(t *testing.T) {
	s := newSigner(t)
	st := tamperLog(t, s)
	tests := []struct {
		name    string
		edit    func(r *store.AuditRecord) bool
		wantErr error
		wantSeq uint64
	}{
		{"untouched", func(*store.AuditRecord) bool { return true }, nil, 0},
		{"edit one field", func(r *store.AuditRecord) bool {
			if r.Seq == 5 {
				r.Subject = "spiffe://example.org/evil"
			}
			return true
		}, audit.ErrHashMismatch, 5},
		{"delete a record", func(r *store.AuditRecord) bool { return r.Seq != 5 }, audit.ErrMissing, 6},
		{"delete the first records", func(r *store.AuditRecord) bool { return r.Seq > 2 }, audit.ErrMissing, 3},
		// The first missing seq is named (it was ErrTruncated at the last
		// record left before; issue 12 asks for the missing seq).
		{"delete the newest records", func(r *store.AuditRecord) bool { return r.Seq < 16 }, audit.ErrMissing, 16},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := audit.VerifyStore(t.Context(), tamperStore{st, tt.edit}, s.keys)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("VerifyStore: %v", err)
				}
				want := audit.Report{Records: 17, FirstSeq: 1, LastSeq: 17, Checkpoints: 1}
				if diff := cmp.Diff(want, rep); diff != "" {
					t.Errorf("report (-want +got):\n%s", diff)
				}
				return
			}
			var ve *audit.VerifyError
			if !errors.As(err, &ve) || !errors.Is(err, tt.wantErr) || ve.Seq != tt.wantSeq {
				t.Fatalf("got error %v, want a VerifyError of %v at seq %d", err, tt.wantErr, tt.wantSeq)
			}
		})
	}
}

// TestVerifyTail: the start-up check reads from the newest checkpoint
// (seq 9 of tamperLog) to the head, names the first missing seq, and does
// not read what lies before the checkpoint.
func TestVerifyTail(t *testing.T) {
	s := newSigner(t)
	st := tamperLog(t, s)
	tests := []struct {
		name    string
		edit    func(r *store.AuditRecord) bool
		wantErr error
		wantSeq uint64
	}{
		{"untouched", func(*store.AuditRecord) bool { return true }, nil, 0},
		{"a record before the checkpoint is not read", func(r *store.AuditRecord) bool { return r.Seq != 3 }, nil, 0},
		{"delete a record after the checkpoint", func(r *store.AuditRecord) bool { return r.Seq != 12 }, audit.ErrMissing, 13},
		{"delete the checkpoint", func(r *store.AuditRecord) bool { return r.Seq != 9 }, audit.ErrMissing, 9},
		{"delete the head", func(r *store.AuditRecord) bool { return r.Seq != 17 }, audit.ErrMissing, 17},
		{"edit a record", func(r *store.AuditRecord) bool {
			if r.Seq == 14 {
				r.Actor = "mallory"
			}
			return true
		}, audit.ErrHashMismatch, 14},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := audit.VerifyTail(t.Context(), tamperStore{st, tt.edit}, s.keys)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("VerifyTail: %v", err)
				}
				if rep.FirstSeq != 9 || rep.LastSeq != 17 || rep.Records != 9 || rep.Checkpoints != 1 {
					t.Errorf("report %+v, want records 9 to 17 with one checkpoint", rep)
				}
				return
			}
			var ve *audit.VerifyError
			if !errors.As(err, &ve) || !errors.Is(err, tt.wantErr) || ve.Seq != tt.wantSeq {
				t.Fatalf("got error %v, want a VerifyError of %v at seq %d", err, tt.wantErr, tt.wantSeq)
			}
		})
	}
}

func TestVerifyCheckpointKeys(t *testing.T) {
	keys := map[string]crypto.Signer{
		"ecdsa":   newKey(t),
		"rsa":     rsaKey(t),
		"ed25519": ed25519Key(t),
	}
	for name, key := range keys {
		t.Run(name, func(t *testing.T) {
			st := openStore(t)
			appendRecords(t, st, 0, 2)
			cp := checkpoint(t, st, signer{key: key}, t0)
			if err := audit.VerifyCheckpoint(cp, key.Public()); err != nil {
				t.Errorf("VerifyCheckpoint: %v", err)
			}
			for otherName, other := range keys {
				if otherName == name {
					continue
				}
				if err := audit.VerifyCheckpoint(cp, other.Public()); !errors.Is(err, audit.ErrSignature) {
					t.Errorf("VerifyCheckpoint with the %s key: got error %v, want ErrSignature", otherName, err)
				}
			}
			edited := cp
			edited.Time = edited.Time.Add(time.Nanosecond)
			if err := audit.VerifyCheckpoint(edited, key.Public()); !errors.Is(err, audit.ErrSignature) {
				t.Errorf("VerifyCheckpoint of an edited checkpoint: got error %v, want ErrSignature", err)
			}
		})
	}
}

// referenceSign signs checkpoint r from the package documentation alone,
// as a forger (or an auditor checking the documentation) would.
func referenceSign(t *testing.T, key *ecdsa.PrivateKey, r audit.Record) string {
	t.Helper()
	str := func(s string) []byte {
		return append(binary.BigEndian.AppendUint32(nil, uint32(len(s))), s...)
	}
	b := []byte("signet-audit-checkpoint-v1\n")
	b = append(b, str(strconv.FormatUint(r.Seq, 10))...)
	b = append(b, str(audit.FormatTime(r.Time))...)
	for _, f := range []string{r.Type, r.Outcome, r.Actor, r.Subject} {
		b = append(b, str(f)...)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(r.Details)))
	keys := slices.Sorted(maps.Keys(r.Details))
	for _, k := range keys {
		b = append(b, str(k)...)
		b = append(b, str(r.Details[k])...)
	}
	b = append(b, str(r.KeyID)...)
	b = append(b, str(r.PrevHash)...)
	digest := sha256.Sum256(b)
	sig, err := ecdsa.SignASN1(rand.Reader, key, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(sig)
}

// TestSignedMessageDocumented checks that a checkpoint signed as doc.go
// describes verifies.
func TestSignedMessageDocumented(t *testing.T) {
	st := openStore(t)
	key := newKey(t)
	appendRecords(t, st, 0, 3)
	cp := checkpoint(t, st, signer{key: key}, t0)
	cp.Signature = referenceSign(t, key, cp)
	if err := audit.VerifyCheckpoint(cp, key.Public()); err != nil {
		t.Errorf("a checkpoint signed as documented does not verify: %v", err)
	}
}

func TestCheckpointFirstSeq(t *testing.T) {
	st := openStore(t)
	s := newSigner(t)
	cp := checkpoint(t, st, s, t0)
	want := map[string]string{audit.DetailReason: audit.ReasonPeriodic, audit.DetailFirstSeq: "1"}
	if diff := cmp.Diff(want, cp.Details, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("details of a checkpoint of an empty log (-want +got):\n%s", diff)
	}
	if cp.Seq != 1 || cp.PrevHash != audit.GenesisHash {
		t.Errorf("checkpoint of an empty log: seq %d, prev_hash %s; want 1 and the genesis hash", cp.Seq, cp.PrevHash)
	}
}

func rsaKey(t *testing.T) crypto.Signer {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func ed25519Key(t *testing.T) crypto.Signer {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
