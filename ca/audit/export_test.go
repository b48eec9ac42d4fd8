package audit_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/signet-mesh/signet/ca/audit"
	"github.com/signet-mesh/signet/ca/store"
)

// filterLog builds the log of the filter tests:
//
//	1-6  svid.issued by nodeID, subjects web, api, web, api, web, api, at t0+0s..5s
//	7    entry.created of web by an admin, at t0+6s
//	8    node.attested failure of an unknown node, at t0+7s
func filterLog(t *testing.T) store.Store {
	t.Helper()
	st := openStore(t)
	appendRecords(t, st, 0, 6)
	err := st.Update(t.Context(), func(tx store.Tx) error {
		_, err := audit.Append(tx, audit.Record{
			Type:    audit.TypeEntryCreated,
			Outcome: audit.OutcomeSuccess,
			Actor:   audit.AdminActor(0, "root"),
			Subject: webID,
			Details: map[string]string{audit.DetailEntryID: "e1", audit.DetailMethod: "CreateEntry"},
		}, t0.Add(6*time.Second))
		if err != nil {
			return err
		}
		_, err = audit.Append(tx, audit.Record{
			Type:    audit.TypeNodeAttested,
			Outcome: audit.OutcomeFailure,
			Subject: "spiffe://example.org/signet/agent/join_token/bad",
			Details: map[string]string{audit.DetailReason: "unknown join token", audit.DetailAttestor: "join_token"},
		}, t0.Add(7*time.Second))
		return err
	})
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	return st
}

func TestExportFilters(t *testing.T) {
	s := newSigner(t)
	tests := []struct {
		name   string
		filter audit.Filter
		want   []uint64 // the export's checkpoint, 9, comes last in each
	}{
		{"none", audit.Filter{}, []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9}},
		{"since", audit.Filter{Since: t0.Add(4 * time.Second)}, []uint64{5, 6, 7, 8, 9}},
		{"until", audit.Filter{Until: t0.Add(2 * time.Second)}, []uint64{1, 2, 9}},
		{"since and until", audit.Filter{Since: t0.Add(time.Second), Until: t0.Add(3 * time.Second)}, []uint64{2, 3, 9}},
		{"one type", audit.Filter{Types: []string{audit.TypeSVIDIssued}}, []uint64{1, 2, 3, 4, 5, 6, 9}},
		{"two types", audit.Filter{Types: []string{audit.TypeEntryCreated, audit.TypeNodeAttested}}, []uint64{7, 8, 9}},
		{"subject", audit.Filter{SPIFFEID: webID}, []uint64{1, 3, 5, 7, 9}},
		{"actor", audit.Filter{SPIFFEID: nodeID}, []uint64{1, 2, 3, 4, 5, 6, 9}},
		{"type and SPIFFE ID", audit.Filter{Types: []string{audit.TypeSVIDIssued}, SPIFFEID: apiID}, []uint64{2, 4, 6, 9}},
		{"nothing matches", audit.Filter{Types: []string{"no.such_type"}}, []uint64{9}},
	}
	for _, tt := range tests {
		for _, f := range []audit.Format{audit.FormatJSONL, audit.FormatCSV} {
			t.Run(tt.name+"/"+string(f), func(t *testing.T) {
				st := filterLog(t)
				out, res := export(t, st, s, audit.ExportParams{Format: f, Filter: tt.filter}, t0.Add(time.Minute))
				ls := lines(out)
				if f == audit.FormatCSV {
					ls = ls[1:]
				}
				var got []uint64
				for _, l := range ls {
					got = append(got, parseAny(t, l, f).Seq)
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("exported seqs (-want +got):\n%s", diff)
				}
				if res.Records != len(tt.want) {
					t.Errorf("ExportResult.Records = %d, want %d", res.Records, len(tt.want))
				}
				rep, err := audit.Verify(bytes.NewReader(out), s.keys)
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if rep.Filtered != !tt.filter.IsZero() {
					t.Errorf("Report.Filtered = %v for filter %+v", rep.Filtered, tt.filter)
				}
				var exported uint64
				err = st.View(t.Context(), func(tx store.Tx) (err error) {
					exported, err = audit.Exported(tx)
					return err
				})
				if err != nil {
					t.Fatal(err)
				}
				// Only a complete export lets Prune delete what it holds.
				wantExported := uint64(0)
				if tt.filter.IsZero() {
					wantExported = 9
				}
				if exported != wantExported {
					t.Errorf("Exported = %d, want %d", exported, wantExported)
				}
			})
		}
	}
}

// TestVerifyFiltered pins what a filtered export can and cannot show.
func TestVerifyFiltered(t *testing.T) {
	s := newSigner(t)
	st := filterLog(t)
	out, _ := export(t, st, s, audit.ExportParams{Filter: audit.Filter{SPIFFEID: webID}}, t0.Add(time.Minute))
	ls := lines(out) // seqs 1, 3, 5, 7, 9

	// A line deleted from a filtered export looks like one the filter
	// left out.
	if _, err := audit.Verify(bytes.NewReader(join(slices.Delete(slices.Clone(ls), 1, 2))), s.keys); err != nil {
		t.Errorf("Verify of a filtered export without a line: %v, want success (a documented limit)", err)
	}
	// An edit still shows in the record's own hash.
	edited := slices.Clone(ls)
	edited[2] = bytes.Replace(edited[2], []byte("example.org/web"), []byte("example.org/wEb"), 1)
	_, err := audit.Verify(bytes.NewReader(join(edited)), s.keys)
	if ve := (*audit.VerifyError)(nil); !errors.As(err, &ve) || ve.Seq != 5 || ve.Line != 3 {
		t.Errorf("Verify of an edited filtered export: %v, want a hash mismatch at line 3, seq 5", err)
	}
	// Swapped lines are out of order.
	swapped := slices.Clone(ls)
	swapped[1], swapped[2] = swapped[2], swapped[1]
	_, err = audit.Verify(bytes.NewReader(join(swapped)), s.keys)
	if ve := (*audit.VerifyError)(nil); !errors.As(err, &ve) || ve.Seq != 3 || ve.Line != 3 {
		t.Errorf("Verify of a reordered filtered export: %v, want an order error at line 3, seq 3", err)
	}
}

func TestExportCSV(t *testing.T) {
	st := filterLog(t)
	s := newSigner(t)
	out, _ := export(t, st, s, audit.ExportParams{Format: audit.FormatCSV}, t0.Add(time.Minute))
	ls := lines(out)
	if got, want := string(ls[0]), "seq,time,type,outcome,actor,subject,details,key_id,signature,prev_hash,hash"; got != want {
		t.Errorf("CSV header %q, want %q", got, want)
	}
	want := scanAll(t, st)
	var got []audit.Record
	for _, l := range ls[1:] {
		got = append(got, parseAny(t, l, audit.FormatCSV))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("CSV rows differ from the log (-log +rows):\n%s", diff)
	}
}

func TestExportJSONL(t *testing.T) {
	st := filterLog(t)
	s := newSigner(t)
	out, _ := export(t, st, s, audit.ExportParams{}, t0.Add(time.Minute))
	want := scanAll(t, st)
	var got []audit.Record
	for _, l := range lines(out) {
		got = append(got, parseAny(t, l, audit.FormatJSONL))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("JSON Lines differ from the log (-log +lines):\n%s", diff)
	}
	// The exact form of a line, which doc.go documents.
	wantLine := `{"seq":7,"time":"2030-01-02T03:04:11.000006007Z","type":"entry.created","outcome":"success","actor":"uid:0(root)","subject":"spiffe://example.org/web","details":{"entry_id":"e1","method":"CreateEntry"},"prev_hash":"` + want[5].Hash + `","hash":"` + want[6].Hash + `"}`
	if got := string(lines(out)[6]); got != wantLine {
		t.Errorf("line 7:\n got %s\nwant %s", got, wantLine)
	}
}

func TestExportUnknownFormat(t *testing.T) {
	st := filterLog(t)
	s := newSigner(t)
	_, err := audit.Export(t.Context(), st, &bytes.Buffer{}, audit.ExportParams{Format: "xml", Checkpoint: s.params()}, t0)
	if err == nil {
		t.Fatal("Export in an unknown format succeeded")
	}
	if n := len(scanAll(t, st)); n != 8 {
		t.Errorf("the log holds %d records after a refused export, want 8: no checkpoint", n)
	}
}

func TestFollow(t *testing.T) {
	st := openStore(t)
	appendRecords(t, st, 0, 3)
	r, w := io.Pipe()
	aw, err := audit.NewWriter(w, audit.FormatJSONL)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- audit.Follow(ctx, st, 2, aw, audit.Filter{Types: []string{audit.TypeSVIDIssued}})
		w.Close()
	}()
	sc := bufio.NewScanner(r)
	next := func() uint64 {
		t.Helper()
		if !sc.Scan() {
			t.Fatalf("follow stream ended: %v", sc.Err())
		}
		rec, err := audit.ParseLine(sc.Bytes())
		if err != nil {
			t.Fatalf("ParseLine: %v", err)
		}
		return rec.Seq
	}
	var got []uint64
	for range 2 {
		got = append(got, next())
	}
	appendRecords(t, st, 3, 2)
	for range 2 {
		got = append(got, next())
	}
	// A record the filter leaves out, then one it keeps.
	err = st.Update(t.Context(), func(tx store.Tx) error {
		_, err := audit.Append(tx, audit.Record{Type: audit.TypeEntryDeleted, Outcome: audit.OutcomeSuccess}, t0)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	appendRecords(t, st, 6, 1)
	got = append(got, next())
	if diff := cmp.Diff([]uint64{2, 3, 4, 5, 7}, got); diff != "" {
		t.Errorf("followed seqs (-want +got):\n%s", diff)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Follow returned %v after cancel, want nil", err)
	}
}

func TestScanChunks(t *testing.T) {
	// More than one chunk, read from the middle, stopped early.
	st := openStore(t)
	appendRecords(t, st, 0, 2500)
	var got []uint64
	err := audit.Scan(t.Context(), st, 990, 2010, func(r audit.Record) error {
		got = append(got, r.Seq)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1021 || got[0] != 990 || got[len(got)-1] != 2010 || !slices.IsSorted(got) {
		t.Errorf("Scan(990, 2010) read %d records from %d to %d", len(got), got[0], got[len(got)-1])
	}
}

func TestExportEmptyLog(t *testing.T) {
	st := openStore(t)
	s := newSigner(t)
	out, res := export(t, st, s, audit.ExportParams{}, t0)
	if res.Records != 1 || res.Checkpoint.Seq != 1 {
		t.Errorf("export of an empty log wrote %d records ending at %d, want its checkpoint, 1", res.Records, res.Checkpoint.Seq)
	}
	if _, err := audit.Verify(bytes.NewReader(out), s.keys); err != nil {
		t.Errorf("Verify: %v", err)
	}
	if rep, err := audit.VerifyStore(t.Context(), openStore(t), s.keys); err != nil || rep.Records != 0 {
		t.Errorf("VerifyStore of an empty store = %+v, %v; want nothing checked", rep, err)
	}
}

// TestExportNamesMissingRecord: an export of a log that lost a record
// fails with a VerifyError naming the missing seq (what `signet audit
// verify` shows for the live log), not a bare error.
func TestExportNamesMissingRecord(t *testing.T) {
	s := newSigner(t)
	st := tamperLog(t, s)
	missing := tamperStore{st, func(r *store.AuditRecord) bool { return r.Seq != 5 }}
	_, err := audit.Export(t.Context(), missing, io.Discard, audit.ExportParams{Checkpoint: s.params()}, t0.Add(time.Minute))
	var ve *audit.VerifyError
	if !errors.As(err, &ve) || !errors.Is(err, audit.ErrMissing) || ve.Seq != 5 || !strings.Contains(err.Error(), "record seq 5 is missing") {
		t.Fatalf("Export of a log without record 5 = %v, want a VerifyError naming seq 5", err)
	}
}
