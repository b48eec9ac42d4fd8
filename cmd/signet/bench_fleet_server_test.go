package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBenchServerExitEndsWait: a server that exits on its own (here, as
// when the port picked for it was taken in the meantime) ends the wait for
// its admin socket with the server's own last line, not a minute later
// with "did not answer".
func TestBenchServerExitEndsWait(t *testing.T) {
	dir := t.TempDir()
	b := &fleetBench{dir: dir, admin: adminOptions{socket: filepath.Join(dir, "admin.sock")},
		serverArgs: []string{"/bin/sh", "-c", "echo 'starting'; echo 'signet: listen 127.0.0.1:1: bind: address already in use' >&2; exit 1"}}
	if err := b.launchServer(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := b.connectAdmin(ctx)
	if err == nil {
		t.Fatal("connectAdmin succeeded with no server")
	}
	defer b.closeAdmin()
	for _, want := range []string{"signet server exited (exit status 1)", "address already in use", "server.log"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

// TestBenchServerKilledIsNoError: the bench's own kill (reconnect's kill
// -9, the stop at the end) is not the server failing.
func TestBenchServerKilledIsNoError(t *testing.T) {
	dir := t.TempDir()
	b := &fleetBench{dir: dir, serverArgs: []string{"/bin/sleep", "60"}}
	if err := b.launchServer(); err != nil {
		t.Fatal(err)
	}
	b.stopServer()
	<-b.serverDone
	if err := b.stopped.Load(); err != nil {
		t.Errorf("stopping the server counted as its failure: %v", *err)
	}
}
