package etcdstore_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/signet-mesh/signet/ca/store"
	"github.com/signet-mesh/signet/ca/store/etcdstore"
)

// snapshot is what a store holds, read through store.Tx, to compare a
// copy with its source.
type snapshot struct {
	Authorities []*store.Authority
	Entries     []*store.Entry
	Nodes       []*store.Node
	Evicted     []*store.Node
	Tokens      []*store.JoinToken
	UsedToken   *store.JoinToken
	MTLS        []*store.MTLSPolicy
	Current     []*store.SVIDRecord
	SVIDs       []*store.SVIDRecord
	Audit       []*store.AuditRecord
	Meta        map[string]string
	Revision    int64
	HeadSeq     uint64
	HeadHash    string
}

func takeSnapshot(t *testing.T, st store.Store, usedHash string, metaKeys []string) snapshot {
	t.Helper()
	var s snapshot
	err := st.View(t.Context(), func(tx store.Tx) (err error) {
		if s.Authorities, err = tx.ListAuthorities(); err != nil {
			return err
		}
		if s.Entries, err = tx.ListEntries(store.EntryFilter{}); err != nil {
			return err
		}
		if s.Nodes, err = tx.ListNodes(); err != nil {
			return err
		}
		if s.Evicted, err = tx.ListEvictedNodes(); err != nil {
			return err
		}
		if s.Tokens, err = tx.ListJoinTokens(); err != nil {
			return err
		}
		if s.UsedToken, err = tx.GetJoinToken(usedHash); err != nil {
			return err
		}
		if s.MTLS, err = tx.ListMTLSPolicies(); err != nil {
			return err
		}
		if err := tx.ForEachCurrentSVID(func(r *store.SVIDRecord) error { s.Current = append(s.Current, r); return nil }); err != nil {
			return err
		}
		slices.SortFunc(s.Current, func(a, b *store.SVIDRecord) int { return strings.Compare(a.Serial, b.Serial) })
		if err := tx.ForEachSVID(func(r *store.SVIDRecord) error { s.SVIDs = append(s.SVIDs, r); return nil }); err != nil {
			return err
		}
		if err := tx.ForEachAudit(0, func(r *store.AuditRecord) error { s.Audit = append(s.Audit, r); return nil }); err != nil {
			return err
		}
		s.Meta = map[string]string{}
		for _, k := range metaKeys {
			v, err := tx.GetMeta(k)
			if err != nil {
				return err
			}
			s.Meta[k] = string(v)
		}
		if s.Revision, err = tx.Revision(); err != nil {
			return err
		}
		s.HeadSeq, s.HeadHash, err = tx.AuditHead()
		return err
	})
	if err != nil {
		t.Fatalf("reading the store: %v", err)
	}
	return s
}

// fillBolt writes every kind of record into a new Bolt store, more SVIDs
// and audit records than one import transaction carries, and prunes the
// start of the audit log, as a server that ran a while would have.
func fillBolt(t *testing.T, path string, svids, audits int) (usedHash string, metaKeys []string) {
	t.Helper()
	b, err := store.Open(path, store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	td := "spiffe://example.org"
	update(t, b, func(tx store.Tx) error {
		for _, a := range []*store.Authority{
			{ID: "r1", Kind: store.KindRoot, State: store.StateActive, CertDER: []byte("root"), KeyRef: "root-r1", KeyType: "ec-p256", CreatedAt: t0},
			{ID: "i1", Kind: store.KindIntermediate, State: store.StateActive, CertDER: []byte("int"), KeyRef: "intermediate-i1", ParentID: "r1", CreatedAt: t0.Add(time.Second), ServerName: "default"},
		} {
			if err := tx.PutAuthority(a); err != nil {
				return err
			}
		}
		for i := range 300 {
			rev, err := tx.NextRevision()
			if err != nil {
				return err
			}
			e := &store.Entry{ID: fmt.Sprintf("e%03d", i), SPIFFEID: fmt.Sprintf("%s/w/%d", td, i), ParentID: td + "/node/n1",
				Selectors: []string{"unix:uid:" + fmt.Sprint(i)}, X509TTL: time.Hour, Revision: rev, CreatedAt: t0, FederatesWith: []string{"other.org"}}
			if err := tx.CreateEntry(e); err != nil {
				return err
			}
		}
		for _, n := range []string{"n1", "n2", "n3"} {
			if err := tx.PutNode(&store.Node{SPIFFEID: td + "/node/" + n, Attestor: "join_token", Serial: "aa" + n, AttestedAt: t0, ExpiresAt: t0.Add(time.Hour), Incarnation: "inc-" + n}); err != nil {
				return err
			}
		}
		if _, err := tx.EvictNode(td+"/node/n3", t0.Add(time.Minute)); err != nil {
			return err
		}
		for i, used := range []bool{false, true} {
			jt := &store.JoinToken{Hash: fmt.Sprintf("%064x", i+1), ID: fmt.Sprint("tok", i), SPIFFEID: td + "/node/t", ExpiresAt: t0.Add(time.Hour), CreatedAt: t0}
			if err := tx.PutJoinToken(jt); err != nil {
				return err
			}
			if used {
				usedHash = jt.Hash
				if _, err := tx.TakeJoinToken(jt.Hash, t0.Add(time.Second)); err != nil {
					return err
				}
			}
		}
		if err := tx.PutMTLSPolicy(&store.MTLSPolicy{ID: "p1", Prefix: td + "/w/", Mode: "STRICT", Revision: 1, UpdatedAt: t0}); err != nil {
			return err
		}
		metaKeys = []string{"bundle_revision", "root_key/root-r1", "federation/other.org"}
		for _, k := range metaKeys {
			if err := tx.PutMeta(k, []byte("value of "+k)); err != nil {
				return err
			}
		}
		for i := range svids {
			// Two SVIDs of one entry issued in the same second: the
			// current index keeps the one recorded last, which expires
			// first, so a replay in expiry order would keep the other.
			nb := t0.Add(time.Duration(i/2) * time.Second)
			r := &store.SVIDRecord{Serial: fmt.Sprintf("%032x", i+1), SPIFFEID: td + "/w/1", NodeID: td + "/node/n1",
				EntryID: fmt.Sprintf("e%03d", (i/2)%7), AuthorityID: "i1", NotBefore: nb, NotAfter: nb.Add(time.Hour - time.Duration(i%2)*time.Minute)}
			if err := tx.PutSVID(r); err != nil {
				return err
			}
		}
		for range audits {
			if err := appendAudit(tx, "entry.create"); err != nil {
				return err
			}
		}
		_, err := tx.DeleteAuditBefore(11)
		return err
	})
	return usedHash, metaKeys
}

func TestImport(t *testing.T) {
	path := filepath.Join(t.TempDir(), "signet.db")
	usedHash, metaKeys := fillBolt(t, path, 5000, 5000)
	src, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	want := takeSnapshot(t, src, usedHash, metaKeys)
	if len(want.Audit) != 4990 || want.Audit[0].Seq != 11 {
		t.Fatalf("source audit log: %d records from %d, want 4990 from 11", len(want.Audit), want.Audit[0].Seq)
	}

	dst := openStore(t, etcdstore.Options{})
	n, err := dst.Import(t.Context(), src)
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	wantCounts := etcdstore.ImportCounts{Authorities: 2, Entries: 300, Nodes: 2, Evicted: 1, Tokens: 2, MTLSPolicies: 1, Meta: 3,
		CurrentSVIDs: 7, SVIDs: 5000, Audit: 4990, AuditFirst: 11, AuditHead: 5000, Revision: 300}
	if diff := cmp.Diff(wantCounts, n); diff != "" {
		t.Errorf("counts (-want +got):\n%s", diff)
	}
	got := takeSnapshot(t, dst, usedHash, metaKeys)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("the copy differs from the source (-source +copy):\n%s", diff)
	}

	// The chain goes on in the copy where it stopped.
	update(t, dst, func(tx store.Tx) error { return appendAudit(tx, "entry.delete") })

	// A second import into the same prefix is refused and changes nothing.
	before := takeSnapshot(t, dst, usedHash, metaKeys)
	if _, err := dst.Import(t.Context(), src); !errors.Is(err, etcdstore.ErrNotEmpty) {
		t.Fatalf("Import into a non-empty prefix: %v, want ErrNotEmpty", err)
	}
	if diff := cmp.Diff(before, takeSnapshot(t, dst, usedHash, metaKeys)); diff != "" {
		t.Errorf("a refused import changed the store (-before +after):\n%s", diff)
	}
}

// TestImportEmpty copies a store with no audit record: the head stays
// where it was.
func TestImportEmpty(t *testing.T) {
	path := filepath.Join(t.TempDir(), "signet.db")
	src, err := store.Open(path, store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst := openStore(t, etcdstore.Options{})
	n, err := dst.Import(t.Context(), src)
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	if diff := cmp.Diff(etcdstore.ImportCounts{}, n); diff != "" {
		t.Errorf("counts (-want +got):\n%s", diff)
	}
}
