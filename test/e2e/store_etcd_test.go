package e2e

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/signet-mesh/signet/ca/store/etcdstore/etcdtest"
)

// TestEtcdRestore: a server on etcd is backed up with `signet store
// backup`; the backup restores only into an empty etcd prefix, and a
// server started on the restored prefix records the restore in an audit
// trail that verifies.
func TestEtcdRestore(t *testing.T) {
	signetBinary(t) // skips under -short before etcd starts
	t.Parallel()
	cluster := etcdtest.New(t, 1)
	endpoints := strings.Join(cluster.Endpoints(), ",")
	etcdFlags := func(prefix string) []string {
		return []string{"--store", "etcd", "--etcd-endpoints", endpoints, "--etcd-prefix", prefix}
	}
	s := startServer(t, append(etcdFlags("/e2e-src"), "--server-name", "r1")...)
	newToken(t, s, "spare") // unused at the backup: the restore revokes it
	s.cli(t, "entry", "create", "--spiffe-id", "spiffe://example.org/kept", "--parent-id", "spiffe://example.org/signet/agent/join_token/spare", "--selector", "unix:uid:1")

	backup := filepath.Join(s.dir, "etcd-backup.db")
	if r := s.run(t, "store", "backup", "--out", backup); r.code != 0 || !strings.Contains(r.stderr, "backup written to "+backup) {
		t.Fatalf("store backup: exit %d\nstderr: %s", r.code, r.stderr)
	}

	for _, tt := range []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "into the live prefix", args: etcdFlags("/e2e-src"), wantErr: `server "r1" holds a claim`},
		{name: "without --store etcd", args: []string{"--data-dir", filepath.Join(s.dir, "bolt")}, wantErr: "restore it with --store etcd"},
	} {
		r := runCLI(t, nil, append([]string{"store", "restore", "--from", backup}, tt.args...)...)
		if r.code == 0 || !strings.Contains(r.stderr, tt.wantErr) {
			t.Errorf("%s: exit %d, stderr %q; want a refusal containing %q", tt.name, r.code, r.stderr, tt.wantErr)
		}
	}

	s.stop()
	r := runCLI(t, nil, append([]string{"store", "restore", "--from", backup}, etcdFlags("/e2e-restored")...)...)
	if r.code != 0 || !strings.Contains(r.stdout, "into etcd prefix /e2e-restored") {
		t.Fatalf("store restore: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	// The same data dir: the intermediate's key file is there.
	s.restart(t, append(etcdFlags("/e2e-restored"), "--server-name", "r1")...)

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
	if restoredAt < 1 || restoredAt+1 >= len(recs) {
		t.Fatalf("no store.restored record followed by a checkpoint in the trail")
	}
	if cp := recs[restoredAt+1]; cp.Type != "checkpoint" || cp.Details["reason"] != "restore" {
		t.Errorf("record after store.restored: %+v; want the checkpoint with reason restore", cp)
	}
	if prev := recs[restoredAt-1]; prev.Type != "token.revoked" || prev.Subject != "spiffe://example.org/signet/agent/join_token/spare" {
		t.Errorf("record before store.restored: %+v; want the spare token's revocation", prev)
	}
	if out := s.cli(t, "entry", "list", "-o", "json"); !strings.Contains(out, "spiffe://example.org/kept") {
		t.Errorf("entry list after the restore lacks the entry of the backup: %s", out)
	}
}
