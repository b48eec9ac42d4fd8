package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-mesh/signet/ca/audit"
	"github.com/signet-mesh/signet/ca/rotation"
	"github.com/signet-mesh/signet/ca/store"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

// backupOverAdmin takes a backup through the admin socket's StoreService.
func backupOverAdmin(t *testing.T, c *testCA) ([]byte, *adminv1.BackupSummary) {
	t.Helper()
	stream, err := adminv1.NewStoreServiceClient(c.conn).Backup(context.Background(), &adminv1.BackupRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			t.Fatal("the stream ended without a summary")
		}
		if err != nil {
			t.Fatal(err)
		}
		buf.Write(msg.Data)
		if msg.Summary != nil {
			return buf.Bytes(), msg.Summary
		}
	}
}

func auditTypes(t *testing.T, st store.Store, fromSeq uint64) []audit.Record {
	t.Helper()
	var out []audit.Record
	err := st.View(context.Background(), func(tx store.Tx) error {
		return tx.ForEachAudit(fromSeq, func(r *store.AuditRecord) error {
			out = append(out, audit.Record{Seq: r.Seq, Type: r.Type, Subject: r.Subject, Details: r.Details})
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestBackupAndRestore: a backup over the admin socket is audited and
// restores into a new data dir; a server of another trust domain refuses
// the restored store; the right one records the restore once (the unused
// token revoked, store.restored, a checkpoint with reason restore), and
// the chain verifies.
func TestBackupAndRestore(t *testing.T) {
	c := startCA(t, testOpts{noSync: true})
	c.attest(t, "n1")
	c.token(t, "spare", 0)

	data, sum := backupOverAdmin(t, c)
	if sum.Bytes != int64(len(data)) || sum.TrustDomain != td.Name() || sum.Backend != store.BackendBolt || sum.AuditHeadSeq == 0 {
		t.Errorf("summary %+v for a %d-byte backup", sum, len(data))
	}
	recs := auditTypes(t, c.srv.Store(), sum.AuditHeadSeq+1)
	if len(recs) != 1 || recs[0].Type != audit.TypeStoreBackedUp {
		t.Errorf("records after the backup's head: %+v; want one store.backed_up", recs)
	}

	dir := filepath.Join(t.TempDir(), "restored")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := store.RestoreBolt(filepath.Join(dir, DBFile), bytes.NewReader(data), c.srv.cfg.Clock.Now()); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(filepath.Join(dir, KeysDir), os.DirFS(filepath.Join(c.srv.cfg.DataDir, KeysDir))); err != nil {
		t.Fatal(err)
	}

	ctx := context.Background()
	other := spiffeid.RequireTrustDomainFromString("other.example")
	_, err := New(ctx, Config{TrustDomain: other, DataDir: dir, Passphrase: []byte("test")})
	if err == nil || !strings.Contains(err.Error(), `restored from a backup of trust domain "example.org"`) {
		t.Fatalf("a server of another trust domain on the restored store: %v; want a refusal naming the backup's", err)
	}

	for start := range 2 {
		srv, err := New(ctx, Config{TrustDomain: td, DataDir: dir, Passphrase: []byte("test")})
		if err != nil {
			t.Fatal(err)
		}
		recs := auditTypes(t, srv.Store(), sum.AuditHeadSeq+1)
		var types []string
		for _, r := range recs {
			types = append(types, r.Type)
		}
		want := []string{audit.TypeTokenRevoked, audit.TypeStoreRestored, audit.TypeCheckpoint}
		if strings.Join(types, ",") != strings.Join(want, ",") {
			t.Errorf("start %d: records after the backup's head %v; want %v, once", start, types, want)
		} else if recs[0].Details[audit.DetailReason] != audit.ReasonStoreRestored || recs[2].Details[audit.DetailReason] != audit.ReasonRestore ||
			recs[1].Details[audit.DetailTokensRevoked] != "1" {
			t.Errorf("start %d: restore records %+v", start, recs)
		}
		if _, err := audit.VerifyStore(ctx, srv.Store(), mustKeys(t, srv)); err != nil {
			t.Errorf("start %d: the restored chain does not verify: %v", start, err)
		}
		srv.Close()
	}
}

func mustKeys(t *testing.T, s *Server) audit.Keys {
	t.Helper()
	k, err := rotation.CheckpointKeys(context.Background(), s.store)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestBackupCanceled: a client that goes away mid-backup ends it (the
// server's read transaction does not outlive it): writes go on, and the
// next backup is whole.
func TestBackupCanceled(t *testing.T) {
	c := startCA(t, testOpts{noSync: true})
	parent := c.attest(t, "n").id.String()
	var entries []*adminv1.Entry
	for i := range 1000 {
		entries = append(entries, &adminv1.Entry{SpiffeId: fmt.Sprintf("spiffe://example.org/w/%d", i), ParentId: parent, Selectors: []string{"unix:uid:1000"}})
	}
	if _, err := c.admin.CreateEntries(context.Background(), &adminv1.CreateEntriesRequest{Entries: entries}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := adminv1.NewStoreServiceClient(c.conn).Backup(ctx, &adminv1.BackupRequest{})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if first.Summary != nil {
		t.Fatalf("the store fits one message (%d bytes); the test needs a bigger one", len(first.Data))
	}
	cancel()

	// Writes go on, and nothing recorded a backup that did not finish.
	c.entry(t, "spiffe://example.org/after", parent)
	data, sum := backupOverAdmin(t, c)
	if sum.Bytes != int64(len(data)) || sum.Bytes <= int64(len(first.Data)) {
		t.Errorf("second backup: %d bytes, summary %+v", len(data), sum)
	}
	var backups int
	for _, r := range auditTypes(t, c.srv.Store(), 0) {
		if r.Type == audit.TypeStoreBackedUp {
			backups++
		}
	}
	if backups != 1 {
		t.Errorf("%d store.backed_up records; want 1 (the canceled backup is not one)", backups)
	}
	if _, err := store.ReadBackup(bytes.NewReader(data), io.Discard); err != nil {
		t.Errorf("the backup after a canceled one: %v", err)
	}
}
