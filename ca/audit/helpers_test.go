package audit_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/signet-mesh/signet/ca/audit"
	"github.com/signet-mesh/signet/ca/store"
)

// t0 has nanoseconds, so that a lossy time encoding shows.
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 6007, time.UTC)

const (
	nodeID = "spiffe://example.org/signet/agent/join_token/n1"
	webID  = "spiffe://example.org/web"
	apiID  = "spiffe://example.org/api"
	keyID  = "jwt-key-1"
)

// openStore opens a new bbolt store under t.TempDir, closed when the test
// ends.
func openStore(tb testing.TB) store.Store {
	tb.Helper()
	st, err := store.Open(filepath.Join(tb.TempDir(), "signet.db"), store.Options{NoSync: true})
	if err != nil {
		tb.Fatalf("store.Open: %v", err)
	}
	tb.Cleanup(func() {
		if err := st.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return st
}

func newKey(tb testing.TB) *ecdsa.PrivateKey {
	tb.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// signer is the key checkpoints are signed with in these tests, and keys
// the verifier's view of it.
type signer struct {
	key  crypto.Signer
	keys audit.Keys
}

func newSigner(tb testing.TB) signer {
	k := newKey(tb)
	return signer{key: k, keys: audit.KeyMap(map[string]crypto.PublicKey{keyID: k.Public()})}
}

func (s signer) params() audit.CheckpointParams {
	return audit.CheckpointParams{Signer: s.key, KeyID: keyID}
}

// issued is record i of a test log: an SVID issuance, alternating between
// two workloads.
func issued(i int) audit.Record {
	subject := webID
	if i%2 == 1 {
		subject = apiID
	}
	return audit.Record{
		Type:    audit.TypeSVIDIssued,
		Outcome: audit.OutcomeSuccess,
		Actor:   nodeID,
		Subject: subject,
		Details: map[string]string{
			audit.DetailSerial:          fmt.Sprintf("%032x", i),
			audit.DetailNotBefore:       audit.FormatTime(t0),
			audit.DetailNotAfter:        audit.FormatTime(t0.Add(time.Hour)),
			audit.DetailPublicKeySHA256: audit.SHA256Hex([]byte{byte(i)}),
			audit.DetailEntryID:         "e1",
		},
	}
}

// appendRecords appends n records in one transaction, the i-th at
// t0 + (first+i) seconds, and returns them as stored.
func appendRecords(tb testing.TB, st store.Store, first, n int) []audit.Record {
	tb.Helper()
	var out []audit.Record
	err := st.Update(tb.Context(), func(tx store.Tx) error {
		out = out[:0]
		for i := first; i < first+n; i++ {
			r, err := audit.Append(tx, issued(i), t0.Add(time.Duration(i)*time.Second))
			if err != nil {
				return err
			}
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		tb.Fatalf("appending: %v", err)
	}
	return out
}

// checkpoint appends a periodic checkpoint at t.
func checkpoint(tb testing.TB, st store.Store, s signer, t time.Time) audit.Record {
	tb.Helper()
	var cp audit.Record
	err := st.Update(tb.Context(), func(tx store.Tx) (err error) {
		cp, err = audit.Checkpoint(tx, s.params(), t)
		return err
	})
	if err != nil {
		tb.Fatalf("Checkpoint: %v", err)
	}
	return cp
}

// export exports st with p (its checkpoint signed by s) at t.
func export(tb testing.TB, st store.Store, s signer, p audit.ExportParams, t time.Time) ([]byte, audit.ExportResult) {
	tb.Helper()
	p.Checkpoint = s.params()
	p.Checkpoint.Actor = audit.AdminActor(1000, "alice")
	var buf bytes.Buffer
	res, err := audit.Export(tb.Context(), st, &buf, p, t)
	if err != nil {
		tb.Fatalf("Export: %v", err)
	}
	return buf.Bytes(), res
}

// scanAll reads the whole log.
func scanAll(tb testing.TB, st store.Store) []audit.Record {
	tb.Helper()
	var out []audit.Record
	err := audit.Scan(tb.Context(), st, 0, 0, func(r audit.Record) error {
		out = append(out, r)
		return nil
	})
	if err != nil {
		tb.Fatalf("Scan: %v", err)
	}
	return out
}

// lines splits an export into its lines, without newlines.
func lines(b []byte) [][]byte {
	return bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
}

func join(ls [][]byte) []byte {
	if len(ls) == 0 {
		return nil
	}
	return append(bytes.Join(ls, []byte("\n")), '\n')
}
