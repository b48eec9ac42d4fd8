package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/signet-mesh/signet/ca/server"
	"github.com/signet-mesh/signet/ca/store"
)

// TestStoreMigrateRefuses: bad input, and a store a running server holds,
// are refused with one line naming the problem, before anything is
// written (the copy itself is covered by test/e2e TestStoreMigrate).
func TestStoreMigrateRefuses(t *testing.T) {
	dir := t.TempDir()
	held := filepath.Join(dir, "held")
	os.MkdirAll(held, 0o700)
	st, err := store.Open(filepath.Join(held, server.DBFile), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	empty := filepath.Join(dir, "empty")
	os.MkdirAll(empty, 0o700)
	to := "etcd:http://127.0.0.1:1"

	env := &cliEnv{getenv: mapEnv(nil)}
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "no --from", args: []string{"--to", to}, wantErr: "--from \"\": want bolt:PATH"},
		{name: "not bolt", args: []string{"--from", "sqlite:" + held, "--to", to}, wantErr: "want bolt:PATH"},
		{name: "no such path", args: []string{"--from", "bolt:" + filepath.Join(dir, "nope"), "--to", to}, wantErr: "no such file"},
		{name: "dir without a store", args: []string{"--from", "bolt:" + empty, "--to", to}, wantErr: "the data dir holds no store"},
		{name: "no --to", args: []string{"--from", "bolt:" + held}, wantErr: "want etcd:URL[,URL...]"},
		{name: "bad endpoint", args: []string{"--from", "bolt:" + held, "--to", "etcd:etcd-0:2379"}, wantErr: "want a URL like https://etcd-0:2379"},
		{name: "bad prefix", args: []string{"--from", "bolt:" + held, "--to", to, "--etcd-prefix", "signet/"}, wantErr: "must start with / and not end with one"},
		{name: "cert without key", args: []string{"--from", "bolt:" + held, "--to", to, "--etcd-cert", "c.pem"}, wantErr: "etcd_cert and etcd_key must be given together"},
		{name: "store in use", args: []string{"--from", "bolt:" + held, "--to", to}, wantErr: "a running server holds the store: stop it first"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := runCLI(t, env, "", append([]string{"store", "migrate"}, tt.args...)...)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v; want one containing %q", err, tt.wantErr)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(empty, server.DBFile)); !os.IsNotExist(err) {
		t.Errorf("a refused migrate created a store in the empty dir")
	}
}
