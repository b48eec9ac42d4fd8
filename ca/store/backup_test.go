package store_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.etcd.io/bbolt"

	"github.com/signet-mesh/signet/ca/store"
)

// putEntry stores an entry with id and a SPIFFE ID named after it.
func putEntry(t *testing.T, st store.Store, id string) {
	t.Helper()
	err := st.Update(context.Background(), func(tx store.Tx) error {
		rev, err := tx.NextRevision()
		if err != nil {
			return err
		}
		return tx.CreateEntry(&store.Entry{ID: id, SPIFFEID: "spiffe://example.org/" + id, ParentID: "spiffe://example.org/node", Selectors: []string{"unix:uid:1"}, Revision: rev})
	})
	if err != nil {
		t.Fatal(err)
	}
}

func entryIDs(t *testing.T, st store.Store) []string {
	t.Helper()
	var ids []string
	err := st.View(context.Background(), func(tx store.Tx) error {
		es, err := tx.ListEntries(store.EntryFilter{})
		for _, e := range es {
			ids = append(ids, e.ID)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func backup(t *testing.T, st *store.Bolt) ([]byte, store.BackupHeader) {
	t.Helper()
	var buf bytes.Buffer
	h, err := st.Backup(context.Background(), &buf, store.BackupHeader{TrustDomain: "example.org", CreatedAt: t0})
	if err != nil {
		t.Fatalf("Backup: %v", err)
	}
	return buf.Bytes(), h
}

// TestBackupRestoreRoundTrip: a backup taken while writers commit is one
// consistent instant (a prefix of the writes, in order), restores into a
// new file that opens with the data of that instant, and records the
// restore for the server.
func TestBackupRestoreRoundTrip(t *testing.T) {
	st := openBolt(t)
	putEntry(t, st, "e000")

	// Writers keep committing while the backup runs.
	var wg sync.WaitGroup
	var stop atomic.Bool
	wg.Go(func() {
		for i := 1; !stop.Load(); i++ {
			putEntry(t, st, fmt.Sprintf("e%03d", i))
		}
	})
	for len(entryIDs(t, st)) < 5 {
		time.Sleep(time.Millisecond)
	}
	data, h := backup(t, st)
	stop.Store(true)
	wg.Wait()

	want := store.BackupHeader{Format: store.BackupFormat, Backend: store.BackendBolt, SchemaVersion: store.SchemaVersion,
		TrustDomain: "example.org", CreatedAt: t0, Revision: h.Revision}
	if diff := cmp.Diff(want, h); diff != "" {
		t.Errorf("header (-want +got):\n%s", diff)
	}

	path := filepath.Join(t.TempDir(), "signet.db")
	now := t0.Add(time.Hour)
	res, err := store.RestoreBolt(path, bytes.NewReader(data), now)
	if err != nil {
		t.Fatalf("RestoreBolt: %v", err)
	}
	if diff := cmp.Diff(h, res.Header); diff != "" {
		t.Errorf("restored header (-backup +restored):\n%s", diff)
	}
	re, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer re.Close()
	if err := re.Check(); err != nil {
		t.Errorf("restored store: %v", err)
	}
	ids := entryIDs(t, re)
	for i, id := range ids {
		if id != fmt.Sprintf("e%03d", i) {
			t.Fatalf("restored entries %v: not a prefix of the writes", ids)
		}
	}
	var rev int64
	var ri *store.RestoreInfo
	err = re.View(context.Background(), func(tx store.Tx) (err error) {
		if rev, err = tx.Revision(); err != nil {
			return err
		}
		ri, err = store.ReadRestoreInfo(tx)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(ids)) != rev || rev != h.Revision {
		t.Errorf("restored %d entries at revision %d, header revision %d: the copy is not one instant", len(ids), rev, h.Revision)
	}
	if diff := cmp.Diff(&store.RestoreInfo{Backup: h, RestoredAt: now}, ri); diff != "" {
		t.Errorf("restore info (-want +got):\n%s", diff)
	}
}

// TestRestoreRefusesBadBackups: garbage, a file cut anywhere, a flipped
// byte, another backend's or a newer schema's backup are refused with an
// error naming the problem, and leave no store file behind.
func TestRestoreRefusesBadBackups(t *testing.T) {
	st := openBolt(t)
	putEntry(t, st, "e1")
	good, _ := backup(t, st)
	headerEnd := bytes.IndexByte(good[len("signet-store-backup\n"):], '\n') + len("signet-store-backup\n") + 1

	flip := func(i int) []byte {
		b := bytes.Clone(good)
		b[i] ^= 0x01
		return b
	}
	rewrite := func(h store.BackupHeader) []byte {
		var buf bytes.Buffer
		if err := store.WriteBackup(&buf, h, payloadOf(good[headerEnd:len(good)-48])); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	tests := []struct {
		name    string
		data    []byte
		wantErr string
	}{
		{name: "empty", data: nil, wantErr: "does not start with"},
		{name: "garbage", data: []byte("hello, this is not a backup at all\n"), wantErr: "does not start with"},
		{name: "cut in the header", data: good[:headerEnd-5], wantErr: "reading its header"},
		{name: "header only", data: good[:headerEnd], wantErr: "truncated"},
		{name: "cut in the payload", data: good[:headerEnd+4096], wantErr: "truncated"},
		{name: "cut in the trailer", data: good[:len(good)-1], wantErr: "truncated"},
		{name: "flipped payload byte", data: flip(headerEnd + 100), wantErr: "checksum mismatch"},
		{name: "flipped header byte", data: flip(headerEnd - 3), wantErr: "checksum mismatch"}, // the header is covered too
		{name: "another backend", data: rewrite(store.BackupHeader{Backend: "etcd", SchemaVersion: store.SchemaVersion}), wantErr: `backup of a "etcd" store`},
		{name: "newer schema", data: rewrite(store.BackupHeader{Backend: store.BackendBolt, SchemaVersion: store.SchemaVersion + 1}), wantErr: "newer than version"},
		{name: "not a bbolt payload", data: func() []byte {
			var buf bytes.Buffer
			store.WriteBackup(&buf, store.BackupHeader{Backend: store.BackendBolt, SchemaVersion: 1}, payloadOf(bytes.Repeat([]byte("x"), 8192)))
			return buf.Bytes()
		}(), wantErr: "not a bbolt file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "signet.db")
			_, err := store.RestoreBolt(path, bytes.NewReader(tt.data), t0)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("RestoreBolt: %v; want an error containing %q", err, tt.wantErr)
			}
			if left, _ := os.ReadDir(dir); len(left) != 0 {
				t.Errorf("a failed restore left %v behind", left)
			}
		})
	}
}

// payloadOf is a WriteBackup payload of p.
func payloadOf(p []byte) func(io.Writer) error {
	return func(w io.Writer) error {
		_, err := w.Write(p)
		return err
	}
}

// TestRestoreRefusesExistingStore: restore never overwrites a store,
// and says whether a running signet holds it.
func TestRestoreRefusesExistingStore(t *testing.T) {
	st := openBolt(t)
	data, _ := backup(t, st)

	// A store that a running server holds (its lock is taken).
	_, err := store.RestoreBolt(st.Path(), bytes.NewReader(data), t0)
	if !errors.Is(err, store.ErrStoreExists) || !strings.Contains(err.Error(), "in use by a running signet") {
		t.Errorf("restore over a live store: %v; want ErrStoreExists saying it is in use", err)
	}

	// A stopped one.
	path := filepath.Join(t.TempDir(), "signet.db")
	stopped, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	putEntry(t, stopped, "keep")
	stopped.Close()
	_, err = store.RestoreBolt(path, bytes.NewReader(data), t0)
	if !errors.Is(err, store.ErrStoreExists) || !strings.Contains(err.Error(), "already holds a store") {
		t.Errorf("restore over a stopped store: %v; want ErrStoreExists", err)
	}
	re, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer re.Close()
	if diff := cmp.Diff([]string{"keep"}, entryIDs(t, re)); diff != "" {
		t.Errorf("the refused restore changed the store (-want +got):\n%s", diff)
	}
}

// TestOnMigrate: an existing file moved to a newer schema calls
// OnMigrate in the migration's transaction (what it writes commits with
// the migration; its error leaves the file as it was); a new file does
// not.
func TestOnMigrate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "signet.db")
	var calls [][2]uint64
	onMigrate := func(tx store.Tx, from, to uint64) error {
		calls = append(calls, [2]uint64{from, to})
		return tx.PutMeta("migrated", []byte(fmt.Sprint(from, to)))
	}
	st, err := store.Open(path, store.Options{OnMigrate: onMigrate})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	if len(calls) != 0 {
		t.Fatalf("OnMigrate called for a new file: %v", calls)
	}
	setSchema := func(v uint64) {
		db, err := bbolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		err = db.Update(func(tx *bbolt.Tx) error {
			return tx.Bucket([]byte("meta")).Put([]byte(store.MetaSchemaVersionKey), binary.BigEndian.AppendUint64(nil, v))
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	setSchema(store.SchemaVersion - 1)

	_, err = store.Open(path, store.Options{OnMigrate: func(store.Tx, uint64, uint64) error { return errors.New("no audit today") }})
	if err == nil || !strings.Contains(err.Error(), "no audit today") {
		t.Fatalf("Open with a failing OnMigrate: %v; want its error", err)
	}
	st, err = store.Open(path, store.Options{OnMigrate: onMigrate})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if diff := cmp.Diff([][2]uint64{{store.SchemaVersion - 1, store.SchemaVersion}}, calls); diff != "" {
		t.Errorf("OnMigrate calls (-want +got):\n%s", diff)
	}
	err = st.View(context.Background(), func(tx store.Tx) error {
		_, err := tx.GetMeta("migrated")
		return err
	})
	if err != nil {
		t.Errorf("what OnMigrate wrote did not commit: %v", err)
	}
}

// FuzzReadBackup: whatever the bytes, ReadBackup returns (never panics),
// and a file it accepts is exactly what WriteBackup makes of its header
// and payload: nothing else can pass its checksum.
func FuzzReadBackup(f *testing.F) {
	var good bytes.Buffer
	store.WriteBackup(&good, store.BackupHeader{Backend: store.BackendBolt, SchemaVersion: 4, TrustDomain: "example.org", CreatedAt: t0}, payloadOf([]byte("payload bytes")))
	f.Add(good.Bytes())
	f.Add(good.Bytes()[:good.Len()-1])
	f.Add(good.Bytes()[:40])
	f.Add([]byte("signet-store-backup\n{}\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var payload bytes.Buffer
		h, err := store.ReadBackup(bytes.NewReader(data), &payload)
		if err != nil {
			if !errors.Is(err, store.ErrBadBackup) {
				t.Fatalf("ReadBackup error %v is not ErrBadBackup", err)
			}
			return
		}
		var again bytes.Buffer
		if err := store.WriteBackup(&again, h, payloadOf(payload.Bytes())); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again.Bytes(), data) {
			t.Fatalf("accepted a file that WriteBackup does not reproduce")
		}
	})
}
