package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signet-mesh/signet/ca/server"
	"github.com/signet-mesh/signet/ca/store"
)

// TestStoreRestore: restore writes a backup into a new data dir and says
// which key files it still lacks; bad input is refused with one line
// naming the problem and writes nothing.
func TestStoreRestore(t *testing.T) {
	dir := t.TempDir()
	src, err := store.Open(filepath.Join(dir, "src.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	err = src.Update(context.Background(), func(tx store.Tx) error {
		return tx.PutAuthority(&store.Authority{ID: "r1", Kind: store.KindRoot, State: store.StateActive, KeyRef: "root-r1.pem", CreatedAt: time.Now()})
	})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := src.Backup(context.Background(), &buf, store.BackupHeader{TrustDomain: "example.org", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	src.Close()
	backup := filepath.Join(dir, "backup.db")
	os.WriteFile(backup, buf.Bytes(), 0o600)
	garbage := filepath.Join(dir, "garbage.db")
	os.WriteFile(garbage, []byte("not a backup\n"), 0o600)
	existing := filepath.Join(dir, "existing")
	os.MkdirAll(existing, 0o700)
	os.WriteFile(filepath.Join(existing, server.DBFile), nil, 0o600)

	env := &cliEnv{getenv: mapEnv(nil)}
	tests := []struct {
		name    string
		args    []string
		wantErr string
		wantOut string
	}{
		{name: "no --from", args: []string{"--data-dir", filepath.Join(dir, "a")}, wantErr: "--from FILE is required"},
		{name: "no --data-dir", args: []string{"--from", backup}, wantErr: "--data-dir DIR is required"},
		{name: "no such file", args: []string{"--from", filepath.Join(dir, "nope.db"), "--data-dir", filepath.Join(dir, "b")}, wantErr: "no such file"},
		{name: "not a backup", args: []string{"--from", garbage, "--data-dir", filepath.Join(dir, "c")}, wantErr: "not a valid backup: it does not start with"},
		{name: "over an existing store", args: []string{"--from", backup, "--data-dir", existing}, wantErr: "already holds a store"},
		{name: "bolt backup into etcd", args: []string{"--from", backup, "--store", "etcd", "--etcd-endpoints", "http://127.0.0.1:1"}, wantErr: "not of an etcd store: restore it with --data-dir"},
		{name: "restored", args: []string{"--from", backup, "--data-dir", filepath.Join(dir, "new")}, wantOut: "trust domain example.org"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, err := runCLI(t, env, "", append([]string{"store", "restore"}, tt.args...)...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v; want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(stdout, tt.wantOut) {
				t.Errorf("stdout %q; want %q", stdout, tt.wantOut)
			}
			if !strings.Contains(stderr, "keys/root-r1.pem") {
				t.Errorf("stderr %q; want the missing key file named", stderr)
			}
		})
	}
	for _, d := range []string{"a", "b", "c"} {
		if _, err := os.Stat(filepath.Join(dir, d, server.DBFile)); !os.IsNotExist(err) {
			t.Errorf("a refused restore left %s/%s behind", d, server.DBFile)
		}
	}
	if fi, err := os.Stat(filepath.Join(existing, server.DBFile)); err != nil || fi.Size() != 0 {
		t.Errorf("the existing store was touched: %v", err)
	}
}

// TestStoreBackupNeedsOut: --out is required, and an unreachable CA is
// named with what to set.
func TestStoreBackupNeedsOut(t *testing.T) {
	env := &cliEnv{getenv: mapEnv(nil)}
	if _, _, err := runCLI(t, env, "", "store", "backup"); err == nil || !strings.Contains(err.Error(), "--out FILE is required") {
		t.Errorf("backup without --out: %v", err)
	}
	out := filepath.Join(t.TempDir(), "b.db")
	_, _, err := runCLI(t, env, "", "store", "backup", "--out", out, "--admin-socket", filepath.Join(t.TempDir(), "none.sock"))
	if err == nil || !strings.Contains(err.Error(), "cannot reach the CA admin socket") {
		t.Errorf("backup against no CA: %v", err)
	}
	if left, _ := os.ReadDir(filepath.Dir(out)); len(left) != 0 {
		t.Errorf("a failed backup left %v behind", left)
	}
}
