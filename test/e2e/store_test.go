package e2e

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"go.etcd.io/bbolt"

	"github.com/signet-mesh/signet/internal/testdir"
)

// End-to-end tests of backup, restore and schema upgrades (issue #18).

// auditRecord is a line of `signet audit export`.
type auditRecord struct {
	Seq     uint64            `json:"seq"`
	Type    string            `json:"type"`
	Subject string            `json:"subject"`
	Details map[string]string `json:"details"`
}

// exportAudit returns the server's audit trail, in seq order.
func exportAudit(t *testing.T, s *testServer) []auditRecord {
	t.Helper()
	var recs []auditRecord
	sc := bufio.NewScanner(strings.NewReader(s.cli(t, "audit", "export")))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r auditRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("audit export line %q: %v", sc.Text(), err)
		}
		recs = append(recs, r)
	}
	return recs
}

// svidSerials returns the serials `signet svid list` shows.
func svidSerials(t *testing.T, s *testServer) map[string]bool {
	t.Helper()
	var list []struct {
		Serial string `json:"serial"`
	}
	if err := json.Unmarshal([]byte(s.cli(t, "svid", "list", "-o", "json")), &list); err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, r := range list {
		out[r.Serial] = true
	}
	return out
}

// TestRestoreDrill is the restore drill of the operator's handbook
// (docs/operations.md): SVIDs are issued continuously, a backup is taken
// meanwhile, issuing goes on, the server is stopped and its backup
// restored into a new data dir, and the restored server carries on: the
// agent reconnects with the identity it holds (no new token), the audit
// chain verifies and ends with the checkpoint of the restore, and the gap
// is in the trail.
func TestRestoreDrill(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	a := startAgent(t, s, "drill")
	a.entryFor(t, "spiffe://example.org/drill/first")
	fetchUntil(t, a, 30*time.Second, hasOnly("spiffe://example.org/drill/first"))
	spare := newToken(t, s, "spare") // unused at the backup

	// Issue continuously: each new entry makes the agent mint an SVID.
	var created atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			r := runCLI(t, s.env, "entry", "create", "--spiffe-id", fmt.Sprintf("spiffe://example.org/drill/w%d", i),
				"--parent-id", a.nodeID, "--selector", fmt.Sprintf("unix:uid:%d", os.Getuid()))
			if r.code == 0 {
				created.Add(1)
			}
		}
	})
	stopIssuing := func() {
		if stop != nil {
			close(stop)
			wg.Wait()
			stop = nil
		}
	}
	defer stopIssuing()
	waitFor(t, 30*time.Second, "entries created before the backup", func() bool { return created.Load() >= 3 })

	backup := filepath.Join(s.dir, "signet-backup.db")
	r := s.run(t, "store", "backup", "--out", backup)
	if r.code != 0 || !strings.Contains(r.stderr, "backup written to "+backup) {
		t.Fatalf("store backup: exit %d\nstderr: %s", r.code, r.stderr)
	}
	atBackup := created.Load()
	waitFor(t, 30*time.Second, "more entries after the backup", func() bool { return created.Load() >= atBackup+3 })
	stopIssuing()
	// The agent has minted what was created after the backup too.
	waitFor(t, 30*time.Second, "SVIDs of the entries made after the backup", func() bool {
		return len(svidSerials(t, s)) >= int(created.Load())+2 // + the first entry's and the node's
	})
	issuedBefore := svidSerials(t, s)

	// Restoring over the store the running server holds is refused.
	r = runCLI(t, nil, "store", "restore", "--from", backup, "--data-dir", s.dataDir())
	if r.code == 0 || !strings.Contains(r.stderr, "in use by a running signet") {
		t.Fatalf("restore over the live store: exit %d, stderr %q; want a refusal saying a running signet holds it", r.code, r.stderr)
	}
	// A truncated backup is refused and writes nothing.
	data, err := os.ReadFile(backup)
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(s.dir, "cut.db")
	os.WriteFile(cut, data[:len(data)/2], 0o600)
	cutDir := filepath.Join(s.dir, "cut-restore")
	r = runCLI(t, nil, "store", "restore", "--from", cut, "--data-dir", cutDir)
	if r.code == 0 || !strings.Contains(r.stderr, "truncated") {
		t.Fatalf("restore of a truncated backup: exit %d, stderr %q; want a refusal saying it is truncated", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(cutDir, "signet.db")); !os.IsNotExist(err) {
		t.Errorf("a refused restore left a store behind: %v", err)
	}

	s.stop()
	restored := filepath.Join(s.dir, "restored")
	r = runCLI(t, nil, "store", "restore", "--from", backup, "--data-dir", restored)
	if r.code != 0 {
		t.Fatalf("store restore: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, "keys/") {
		t.Errorf("restore did not name the key files the new data dir lacks: %q", r.stderr)
	}
	// The backup holds the store only: the keys come from the old data
	// dir (or the KMS).
	if out, err := exec.Command("cp", "-a", filepath.Join(s.dataDir(), "keys"), filepath.Join(restored, "keys")).CombinedOutput(); err != nil {
		t.Fatalf("copying the keys: %v\n%s", err, out)
	}
	s.data = restored
	s.restart(t)

	// The agent, still running, reconnects with its stored node SVID and
	// gets what is registered now.
	a.entryFor(t, "spiffe://example.org/drill/after-restore")
	fetchUntil(t, a, 60*time.Second, func(x *workloadapi.X509Context) bool {
		for _, id := range ids(x) {
			if id == "spiffe://example.org/drill/after-restore" {
				return true
			}
		}
		return false
	})
	if n := len(logLines(a.proc, "node attested")); n != 1 {
		t.Errorf("the agent attested %d times; want once, before the backup (no new token)", n)
	}
	waitFor(t, 30*time.Second, "agent ready", func() bool { return healthcheck(t, a).code == 0 })
	// And so does it after a restart, without a token.
	a.stop()
	a.run(t)
	waitFor(t, 30*time.Second, "restarted agent ready", func() bool { return healthcheck(t, a).code == 0 })
	if n := len(logLines(a.proc, "node attested")); n != 0 {
		t.Errorf("the restarted agent attested again (%d lines); want its stored identity", n)
	}

	// The audit trail verifies, and records the restore: the spare token
	// revoked, store.restored, then a checkpoint with reason restore.
	if r := s.run(t, "audit", "verify"); r.code != 0 {
		t.Fatalf("audit verify after the restore: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	recs := exportAudit(t, s)
	restoredAt := -1
	for i, rec := range recs {
		if rec.Type == "store.restored" {
			restoredAt = i
		}
	}
	if restoredAt < 0 || restoredAt+1 >= len(recs) {
		t.Fatalf("no store.restored record followed by a checkpoint in the trail")
	}
	rec, cp := recs[restoredAt], recs[restoredAt+1]
	if cp.Type != "checkpoint" || cp.Details["reason"] != "restore" {
		t.Errorf("record after store.restored: %+v; want the checkpoint with reason restore", cp)
	}
	if rec.Details["svid_gap_from"] != rec.Details["backup_created_at"] || rec.Details["svid_gap_until"] == "" || rec.Details["tokens_revoked"] != "1" {
		t.Errorf("store.restored details: %v; want the gap from the backup's time to the restart, one token revoked", rec.Details)
	}
	if prev := recs[restoredAt-1]; prev.Type != "token.revoked" || prev.Subject != "spiffe://example.org/signet/agent/join_token/spare" {
		t.Errorf("record before store.restored: %+v; want the spare token's revocation", prev)
	}
	if out := s.cli(t, "token", "list", "-o", "json"); strings.Contains(out, "spare") {
		t.Errorf("token list after the restore still has the unused token: %s", out)
	}
	if r := runCLI(t, nil, "agent", "--server-address", s.addr, "--trust-domain", s.td, "--trust-bundle", s.bundleFile(t),
		"--join-token", spare, "--socket", filepath.Join(testdir.Short(t), "a.sock"), "--data-dir", filepath.Join(testdir.Short(t), "d")); r.code == 0 {
		t.Errorf("an agent attested with a token revoked by the restore")
	}

	// The gap: SVIDs issued after the backup are missing from the index.
	after := svidSerials(t, s)
	missing := 0
	for serial := range issuedBefore {
		if !after[serial] {
			missing++
		}
	}
	if missing == 0 {
		t.Errorf("every SVID issued before the stop is in the restored index; the backup was taken after issuing stopped?")
	}
	if l := logLines(s.proc, "level=WARN", "restored from a backup"); len(l) != 1 {
		t.Errorf("server log lines about the restore: %q; want one WARN", l)
	}
}

// schemaVersion reads or (v != 0) writes the store schema version of the
// server's store file, which must be closed.
func schemaVersion(t *testing.T, path string, v uint64) uint64 {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var got uint64
	err = db.Update(func(tx *bbolt.Tx) error {
		meta := tx.Bucket([]byte("meta"))
		got = binary.BigEndian.Uint64(meta.Get([]byte("schema_version")))
		if v == 0 {
			return nil
		}
		return meta.Put([]byte("schema_version"), binary.BigEndian.AppendUint64(nil, v))
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestSchemaUpgrade: a server started on a store of an older schema
// migrates it, logs and audits the migration (and the chain verifies);
// one started on a store of a newer schema refuses to start, saying to
// use a newer signet, and leaves the file alone.
func TestSchemaUpgrade(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	s.cli(t, "token", "create", "--node-name", "n1")
	s.stop()
	db := filepath.Join(s.dataDir(), "signet.db")
	current := schemaVersion(t, db, 0)
	schemaVersion(t, db, current-1)

	s.restart(t)
	if l := logLines(s.proc, "migrating store schema", fmt.Sprintf("from_version=%d", current-1), fmt.Sprintf("to_version=%d", current)); len(l) != 1 {
		t.Errorf("migration log lines: %q; want one", l)
	}
	var migrated []auditRecord
	for _, r := range exportAudit(t, s) {
		if r.Type == "store.migrated" {
			migrated = append(migrated, r)
		}
	}
	want := map[string]string{"from_version": fmt.Sprint(current - 1), "to_version": fmt.Sprint(current)}
	if len(migrated) != 1 || fmt.Sprint(migrated[0].Details) != fmt.Sprint(want) {
		t.Errorf("store.migrated records: %+v; want one with %v", migrated, want)
	}
	if r := s.run(t, "audit", "verify"); r.code != 0 {
		t.Errorf("audit verify after the migration: exit %d\n%s", r.code, r.stderr)
	}
	s.stop()

	// An older binary (here: a store from a newer one) refuses.
	schemaVersion(t, db, current+1)
	p := start(t, "server on a newer schema", s.env, "server", "--trust-domain", s.td, "--data-dir", s.dataDir(),
		"--listen", s.addr, "--admin-socket", s.admin)
	waitFor(t, 30*time.Second, "the server to refuse", p.exited)
	wantMsg := fmt.Sprintf("store schema version %d is newer than version %d, the newest this signet supports: use a newer signet", current+1, current)
	if p.err == nil || !strings.Contains(p.out.String(), wantMsg) {
		t.Errorf("server on a newer store: %v\n%s\nwant it to exit saying %q", p.err, p.out, wantMsg)
	}
	if got := schemaVersion(t, db, 0); got != current+1 {
		t.Errorf("the refused store's schema version is now %d; want it untouched (%d)", got, current+1)
	}
}
