package etcdstore_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/signet-mesh/signet/ca/store"
	"github.com/signet-mesh/signet/ca/store/etcdstore"
	"github.com/signet-mesh/signet/ca/store/storetest"
)

// bigMeta are meta keys whose values (400 KiB each) make the restore
// split its writes by bytes, not only by operations.
var bigMeta = []string{"big-1", "big-2", "big-3"}

// fillEntries is how many entries fill creates: more keys than one Txn
// takes.
const fillEntries = 300

// fill puts a record in every table, fillEntries entries with their
// revisions and audit records, and bigMeta.
func fill(t *testing.T, st store.Store) {
	t.Helper()
	for i := 0; i < fillEntries; i += 100 {
		update(t, st, func(tx store.Tx) error {
			for j := i; j < i+100; j++ {
				e := storetest.LargeEntry(j)
				var err error
				if e.Revision, err = tx.NextRevision(); err != nil {
					return err
				}
				if err := tx.CreateEntry(e); err != nil {
					return err
				}
				if err := appendAudit(tx, "entry.created"); err != nil {
					return err
				}
			}
			return nil
		})
	}
	update(t, st, func(tx store.Tx) error {
		for i, k := range bigMeta {
			if err := tx.PutMeta(k, bytes.Repeat([]byte{byte('a' + i)}, 400<<10)); err != nil {
				return err
			}
		}
		n := &store.Node{SPIFFEID: "spiffe://example.org/signet/agent/join_token/n1", Attestor: "join_token", Serial: "01", AttestedAt: t0, ExpiresAt: t0.Add(time.Hour)}
		evicted := &store.Node{SPIFFEID: "spiffe://example.org/signet/agent/join_token/n2", Attestor: "join_token", Serial: "02", AttestedAt: t0, ExpiresAt: t0.Add(time.Hour)}
		for _, err := range []error{
			tx.PutAuthority(&store.Authority{ID: "root-1", Kind: store.KindRoot, State: store.StateActive, KeyRef: "root-1.pem", CreatedAt: t0}),
			tx.PutAuthority(&store.Authority{ID: "root-0", Kind: store.KindRoot, State: store.StateRetired, KeyRef: "root-0.pem", CreatedAt: t0}),
			tx.PutNode(n),
			tx.PutNode(evicted),
			tx.PutJoinToken(&store.JoinToken{Hash: "h1", ID: "tok-1", SPIFFEID: "spiffe://example.org/signet/agent/join_token/tok-1", ExpiresAt: t0.Add(time.Hour), CreatedAt: t0}),
			tx.PutMTLSPolicy(&store.MTLSPolicy{ID: "p1", SPIFFEID: "spiffe://example.org/ns/payments/sa/service-0001", Mode: "strict"}),
			tx.PutSVID(&store.SVIDRecord{Serial: "0a", SPIFFEID: "spiffe://example.org/ns/payments/sa/service-0001", NodeID: n.SPIFFEID, EntryID: "large-0001", AuthorityID: "root-1", NotBefore: t0, NotAfter: t0.Add(time.Hour)}),
		} {
			if err != nil {
				return err
			}
		}
		_, err := tx.EvictNode(evicted.SPIFFEID, t0)
		return err
	})
}

// storeState is what a store shows through store.Tx.
type storeState struct {
	Authorities []*store.Authority
	Entries     []*store.Entry
	Nodes       []*store.Node
	Evicted     []*store.Node
	Tokens      []*store.JoinToken
	Policies    []*store.MTLSPolicy
	Current     []*store.SVIDRecord
	SVIDs       []*store.SVIDRecord
	Audit       []*store.AuditRecord
	Meta        map[string][32]byte // the SHA-256: cmp.Diff of 400 KiB is slow
	Revision    int64
	AuditSeq    uint64
	AuditHash   string
}

func stateOf(t *testing.T, st store.Store) storeState {
	t.Helper()
	var s storeState
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
		if s.Policies, err = tx.ListMTLSPolicies(); err != nil {
			return err
		}
		if err := tx.ForEachCurrentSVID(func(r *store.SVIDRecord) error { s.Current = append(s.Current, r); return nil }); err != nil {
			return err
		}
		if err := tx.ForEachSVID(func(r *store.SVIDRecord) error { s.SVIDs = append(s.SVIDs, r); return nil }); err != nil {
			return err
		}
		if err := tx.ForEachAudit(0, func(r *store.AuditRecord) error { s.Audit = append(s.Audit, r); return nil }); err != nil {
			return err
		}
		s.Meta = map[string][32]byte{}
		for _, k := range bigMeta {
			v, err := tx.GetMeta(k)
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			s.Meta[k] = sha256.Sum256(v)
		}
		if s.Revision, err = tx.Revision(); err != nil {
			return err
		}
		s.AuditSeq, s.AuditHash, err = tx.AuditHead()
		return err
	})
	if err != nil {
		t.Fatalf("reading the store: %v", err)
	}
	return s
}

func takeBackup(t *testing.T, st *etcdstore.Store) ([]byte, store.BackupHeader) {
	t.Helper()
	var buf bytes.Buffer
	h, err := st.Backup(t.Context(), &buf, store.BackupHeader{TrustDomain: "example.org", CreatedAt: t0})
	if err != nil {
		t.Fatalf("Backup: %v", err)
	}
	return buf.Bytes(), h
}

func restore(prefix string, data []byte, now time.Time) (*store.RestoreResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return etcdstore.Restore(ctx, etcdstore.Options{Client: sharedClient, Prefix: prefix}, bytes.NewReader(data), now)
}

// TestBackupRestoreRoundTrip: a backup taken while writers commit is one
// instant of the store, leaves out the replicas' leased keys, and
// restores (in Txns within etcd's default limits) into a new prefix that
// opens as the same store, with the restore recorded for the server.
func TestBackupRestoreRoundTrip(t *testing.T) {
	srcPrefix := newPrefix(t)
	src := openStore(t, etcdstore.Options{Prefix: srcPrefix})
	fill(t, src)
	rep := src.NewReplica("ca-1", 0, nil)
	if err := rep.Claim(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer rep.Release()

	// Writers keep committing (a revision, an entry and an audit record
	// each) while the backup runs.
	var wg sync.WaitGroup
	var stop atomic.Bool
	var written atomic.Int64
	wg.Go(func() {
		for i := 0; !stop.Load(); i++ {
			err := src.Update(context.Background(), func(tx store.Tx) error {
				rev, err := tx.NextRevision()
				if err != nil {
					return err
				}
				if err := tx.CreateEntry(&store.Entry{ID: fmt.Sprintf("w%05d", i), SPIFFEID: fmt.Sprintf("spiffe://example.org/w%05d", i), ParentID: "spiffe://example.org/n", Revision: rev, CreatedAt: t0}); err != nil {
					return err
				}
				return appendAudit(tx, "entry.created")
			})
			if err != nil {
				t.Errorf("writer: %v", err)
				return
			}
			written.Add(1)
		}
	})
	deadline := time.Now().Add(waitTimeout)
	for written.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	during, h := takeBackup(t, src)
	for n := written.Load(); written.Load() < n+3 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond) // some writes after the backup
	}
	stop.Store(true)
	wg.Wait()

	want := store.BackupHeader{Format: store.BackupFormat, Backend: etcdstore.BackendEtcd, SchemaVersion: 1,
		TrustDomain: "example.org", CreatedAt: t0, Revision: h.Revision, AuditHeadSeq: h.AuditHeadSeq, AuditHeadHash: h.AuditHeadHash}
	if diff := cmp.Diff(want, h); diff != "" {
		t.Errorf("header (-want +got):\n%s", diff)
	}

	// The backup during the writes is one instant: every write up to the
	// header's revision, none after, with the audit head of that instant.
	now := t0.Add(time.Hour)
	prefix := newPrefix(t)
	if _, err := restore(prefix, during, now); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	for _, k := range keysUnder(t, prefix, "/") {
		if strings.Contains(k, "/replicas/") || strings.Contains(k, "/election") || strings.Contains(k, "/live/") {
			t.Errorf("restored a replica's leased key %s", k)
		}
	}
	s := stateOf(t, openStore(t, etcdstore.Options{Prefix: prefix}))
	base := int64(fillEntries)
	if got := int64(len(s.Entries)) - base; got < 3 || got >= written.Load() || s.Revision != base+got || h.Revision != s.Revision {
		t.Errorf("restored %d written entries at revision %d (header %d), of %d written: not one instant", got, s.Revision, h.Revision, written.Load())
	}
	if s.AuditSeq != h.AuditHeadSeq || s.AuditHash != h.AuditHeadHash || uint64(len(s.Audit)) != s.AuditSeq {
		t.Errorf("restored audit head %d %q with %d records; header %d %q", s.AuditSeq, s.AuditHash, len(s.Audit), h.AuditHeadSeq, h.AuditHeadHash)
	}

	// Once the writes stop, a backup restores into an identical store.
	after, h2 := takeBackup(t, src)
	prefix2 := newPrefix(t)
	res, err := restore(prefix2, after, now)
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if diff := cmp.Diff(h2, res.Header); diff != "" {
		t.Errorf("restored header (-backup +restored):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"root-1.pem"}, res.KeyRefs); diff != "" {
		t.Errorf("key refs (-want +got):\n%s", diff)
	}
	re := openStore(t, etcdstore.Options{Prefix: prefix2})
	if diff := cmp.Diff(stateOf(t, src), stateOf(t, re)); diff != "" {
		t.Errorf("restored store differs (-source +restored):\n%s", diff)
	}
	var ri *store.RestoreInfo
	err = re.View(t.Context(), func(tx store.Tx) (err error) {
		ri, err = store.ReadRestoreInfo(tx)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&store.RestoreInfo{Backup: h2, RestoredAt: now}, ri); diff != "" {
		t.Errorf("restore info (-want +got):\n%s", diff)
	}
	// The restored store takes writes.
	update(t, re, func(tx store.Tx) error { return appendAudit(tx, "after.restore") })
}

// TestRestoreRefuses: a prefix holding a store or a replica's claim, and a
// file that is not an etcd backup, are refused with an error naming the
// problem, and nothing is written.
func TestRestoreRefuses(t *testing.T) {
	src := openStore(t, etcdstore.Options{})
	update(t, src, func(tx store.Tx) error { return appendAudit(tx, "x") })
	good, _ := takeBackup(t, src)

	used := newPrefix(t)
	openStore(t, etcdstore.Options{Prefix: used})
	claimed := newPrefix(t)
	rep := openStore(t, etcdstore.Options{Prefix: claimed}).NewReplica("ca-7", 0, nil)
	if err := rep.Claim(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer rep.Release()

	withHeader := func(h store.BackupHeader, payload string) []byte {
		var buf bytes.Buffer
		if err := store.WriteBackup(&buf, h, func(w io.Writer) error {
			_, err := w.Write([]byte(payload))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	etcdHeader := store.BackupHeader{Backend: etcdstore.BackendEtcd, SchemaVersion: 1}
	tests := []struct {
		name    string
		prefix  string
		data    []byte
		want    error
		wantErr string
	}{
		{name: "prefix holds a store", prefix: used, data: good, want: etcdstore.ErrPrefixInUse, wantErr: "restore into a new prefix"},
		{name: "replica claim", prefix: claimed, data: good, want: etcdstore.ErrPrefixInUse, wantErr: `server "ca-7" holds a claim`},
		{name: "garbage", data: []byte("not a backup\n"), want: store.ErrBadBackup, wantErr: "does not start with"},
		{name: "truncated", data: good[:len(good)-10], want: store.ErrBadBackup, wantErr: "truncated"},
		{name: "bolt backup", data: withHeader(store.BackupHeader{Backend: store.BackendBolt, SchemaVersion: 1}, "bolt"), want: store.ErrBadBackup, wantErr: `backup of a "bolt" store`},
		{name: "newer layout", data: withHeader(store.BackupHeader{Backend: etcdstore.BackendEtcd, SchemaVersion: 99}, "x"), wantErr: "newer than version"},
		{name: "foreign payload", data: withHeader(etcdHeader, "hello"), want: store.ErrBadBackup, wantErr: "payload does not start with"},
		{name: "no commit record", data: withHeader(etcdHeader, "signet-etcd-kv 1\n\x05/a/00\x01x"), want: store.ErrBadBackup, wantErr: "no commit record"},
		{name: "foreign key", data: withHeader(etcdHeader, "signet-etcd-kv 1\n\x0a/replicas/\x01x"), want: store.ErrBadBackup, wantErr: `key "/replicas/" is not one`},
		{name: "cut record", data: withHeader(etcdHeader, "signet-etcd-kv 1\n\x09/m/commit\x40{}"), want: store.ErrBadBackup, wantErr: "reading a value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := tt.prefix
			if prefix == "" {
				prefix = newPrefix(t)
			}
			before := keysUnder(t, prefix, "/")
			_, err := restore(prefix, tt.data, t0)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Fatalf("Restore: %v; want %v containing %q", err, tt.want, tt.wantErr)
			}
			if diff := cmp.Diff(before, keysUnder(t, prefix, "/")); diff != "" {
				t.Errorf("keys changed (-before +after):\n%s", diff)
			}
		})
	}
}

// TestBackupDuringChunkedCommit: a backup taken while a chunked commit is
// in flight holds the committed state it started from, without its chunks
// or undo records.
func TestBackupDuringChunkedCommit(t *testing.T) {
	src := openStore(t, etcdstore.Options{MaxTxnOps: 8})
	update(t, src, smallWrite)
	var (
		data    []byte
		h       store.BackupHeader
		backups int
	)
	etcdstore.SetTestHooks(src, func(chunk int) {
		if chunk == 1 { // chunks 0 and 1, and their undo records, are in etcd
			data, h = takeBackup(t, src)
			backups++
		}
	}, nil)
	update(t, src, func(tx store.Tx) error {
		for i := range 40 {
			e := storetest.LargeEntry(i)
			var err error
			if e.Revision, err = tx.NextRevision(); err != nil {
				return err
			}
			if err := tx.CreateEntry(e); err != nil {
				return err
			}
		}
		return nil
	})
	if backups != 1 {
		t.Fatalf("%d backups during the chunked commit, want 1 (was it chunked?)", backups)
	}
	prefix := newPrefix(t)
	if _, err := restore(prefix, data, t0); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if undo := keysUnder(t, prefix, etcdstore.DirUndo); len(undo) != 0 {
		t.Errorf("restored undo records %v", undo)
	}
	s := stateOf(t, openStore(t, etcdstore.Options{Prefix: prefix}))
	if len(s.Entries) != 1 || s.Entries[0].ID != "small" || s.Revision != 1 || h.Revision != 1 {
		t.Errorf("restored %d entries at revision %d (header %d); want the one entry committed before the chunked commit, revision 1", len(s.Entries), s.Revision, h.Revision)
	}
}
