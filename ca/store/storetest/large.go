package storetest

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/signet-mesh/signet/ca/store"
)

// RunLarge runs the cases of transactions far larger than one request to
// a distributed backend may carry (etcd: 128 operations, 1.5 MiB): they
// must still commit all or nothing. open is as for Run.
func RunLarge(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		run  func(t *testing.T, st store.Store)
	}{
		{"CreateMany", testCreateMany},
		{"CreateManyRolledBack", testCreateManyRolledBack},
		{"DeleteMany", testDeleteMany},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st := open(t)
			t.Cleanup(func() {
				if err := st.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tt.run(t, st)
		})
	}
}

// ManyEntries is how many entries the large transactions create: what
// `signet entry create --file` must take in one go.
const ManyEntries = 1000

// LargeParent is the parent of the entries of CreateMany.
const LargeParent = "spiffe://example.org/signet/agent/join_token/large"

// LargeEntry is entry i of a large transaction: about 500 bytes stored.
func LargeEntry(i int) *store.Entry {
	e := entry(fmt.Sprintf("large-%04d", i), fmt.Sprintf("spiffe://example.org/ns/payments/sa/service-%04d", i), LargeParent,
		fmt.Sprintf("k8s:ns:payments-%04d", i),
		fmt.Sprintf("k8s:sa:service-account-of-the-payments-team-%04d", i),
		fmt.Sprintf("k8s:pod-label:app.kubernetes.io/name:payments-%04d", i),
		"k8s:container-name:main-application-container-of-the-pod")
	e.DNSNames = []string{fmt.Sprintf("service-%04d.payments.svc.cluster.local", i), fmt.Sprintf("service-%04d.example.org", i)}
	return e
}

// CreateMany creates ManyEntries entries the way `entry create --file`
// does: each takes a revision and has an audit record, all in tx.
func CreateMany(tx store.Tx) error {
	for i := range ManyEntries {
		e := LargeEntry(i)
		var err error
		if e.Revision, err = tx.NextRevision(); err != nil {
			return err
		}
		if err := tx.CreateEntry(e); err != nil {
			return err
		}
		r := auditRecord(0, "")
		r.Type, r.Subject = "entry.created", e.SPIFFEID
		r.Details = map[string]string{"entry_id": e.ID, "selectors": strings.Join(e.Selectors, ",")}
		if err := appendRecord(tx, r); err != nil {
			return err
		}
	}
	return nil
}

// appendRecord appends r after the head, setting its seq and hashes.
func appendRecord(tx store.Tx, r *store.AuditRecord) error {
	seq, hash, err := tx.AuditHead()
	if err != nil {
		return err
	}
	r.Seq, r.PrevHash, r.Hash = seq+1, hash, auditHash(seq+1)
	return tx.AppendAudit(r)
}

// CheckMany fails unless st holds exactly the first n entries of
// CreateMany (n is 0 or ManyEntries), the revision and the audit records.
func CheckMany(t *testing.T, st store.Store, n int) {
	t.Helper()
	view(t, st, func(tx store.Tx) error {
		es, err := tx.ListEntries(store.EntryFilter{ParentID: LargeParent})
		if err != nil {
			return err
		}
		if len(es) != n {
			t.Fatalf("%d entries of the large transaction, want %d", len(es), n)
		}
		for i, e := range es {
			want := store.NormalizeEntry(LargeEntry(i))
			want.Revision = int64(i + 1)
			if diff := cmp.Diff(want, e); diff != "" {
				t.Fatalf("entry %d (-want +got):\n%s", i, diff)
			}
		}
		if all, err := tx.ListEntries(store.EntryFilter{}); err != nil || len(all) != n {
			t.Errorf("ListEntries() = %d entries, %v; want %d", len(all), err, n)
		}
		if rev, err := tx.Revision(); err != nil || rev != int64(n) {
			t.Errorf("Revision = %d, %v; want %d", rev, err, n)
		}
		if seq, _, err := tx.AuditHead(); err != nil || seq != uint64(n) {
			t.Errorf("AuditHead = %d, %v; want %d", seq, err, n)
		}
		seqs := auditSeqs(t, tx, 0)
		if diff := cmp.Diff(seqRange(1, uint64(n)), seqs); diff != "" {
			t.Errorf("audit records (-want +got):\n%s", diff)
		}
		return nil
	})
}

func testCreateMany(t *testing.T, st store.Store) {
	update(t, st, CreateMany)
	CheckMany(t, st, ManyEntries)
	// The entries are indexed: a duplicate of one is refused.
	err := st.Update(t.Context(), func(tx store.Tx) error {
		e := LargeEntry(ManyEntries / 2)
		e.ID = "duplicate"
		return tx.CreateEntry(e)
	})
	if !errors.Is(err, store.ErrAlreadyExists) {
		t.Errorf("creating a duplicate of a large transaction's entry: got %v, want ErrAlreadyExists", err)
	}
}

func testCreateManyRolledBack(t *testing.T, st store.Store) {
	errBoom := errors.New("boom")
	err := st.Update(t.Context(), func(tx store.Tx) error {
		if err := CreateMany(tx); err != nil {
			return err
		}
		return errBoom
	})
	if !errors.Is(err, errBoom) {
		t.Fatalf("Update: got %v, want fn's error", err)
	}
	CheckMany(t, st, 0)
	// Nothing is left locked or half written: the same transaction
	// commits.
	update(t, st, CreateMany)
	CheckMany(t, st, ManyEntries)
}

func testDeleteMany(t *testing.T, st store.Store) {
	update(t, st, CreateMany)
	// Delete every entry, prune every SVID and the audit log in one
	// transaction, with the SVIDs of a busy day to prune.
	update(t, st, func(tx store.Tx) error {
		for i := range 2 * ManyEntries {
			if err := tx.PutSVID(svid(serialN(i), t0.Add(time.Duration(i)*time.Second))); err != nil {
				return err
			}
		}
		return nil
	})
	update(t, st, func(tx store.Tx) error {
		for i := range ManyEntries {
			if err := tx.DeleteEntry(LargeEntry(i).ID); err != nil {
				return err
			}
		}
		n, err := tx.PruneSVIDs(t0.Add(time.Duration(2*ManyEntries) * time.Second))
		if err != nil {
			return err
		}
		if n != 2*ManyEntries {
			t.Errorf("PruneSVIDs deleted %d, want %d", n, 2*ManyEntries)
		}
		if n, err := tx.DeleteAuditBefore(ManyEntries / 2); err != nil || n != ManyEntries/2-1 {
			t.Errorf("DeleteAuditBefore = %d, %v; want %d", n, err, ManyEntries/2-1)
		}
		return nil
	})
	view(t, st, func(tx store.Tx) error {
		if es, err := tx.ListEntries(store.EntryFilter{}); err != nil || len(es) != 0 {
			t.Errorf("ListEntries = %d entries, %v; want none", len(es), err)
		}
		if _, err := tx.GetSVID(serialN(0)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetSVID of a pruned SVID: %v, want ErrNotFound", err)
		}
		if diff := cmp.Diff(seqRange(ManyEntries/2, ManyEntries), auditSeqs(t, tx, 0)); diff != "" {
			t.Errorf("audit records left (-want +got):\n%s", diff)
		}
		return nil
	})
}
