package store_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.etcd.io/bbolt"

	"github.com/signet-mesh/signet/ca/store"
	"github.com/signet-mesh/signet/ca/store/storetest"
	"github.com/signet-mesh/signet/internal/clock"
)

const waitTimeout = 10 * time.Second

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 6007, time.UTC)

// openBolt opens a new store under t.TempDir. After the test has closed it,
// it reopens the file and checks that pages, records and indexes are
// consistent, the way bbolt's own btesting does.
func openBolt(t *testing.T) *store.Bolt {
	t.Helper()
	return openBoltWith(t, store.Options{})
}

func openBoltWith(t *testing.T, opts store.Options) *store.Bolt {
	t.Helper()
	path := filepath.Join(t.TempDir(), "signet.db")
	st, err := store.Open(path, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		re, err := store.Open(path, store.Options{})
		if err != nil {
			t.Fatalf("reopening for the consistency check: %v", err)
		}
		defer re.Close()
		if err := re.Check(); err != nil {
			t.Errorf("store left inconsistent: %v", err)
		}
	})
	return st
}

func TestBolt(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openBolt(t) })
}

func TestOpenCreatesPrivateFile(t *testing.T) {
	st := openBolt(t)
	fi, err := os.Stat(st.Path())
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("store file mode = %v, want 0600", got)
	}
}

func TestReopenKeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "signet.db")
	st, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	want := &store.Entry{ID: "e1", SPIFFEID: "spiffe://example.org/web", ParentID: "spiffe://example.org/n1", Selectors: []string{"unix:uid:1"}, X509TTL: time.Hour, CreatedAt: t0}
	err = st.Update(t.Context(), func(tx store.Tx) error {
		if _, err := tx.NextRevision(); err != nil {
			return err
		}
		return tx.CreateEntry(want)
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	st, err = store.Open(path, store.Options{})
	if err != nil {
		t.Fatalf("reopening: %v", err)
	}
	defer st.Close()
	err = st.View(t.Context(), func(tx store.Tx) error {
		got, err := tx.GetEntry("e1")
		if err != nil {
			return err
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("entry after reopen (-want +got):\n%s", diff)
		}
		if rev, err := tx.Revision(); err != nil || rev != 1 {
			t.Errorf("Revision after reopen = %d, %v; want 1", rev, err)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("View: %v", err)
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "signet.db")
	st, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	newer := store.SchemaVersion + 1
	rawUpdate(t, path, func(tx *bbolt.Tx) error {
		return tx.Bucket([]byte("meta")).Put([]byte(store.MetaSchemaVersionKey), be64(newer))
	})

	_, err = store.Open(path, store.Options{})
	if err == nil {
		t.Fatal("Open of a file with a newer schema succeeded")
	}
	for _, want := range []string{fmt.Sprint(newer), fmt.Sprint(store.SchemaVersion), path} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
}

func TestOpenMigratesEmptyBoltFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "signet.db")
	rawUpdate(t, path, func(tx *bbolt.Tx) error { return nil })
	st, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer st.Close()
	err = st.View(t.Context(), func(tx store.Tx) error {
		got, err := tx.GetMeta(store.MetaSchemaVersionKey)
		if err != nil {
			return err
		}
		if diff := cmp.Diff(be64(store.SchemaVersion), got); diff != "" {
			t.Errorf("recorded schema version (-want +got):\n%s", diff)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("View: %v", err)
	}
}

func TestOpenLockedFile(t *testing.T) {
	st := openBolt(t)
	_, err := store.Open(st.Path(), store.Options{Timeout: 10 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "lock") {
		t.Errorf("second Open of a locked file: got error %v, want one about the lock", err)
	}
}

func TestPutMetaReservedKey(t *testing.T) {
	st := openBolt(t)
	for _, key := range []string{store.MetaSchemaVersionKey, "revision", "audit_head"} {
		err := st.Update(t.Context(), func(tx store.Tx) error { return tx.PutMeta(key, []byte("x")) })
		if err == nil {
			t.Errorf("PutMeta(%q) succeeded, want an error", key)
		}
	}
}

func TestCorruptRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "signet.db")
	st, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	rawUpdate(t, path, func(tx *bbolt.Tx) error {
		for _, b := range []string{"authorities", "entries", "nodes", "join_tokens", "svids", "audit"} {
			if err := tx.Bucket([]byte(b)).Put([]byte("bad-key"), []byte(`{"id": 1`)); err != nil {
				return err
			}
		}
		return nil
	})
	st, err = store.Open(path, store.Options{})
	if err != nil {
		t.Fatalf("reopening: %v", err)
	}
	defer st.Close()

	tests := []struct {
		bucket string
		op     func(tx store.Tx) error
	}{
		{"authorities", func(tx store.Tx) error { _, err := tx.GetAuthority("bad-key"); return err }},
		{"authorities", func(tx store.Tx) error { _, err := tx.ListAuthorities(); return err }},
		{"entries", func(tx store.Tx) error { _, err := tx.GetEntry("bad-key"); return err }},
		{"entries", func(tx store.Tx) error { _, err := tx.ListEntries(store.EntryFilter{}); return err }},
		{"entries", func(tx store.Tx) error { return tx.DeleteEntry("bad-key") }},
		{"nodes", func(tx store.Tx) error { _, err := tx.GetNode("bad-key"); return err }},
		{"nodes", func(tx store.Tx) error { _, err := tx.ListNodes(); return err }},
		{"join_tokens", func(tx store.Tx) error { _, err := tx.TakeJoinToken("bad-key", t0); return err }},
		{"join_tokens", func(tx store.Tx) error { _, err := tx.ListJoinTokens(); return err }},
		{"svids", func(tx store.Tx) error { _, err := tx.GetSVID("bad-key"); return err }},
		{"svids", func(tx store.Tx) error { return tx.ForEachSVID(func(*store.SVIDRecord) error { return nil }) }},
		{"svids", func(tx store.Tx) error { _, err := tx.PruneSVIDs(t0); return err }},
		{"audit", func(tx store.Tx) error { return tx.ForEachAudit(0, func(*store.AuditRecord) error { return nil }) }},
	}
	for i, tt := range tests {
		t.Run(fmt.Sprintf("%d-%s", i, tt.bucket), func(t *testing.T) {
			err := st.Update(t.Context(), tt.op)
			if !errors.Is(err, store.ErrCorrupt) {
				t.Fatalf("got error %v, want ErrCorrupt", err)
			}
			for _, want := range []string{tt.bucket, "bad-key"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not name %q", err, want)
				}
			}
		})
	}
}

// TestAuditRecordUnderWrongKey checks that a record moved to another
// seq's key (as by a hand edit of the file) is reported, not read as the
// record of that seq.
func TestAuditRecordUnderWrongKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "signet.db")
	st, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	rawUpdate(t, path, func(tx *bbolt.Tx) error {
		data := store.EncodeAudit(&store.AuditRecord{Seq: 2, Time: t0, Type: "x", Outcome: "success", PrevHash: "a", Hash: "b"})
		return tx.Bucket([]byte("audit")).Put(be64(3), data)
	})
	st, err = store.Open(path, store.Options{})
	if err != nil {
		t.Fatalf("reopening: %v", err)
	}
	defer st.Close()
	err = st.View(t.Context(), func(tx store.Tx) error {
		return tx.ForEachAudit(0, func(*store.AuditRecord) error { return nil })
	})
	if !errors.Is(err, store.ErrCorrupt) || !strings.Contains(err.Error(), `"3"`) {
		t.Errorf("got error %v, want ErrCorrupt naming key 3", err)
	}
}

// holdWriter runs an Update that blocks until the returned release is
// called, so that Batch calls queue up behind it. It returns once the
// Update holds the writer, with the ID of its transaction.
func holdWriter(t *testing.T, st *store.Bolt) (txID int, release func()) {
	t.Helper()
	held := make(chan int)
	done := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- st.Update(context.Background(), func(tx store.Tx) error {
			held <- store.TxID(tx)
			<-done
			return nil
		})
	}()
	txID = <-held
	var once sync.Once
	release = func() {
		once.Do(func() {
			close(done)
			if err := <-errc; err != nil {
				t.Errorf("holding Update: %v", err)
			}
		})
	}
	t.Cleanup(release)
	return txID, release
}

// waitQueued waits until n Batch calls are queued.
func waitQueued(t *testing.T, st *store.Bolt, n int) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for st.QueueLen() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d Batch calls queued after %v, want %d", st.QueueLen(), waitTimeout, n)
		}
		<-tick.C
	}
}

// nextTxID commits an empty-handed Update and returns its transaction ID:
// how many commits happened since an earlier ID.
func nextTxID(t *testing.T, st *store.Bolt) int {
	t.Helper()
	var id int
	err := st.Update(t.Context(), func(tx store.Tx) error {
		id = store.TxID(tx)
		return tx.PutMeta("probe", []byte("x"))
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	return id
}

// TestBatchGroupCommit checks that calls queued while a commit is in
// flight are committed together in the next transaction, that a failing
// and a panicking call are left out of it, and that the group is bounded.
func TestBatchGroupCommit(t *testing.T) {
	st := openBolt(t)
	const (
		failing   = 3
		panicking = 5
	)
	n := store.DefaultMaxBatchSize + 1
	heldID, release := holdWriter(t, st)

	var (
		mu       sync.Mutex
		lastTxID = make([]int, n) // transaction of each call's last run
		runs     = make([]int, n)
	)
	errBoom := errors.New("boom")
	errs := make([]error, n)
	panics := make([]any, n)
	var wg sync.WaitGroup
	call := func(i int) {
		wg.Go(func() {
			defer func() { panics[i] = recover() }()
			errs[i] = st.Batch(t.Context(), func(tx store.Tx) error {
				mu.Lock()
				lastTxID[i] = store.TxID(tx)
				runs[i]++
				mu.Unlock()
				if err := tx.PutSVID(&store.SVIDRecord{Serial: fmt.Sprintf("%032x", i), NotAfter: t0}); err != nil {
					return err
				}
				switch i {
				case failing:
					return errBoom
				case panicking:
					panic("kaboom")
				}
				return nil
			})
		})
	}
	// The failing calls queue first, so they are in the first group.
	call(failing)
	call(panicking)
	waitQueued(t, st, 2)
	for i := range n {
		if i != failing && i != panicking {
			call(i)
		}
	}
	waitQueued(t, st, n)
	release()
	wg.Wait()

	counts := map[int]int{} // committed calls per transaction ID
	for i := range n {
		switch i {
		case failing:
			if !errors.Is(errs[i], errBoom) {
				t.Errorf("failing call: got error %v, want its own", errs[i])
			}
		case panicking:
			if p, ok := panics[i].(error); !ok || !strings.Contains(p.Error(), "kaboom") {
				t.Errorf("panicking call: Batch panicked with %v, want fn's panic", panics[i])
			}
		default:
			if errs[i] != nil || panics[i] != nil {
				t.Errorf("call %d: got error %v, panic %v; want nil", i, errs[i], panics[i])
			}
			counts[lastTxID[i]]++
		}
		if (i == failing || i == panicking) && runs[i] != 1 {
			t.Errorf("call %d failed but ran %d times, want 1", i, runs[i])
		}
	}
	// DefaultMaxBatchSize calls were taken first (two of them failing), the last
	// one in a second group.
	want := map[int]int{heldID + 1: store.DefaultMaxBatchSize - 2, heldID + 2: 1}
	if diff := cmp.Diff(want, counts); diff != "" {
		t.Errorf("committed calls per transaction ID (-want +got):\n%s", diff)
	}
	if got := nextTxID(t, st); got != heldID+3 {
		t.Errorf("transaction after the batch has ID %d, want %d: the groups took more than two commits", got, heldID+3)
	}
}

// TestBatchCommitDelay checks the commit delay: a lone caller never
// waits, and once a commit has carried several callers, the next leader
// waits twice as long as that commit took, so that callers arriving
// meanwhile share its transaction.
func TestBatchCommitDelay(t *testing.T) {
	clk := clock.NewFake(t0)
	st := openBoltWith(t, store.Options{Clock: clk, MaxBatchDelay: 10 * time.Millisecond, ReleaseInterval: -1})
	batch := func(advance time.Duration) (txID <-chan int) {
		c := make(chan int, 1)
		go func() {
			var id int
			err := st.Batch(t.Context(), func(tx store.Tx) error {
				id = store.TxID(tx)
				clk.Advance(advance) // the commit "takes" this long
				return tx.PutMeta("k", []byte("v"))
			})
			if err != nil {
				t.Errorf("Batch: %v", err)
			}
			c <- id
		}()
		return c
	}
	wait := func(c <-chan int, what string) int {
		t.Helper()
		select {
		case id := <-c:
			return id
		case <-time.After(waitTimeout):
			t.Fatalf("%s: Batch did not return", what)
			return 0
		}
	}

	// A lone caller commits at once, with no clock advance.
	wait(batch(0), "lone caller")

	// A commit of two callers that took 3ms makes the store busy.
	_, release := holdWriter(t, st)
	first, second := batch(3*time.Millisecond), batch(0)
	waitQueued(t, st, 2)
	release()
	if a, b := wait(first, "first of a pair"), wait(second, "second of a pair"); a != b {
		t.Fatalf("queued pair committed in transactions %d and %d, want one", a, b)
	}

	// The next leader waits 6ms on the clock; callers arriving meanwhile
	// join its commit.
	leader := batch(0)
	waitFor(t, "the leader waiting on the clock", func() bool { return clk.Waiters() == 1 })
	joiners := []<-chan int{batch(0), batch(0)}
	waitQueued(t, st, 3)
	clk.Advance(6*time.Millisecond - time.Nanosecond)
	if st.QueueLen() != 3 {
		t.Fatalf("the leader took the queue before its delay was up")
	}
	clk.Advance(time.Nanosecond)
	id := wait(leader, "leader")
	for _, j := range joiners {
		if got := wait(j, "joiner"); got != id {
			t.Errorf("a caller that arrived during the delay committed in transaction %d, the leader in %d", got, id)
		}
	}

	// That commit took no time on the clock: the next one does not wait.
	wait(batch(0), "caller after an instant commit")
}

// waitFor polls cond until it holds or waitTimeout passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestBatchCanceledWhileQueued(t *testing.T) {
	st := openBolt(t)
	_, release := holdWriter(t, st)

	ctx, cancel := context.WithCancel(t.Context())
	var ran atomic.Bool
	errc := make(chan error, 1)
	go func() {
		errc <- st.Batch(ctx, func(tx store.Tx) error {
			ran.Store(true)
			return tx.PutSVID(&store.SVIDRecord{Serial: "01", NotAfter: t0})
		})
	}()
	waitQueued(t, st, 1)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("got error %v, want context.Canceled", err)
	}
	if n := st.QueueLen(); n != 0 {
		t.Errorf("%d calls still queued after the cancellation, want 0", n)
	}
	release()
	if ran.Load() {
		t.Errorf("fn ran after its caller's ctx ended")
	}
}

func TestUpdateCanceledWhileWaiting(t *testing.T) {
	st := openBolt(t)
	_, release := holdWriter(t, st)
	defer release()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := st.Update(ctx, func(tx store.Tx) error {
		t.Errorf("fn ran under a canceled ctx")
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("got error %v, want context.Canceled", err)
	}
}

// rawUpdate changes the file at path with bbolt directly, as another
// program or a disk fault could.
func rawUpdate(t *testing.T, path string, fn func(tx *bbolt.Tx) error) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatalf("opening with bbolt: %v", err)
	}
	if err := db.Update(fn); err != nil {
		t.Fatalf("writing with bbolt: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("closing bbolt: %v", err)
	}
}

// be64 is how the store encodes its counters.
func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// fuzzRecords are one valid record of each stored type, seeds of
// FuzzDecodeRecord and the types it decodes into.
var fuzzRecords = []any{
	&store.Authority{ID: "a1", Kind: store.KindRoot, State: store.StateActive, CertDER: []byte{0x30, 0x82}, UpstreamChainDER: [][]byte{{1}}, KeyRef: "keys/a1.pem", KeyType: "ec-p256", NotBefore: t0, NotAfter: t0.Add(time.Hour), CreatedAt: t0, StateChangedAt: t0},
	&store.Entry{ID: "e1", SPIFFEID: "spiffe://example.org/web", ParentID: "spiffe://example.org/n1", Selectors: []string{"unix:gid:1", "unix:uid:1"}, X509TTL: time.Hour, JWTTTL: time.Minute, DNSNames: []string{"web"}, Revision: 3, CreatedAt: t0},
	&store.Node{SPIFFEID: "spiffe://example.org/n1", Attestor: "join_token", Serial: "0a", AttestedAt: t0, ExpiresAt: t0, AppliedBundleRevision: 2},
	&store.JoinToken{Hash: "ab", ID: "t1", SPIFFEID: "spiffe://example.org/signet/agent/join_token/t1", ExpiresAt: t0, CreatedAt: t0},
	&store.SVIDRecord{Serial: "01", SPIFFEID: "spiffe://example.org/web", NodeID: "spiffe://example.org/n1", EntryID: "e1", AuthorityID: "a1", NotBefore: t0, NotAfter: t0},
}

// FuzzDecodeRecord checks that the decoder of stored records never panics,
// reports every failure as ErrCorrupt, and that what it accepts encodes
// back to a record that decodes the same.
func FuzzDecodeRecord(f *testing.F) {
	for kind, r := range fuzzRecords {
		data, err := store.EncodeRecord(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(kind), data)
	}
	f.Add(uint8(0), []byte("null"))
	f.Add(uint8(1), []byte(`{"selectors": "unix:uid:1"}`))
	f.Fuzz(func(t *testing.T, kind uint8, data []byte) {
		// A new, zero record of the chosen type.
		newRecord := func() any {
			switch kind % uint8(len(fuzzRecords)) {
			case 0:
				return new(store.Authority)
			case 1:
				return new(store.Entry)
			case 2:
				return new(store.Node)
			case 3:
				return new(store.JoinToken)
			default:
				return new(store.SVIDRecord)
			}
		}
		got := newRecord()
		err := store.DecodeRecord([]byte("bucket"), []byte("key"), data, got)
		if err != nil {
			if !errors.Is(err, store.ErrCorrupt) {
				t.Fatalf("decode error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		again, err := store.EncodeRecord(got)
		if err != nil {
			t.Fatalf("decoded record does not encode: %v", err)
		}
		got2 := newRecord()
		if err := store.DecodeRecord([]byte("bucket"), []byte("key"), again, got2); err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		// omitempty drops empty lists: nil and empty are the same record.
		if diff := cmp.Diff(got, got2, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("record changed through encode and decode (-first +second):\n%s", diff)
		}
	})
}

// FuzzDecodeAudit checks that the decoder of stored audit records never
// panics and that what it accepts encodes to a record that decodes the
// same.
func FuzzDecodeAudit(f *testing.F) {
	for _, r := range []*store.AuditRecord{
		{Seq: 1, Time: t0, Type: "svid.issued", Outcome: "success", Actor: "spiffe://example.org/n1", Subject: "spiffe://example.org/web", Details: map[string]string{"serial": "01", "entry_id": "e1"}, PrevHash: "00", Hash: "01"},
		{Seq: 1 << 40, Time: time.Date(1900, 1, 1, 0, 0, 0, 999999999, time.UTC), Type: "checkpoint", Outcome: "success", KeyID: "k", Signature: "c2ln", PrevHash: "01", Hash: "02"},
	} {
		f.Add(store.EncodeAudit(r))
	}
	f.Add([]byte{1})
	f.Add([]byte{2})
	f.Add([]byte(`{"seq":1}`))
	f.Add(store.MarshalAudit(&store.AuditRecord{Seq: 2, Time: t0, Type: "x", Outcome: "success", Details: map[string]string{"serial": "0a1b"}, PrevHash: "ab", Hash: "cd"}))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, ok := store.DecodeAudit(data)
		if !ok {
			return
		}
		again := store.EncodeAudit(r)
		r2, ok := store.DecodeAudit(again)
		if !ok {
			t.Fatalf("re-encoded record %x does not decode", again)
		}
		if diff := cmp.Diff(r, r2); diff != "" {
			t.Errorf("record changed through encode and decode (-first +second):\n%s", diff)
		}
		// Packed hex is half its length; a string that is not hex takes
		// at most one byte more of length than in the first encoding.
		if strs := 8 + 2*len(r.Details); len(again) > len(data)+strs {
			t.Errorf("re-encoded record is %d bytes, more than the %d decoded plus one a string (%d)", len(again), len(data), strs)
		}
	})
}

// BenchmarkBatchPut records SVIDs from many goroutines, as the CA does
// under an issuance burst, through Update (one fsync each) and Batch
// (group commit).
func BenchmarkBatchPut(b *testing.B) {
	for _, bb := range []struct {
		name  string
		write func(st *store.Bolt) func(context.Context, func(store.Tx) error) error
	}{
		{"Update", func(st *store.Bolt) func(context.Context, func(store.Tx) error) error { return st.Update }},
		{"Batch", func(st *store.Bolt) func(context.Context, func(store.Tx) error) error { return st.Batch }},
	} {
		b.Run(bb.name, func(b *testing.B) {
			st, err := store.Open(filepath.Join(b.TempDir(), "signet.db"), store.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			write := bb.write(st)
			var serial atomic.Uint64
			b.SetParallelism(32)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					r := &store.SVIDRecord{
						Serial:      fmt.Sprintf("%032x", serial.Add(1)),
						SPIFFEID:    "spiffe://example.org/web",
						NodeID:      "spiffe://example.org/signet/agent/join_token/n1",
						EntryID:     "e1",
						AuthorityID: "int-1",
						NotBefore:   t0,
						NotAfter:    t0.Add(time.Hour),
					}
					if err := write(ctx, func(tx store.Tx) error { return tx.PutSVID(r) }); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// TestMigrateSVIDKeys: a version 2 file keyed its SVID index by serial;
// opening it rekeys every record by expiry, and they can still be found,
// listed in expiry order and pruned.
func TestMigrateSVIDKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v2.db")
	st, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()

	// Turn the file back into version 2 with serial-keyed records.
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		v := make([]byte, 8)
		binary.BigEndian.PutUint64(v, 2)
		if err := tx.Bucket([]byte("meta")).Put([]byte("schema_version"), v); err != nil {
			return err
		}
		for i, hours := range []int{3, 1, 2} {
			serial := fmt.Sprintf("%032x", i+1)
			data, _ := json.Marshal(store.SVIDRecord{Serial: serial, SPIFFEID: "spiffe://example.org/w", NotAfter: t0.Add(time.Duration(hours) * time.Hour)})
			if err := tx.Bucket([]byte("svids")).Put([]byte(serial), data); err != nil {
				return err
			}
		}
		return nil
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}

	st, err = store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var order []string
	err = st.Update(context.Background(), func(tx store.Tx) error {
		if _, err := tx.GetSVID(fmt.Sprintf("%032x", 1)); err != nil {
			return err
		}
		if err := tx.ForEachSVID(func(r *store.SVIDRecord) error { order = append(order, r.Serial[31:]); return nil }); err != nil {
			return err
		}
		n, err := tx.PruneSVIDs(t0.Add(90 * time.Minute))
		if n != 1 {
			return fmt.Errorf("pruned %d, want 1", n)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"2", "3", "1"}, order); diff != "" {
		t.Errorf("order after migration (-want +got):\n%s", diff)
	}
}

// TestMigrateCurrentSVIDs: a version 3 file has no current-SVID index;
// opening it builds the index from the SVID records, newest per entry and
// node, and later records keep it.
func TestMigrateCurrentSVIDs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v3.db")
	st, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	rec := func(serial int, entry, node string, notBefore time.Time) *store.SVIDRecord {
		return &store.SVIDRecord{Serial: fmt.Sprintf("%032x", serial), SPIFFEID: "spiffe://example.org/w", EntryID: entry, NodeID: node,
			AuthorityID: "i1", NotBefore: notBefore, NotAfter: notBefore.Add(time.Hour)}
	}
	err = st.Update(context.Background(), func(tx store.Tx) error {
		for _, r := range []*store.SVIDRecord{
			rec(1, "e1", "n1", t0), rec(2, "e1", "n1", t0.Add(time.Minute)), rec(3, "e1", "n1", t0.Add(-time.Minute)),
			rec(4, "e2", "n1", t0), rec(5, "", "n1", t0),
		} {
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

	// Turn the file back into version 3: no current index.
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		v := make([]byte, 8)
		binary.BigEndian.PutUint64(v, 3)
		if err := tx.Bucket([]byte("meta")).Put([]byte("schema_version"), v); err != nil {
			return err
		}
		if err := tx.DeleteBucket([]byte("evicted_nodes")); err != nil {
			return err
		}
		return tx.DeleteBucket([]byte("svids_current"))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}

	st, err = store.Open(path, store.Options{})
	if err != nil {
		t.Fatalf("opening a version 3 store: %v", err)
	}
	defer st.Close()
	current := func() []string {
		var out []string
		err := st.View(context.Background(), func(tx store.Tx) error {
			return tx.ForEachCurrentSVID(func(r *store.SVIDRecord) error {
				out = append(out, r.Serial[31:])
				return nil
			})
		})
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(out)
		return out
	}
	if diff := cmp.Diff([]string{"2", "4", "5"}, current()); diff != "" {
		t.Errorf("current SVIDs after migration (-want +got):\n%s", diff)
	}
	if err := st.Update(context.Background(), func(tx store.Tx) error { return tx.PutSVID(rec(6, "e2", "n1", t0.Add(time.Minute))) }); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"2", "5", "6"}, current()); diff != "" {
		t.Errorf("current SVIDs after a new record (-want +got):\n%s", diff)
	}
}

// TestBatchMaxSize: Options.MaxBatchSize bounds the calls one group commit
// carries; what is queued beyond it goes in the following commits.
func TestBatchMaxSize(t *testing.T) {
	var (
		mu     sync.Mutex
		groups []int
	)
	st := openBoltWith(t, store.Options{MaxBatchSize: 2, MaxBatchDelay: -1, OnGroupCommit: func(calls int) {
		mu.Lock()
		defer mu.Unlock()
		groups = append(groups, calls)
	}})
	_, release := holdWriter(t, st)
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Go(func() {
			if err := st.Batch(t.Context(), func(tx store.Tx) error { return tx.PutMeta(fmt.Sprint(i), nil) }); err != nil {
				t.Errorf("Batch: %v", err)
			}
		})
	}
	waitQueued(t, st, 5)
	release()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	// The held Update is a group commit of its own (Update joins the
	// group commit too), then the five queued calls by twos.
	if diff := cmp.Diff([]int{1, 2, 2, 1}, groups); diff != "" {
		t.Errorf("calls per group commit with MaxBatchSize 2 (-want +got):\n%s", diff)
	}
}

// TestBatchDelayOff: a negative MaxBatchDelay never waits, even after a
// commit that carried several callers.
func TestBatchDelayOff(t *testing.T) {
	clk := clock.NewFake(t0)
	st := openBoltWith(t, store.Options{Clock: clk, MaxBatchDelay: -1, ReleaseInterval: -1})
	_, release := holdWriter(t, st)
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			err := st.Batch(t.Context(), func(tx store.Tx) error {
				clk.Advance(time.Millisecond) // a commit that "takes" time
				return tx.PutMeta("k", nil)
			})
			if err != nil {
				t.Errorf("Batch: %v", err)
			}
		})
	}
	waitQueued(t, st, 2)
	release()
	wg.Wait()
	// The store is busy, but the next leader commits without arming a
	// timer on the clock.
	done := make(chan error, 1)
	go func() { done <- st.Batch(t.Context(), func(tx store.Tx) error { return tx.PutMeta("k", nil) }) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("Batch waited with MaxBatchDelay off (%d timers armed)", clk.Waiters())
	}
}

func TestOpenRefusesNegativeBatchSize(t *testing.T) {
	_, err := store.Open(filepath.Join(t.TempDir(), "db"), store.Options{MaxBatchSize: -1})
	if err == nil || !strings.Contains(err.Error(), "MaxBatchSize") {
		t.Errorf("Open with MaxBatchSize -1 = %v, want an error naming MaxBatchSize", err)
	}
}
