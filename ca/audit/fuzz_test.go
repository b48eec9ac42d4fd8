package audit_test

import (
	"bytes"
	"crypto"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/signet-mesh/signet/ca/audit"
	"github.com/signet-mesh/signet/ca/store"
)

// FuzzParseLine checks that the JSON Lines parser Verify uses never
// panics, and that a line it accepts is exactly how its record exports.
func FuzzParseLine(f *testing.F) {
	for _, l := range lines(seedExport(f, audit.FormatJSONL)) {
		f.Add(l)
	}
	f.Add([]byte(`{"seq":1}`))
	f.Add([]byte(`{"seq":1,"seq":2}`))
	f.Add([]byte(`{"seq":18446744073709551616}`))
	f.Add([]byte(`{"details":{"a":1}}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := audit.ParseLine(line)
		if err != nil {
			return
		}
		again := encodeLine(t, r, audit.FormatJSONL)
		if !bytes.Equal(again, line) {
			t.Fatalf("accepted line re-exports differently:\n got %q\nfrom %q", again, line)
		}
		r2, err := audit.ParseLine(again)
		if err != nil {
			t.Fatalf("re-exported line does not parse: %v", err)
		}
		if diff := cmp.Diff(r, r2); diff != "" {
			t.Errorf("record changed through export and parse (-first +second):\n%s", diff)
		}
	})
}

// FuzzVerify checks that Verify never panics on any input, in either
// format, and only passes an export that ends with a checkpoint.
func FuzzVerify(f *testing.F) {
	key := newKey(f)
	keys := audit.KeyMap(map[string]crypto.PublicKey{keyID: key.Public()})
	// Small seeds: the fuzzer minimizes every input that finds new
	// coverage, and a checkpoint signature check per run makes that slow
	// on big ones.
	for _, format := range []audit.Format{audit.FormatJSONL, audit.FormatCSV} {
		f.Add(seedExportWith(f, format, key, 1))
	}
	f.Add([]byte("seq,time\n"))
	f.Add([]byte("{\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		rep, err := audit.Verify(bytes.NewReader(in), keys)
		if err != nil {
			var ve *audit.VerifyError
			if !errors.As(err, &ve) {
				t.Fatalf("Verify failed with %v, not a VerifyError", err)
			}
			return
		}
		if rep.Final.Type != audit.TypeCheckpoint || rep.Final.Seq != rep.LastSeq {
			t.Fatalf("Verify passed an export that does not end with a checkpoint: %+v", rep)
		}
	})
}

// seedExport is a small export in format f, signed by a throwaway key.
func seedExport(tb testing.TB, f audit.Format) []byte {
	return seedExportWith(tb, f, newKey(tb), 3)
}

// seedExportWith is an export of n SVID issuances and an attestation
// failure with every kind of character in its reason, signed by key.
func seedExportWith(tb testing.TB, f audit.Format, key crypto.Signer, n int) []byte {
	st := openStore(tb)
	appendRecords(tb, st, 0, n)
	r := issued(9)
	r.Details = map[string]string{"reason": "a \"quoted\", comma\nand newline\t\x01 é"}
	r.Type = audit.TypeNodeAttested
	r.Outcome = audit.OutcomeFailure
	if err := st.Update(tb.Context(), func(tx store.Tx) error {
		_, err := audit.Append(tx, r, t0)
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	out, _ := export(tb, st, signer{key: key}, audit.ExportParams{Format: f}, t0.Add(time.Minute))
	return out
}
