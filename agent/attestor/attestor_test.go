package attestor_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/signet-mesh/signet/agent/attestor"
	"github.com/signet-mesh/signet/internal/peercred"
)

// helperEnv makes the test binary, run as a child, connect to the socket it
// names, wait for one byte, and exit: a workload the test can watch exit.
const helperEnv = "SIGNET_ATTESTOR_TEST_CONNECT"

func TestMain(m *testing.M) {
	if sock := os.Getenv(helperEnv); sock != "" {
		conn, err := net.Dial("unix", sock)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		io.ReadFull(conn, make([]byte, 1))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// listen returns a Unix socket under t.TempDir.
func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "w.sock"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// accept accepts one connection and runs the server handshake on it, as the
// Workload API's gRPC server does.
func accept(t *testing.T, ln net.Listener) (net.Conn, peercred.Creds) {
	t.Helper()
	raw, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	conn, ai, err := peercred.TransportCredentials().ServerHandshake(raw)
	if err != nil {
		t.Fatalf("ServerHandshake: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, ai.(peercred.AuthInfo).Creds
}

// nameSelectors returns the user and group selectors os/user resolves for
// uid and gid, which depend on the machine's user database.
func nameSelectors(uid, gid uint32) (userSel, groupSel []string) {
	if u, err := user.LookupId(strconv.Itoa(int(uid))); err == nil {
		userSel = []string{"unix:user:" + u.Username}
	}
	if g, err := user.LookupGroupId(strconv.Itoa(int(gid))); err == nil {
		groupSel = []string{"unix:group:" + g.Name}
	}
	return userSel, groupSel
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func want(uid, gid uint32, path, sum string) []string {
	u, g := nameSelectors(uid, gid)
	var w []string
	w = append(w, fmt.Sprintf("unix:uid:%d", uid))
	w = append(w, u...)
	w = append(w, fmt.Sprintf("unix:gid:%d", gid))
	w = append(w, g...)
	if path != "" {
		w = append(w, "unix:path:"+path, "unix:sha256:"+sum)
	}
	return w
}

func TestAttestSelf(t *testing.T) {
	ln := listen(t)
	client, err := net.Dial("unix", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	_, creds := accept(t, ln)

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	exe, err = filepath.EvalSymlinks(exe)
	if err != nil {
		t.Fatal(err)
	}
	a := attestor.New(attestor.Config{})
	got, err := a.Attest(context.Background(), creds)
	if err != nil {
		t.Fatalf("Attest: %v", err)
	}
	w := want(uint32(os.Getuid()), uint32(os.Getgid()), exe, sha256File(t, exe))
	if diff := cmp.Diff(w, got); diff != "" {
		t.Errorf("Attest() selectors (-want +got):\n%s", diff)
	}

	// The second attestation of the same binary is served from the cache.
	if _, err := a.Attest(context.Background(), creds); err != nil {
		t.Fatalf("second Attest: %v", err)
	}
	if n := attestor.HashesComputed(a); n != 1 {
		t.Errorf("hashes computed = %d, want 1", n)
	}
}

// TestAttestExited attests a child that connected and then exited: whether
// or not peercred took a pidfd, the attestor must refuse.
func TestAttestExited(t *testing.T) {
	for _, keepPIDFD := range []bool{true, false} {
		t.Run(fmt.Sprintf("pidfd=%v", keepPIDFD), func(t *testing.T) {
			ln := listen(t)
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), helperEnv+"="+ln.Addr().String())
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			conn, creds := accept(t, ln)
			if creds.PID != int32(cmd.Process.Pid) {
				t.Fatalf("peer pid = %d, want child %d", creds.PID, cmd.Process.Pid)
			}
			if keepPIDFD && creds.PIDFD == nil {
				t.Skip("kernel supports no pidfds")
			}
			if !keepPIDFD {
				creds.PIDFD = nil
			}
			a := attestor.New(attestor.Config{})
			if _, err := a.Attest(context.Background(), creds); err != nil {
				t.Fatalf("Attest of the live child: %v", err)
			}

			conn.Write([]byte{1}) // let the child exit
			if err := cmd.Wait(); err != nil {
				t.Fatalf("child: %v", err)
			}
			_, err := a.Attest(context.Background(), creds)
			if !errors.Is(err, attestor.ErrProcessGone) {
				t.Errorf("Attest after exit: err = %v, want ErrProcessGone", err)
			}
		})
	}
}

// TestAttestPIDReused simulates the PID of an exited workload being taken
// by another process: /proc shows a live process under the PID, and only
// the pidfd taken at handshake knows it is not the one that connected.
func TestAttestPIDReused(t *testing.T) {
	ln := listen(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+ln.Addr().String())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	conn, creds := accept(t, ln)
	if creds.PIDFD == nil {
		t.Skip("kernel supports no pidfds")
	}
	conn.Write([]byte{1})
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
	// The impostor: a process under the same PID, per (fake) procfs.
	root, _ := fakeProcPID(t, cmd.Process.Pid, "999", "impostor")
	a := attestor.New(attestor.Config{ProcRoot: root})
	if _, err := a.Attest(context.Background(), creds); !errors.Is(err, attestor.ErrProcessGone) {
		t.Errorf("Attest of a reused PID: err = %v, want ErrProcessGone", err)
	}
	// Without the pidfd the impostor would pass: that is what it is for.
	creds.PIDFD = nil
	if _, err := a.Attest(context.Background(), creds); err != nil {
		t.Errorf("Attest without pidfd: %v (the fake tree should attest)", err)
	}
}

// fakeProc builds a procfs tree for pid 42 whose exe links to a file with
// content body.
func fakeProc(t *testing.T, startTime string, body string) (root, exe string) {
	return fakeProcPID(t, 42, startTime, body)
}

func fakeProcPID(t *testing.T, pid int, startTime string, body string) (root, exe string) {
	t.Helper()
	root = t.TempDir()
	dir := filepath.Join(root, strconv.Itoa(pid))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if startTime != "" {
		stat := "42 (my (odd) app) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 " + startTime + " 1000 10 18446744073709551615\n"
		if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if body != "" {
		exe = filepath.Join(root, "bin-app")
		if err := os.WriteFile(exe, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(exe, filepath.Join(dir, "exe")); err != nil {
			t.Fatal(err)
		}
	}
	return root, exe
}

func TestAttestFakeProc(t *testing.T) {
	const uid, gid = 4242, 4343
	bodySum := sha256.Sum256([]byte("#!app"))
	tests := []struct {
		name      string
		pid       int32
		startTime string
		body      string
		want      func(exe string) []string
		wantErr   error
	}{
		{
			name: "all selectors", pid: 42, startTime: "777", body: "#!app",
			want: func(exe string) []string { return want(uid, gid, exe, hex.EncodeToString(bodySum[:])) },
		},
		{name: "no such process", pid: 43, startTime: "777", body: "#!app", wantErr: attestor.ErrProcessGone},
		{name: "no stat", pid: 42, body: "#!app", wantErr: attestor.ErrProcessGone},
		{name: "no exe", pid: 42, startTime: "777", wantErr: attestor.ErrProcessGone},
		{name: "pid not visible", pid: 0, startTime: "777", body: "#!app", wantErr: attestor.ErrNoPID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root, exe := fakeProc(t, tt.startTime, tt.body)
			a := attestor.New(attestor.Config{ProcRoot: root})
			got, err := a.Attest(context.Background(), peercred.Creds{PID: tt.pid, UID: uid, GID: gid})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Attest: err = %v, want %v", err, tt.wantErr)
				}
				if !strings.HasPrefix(err.Error(), "attestor: ") {
					t.Errorf("error %q lacks the package prefix", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Attest: %v", err)
			}
			if diff := cmp.Diff(tt.want(exe), got); diff != "" {
				t.Errorf("Attest() (-want +got):\n%s", diff)
			}
		})
	}
}

// TestHashCache checks that a binary is hashed once however many callers
// ask at once, and again once it changes.
func TestHashCache(t *testing.T) {
	root, exe := fakeProc(t, "777", "version 1")
	a := attestor.New(attestor.Config{ProcRoot: root})
	creds := peercred.Creds{PID: 42, UID: 1, GID: 1}

	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := a.Attest(context.Background(), creds)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Attest: %v", err)
		}
	}
	if n := attestor.HashesComputed(a); n != 1 {
		t.Errorf("after 50 concurrent attestations: %d hashes computed, want 1", n)
	}

	// Rewrite the binary: new size and mtime, so a new hash.
	if err := os.WriteFile(exe, []byte("version 2, longer"), 0o755); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(exe, later, later); err != nil {
		t.Fatal(err)
	}
	got, err := a.Attest(context.Background(), creds)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("version 2, longer"))
	if w := "unix:sha256:" + hex.EncodeToString(sum[:]); got[len(got)-1] != w {
		t.Errorf("after rewrite: last selector %q, want %q", got[len(got)-1], w)
	}
	if n := attestor.HashesComputed(a); n != 2 {
		t.Errorf("after rewrite: %d hashes computed, want 2", n)
	}
}

func TestAttestCanceled(t *testing.T) {
	root, _ := fakeProc(t, "777", "body")
	a := attestor.New(attestor.Config{ProcRoot: root})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := a.Attest(ctx, peercred.Creds{PID: 42}); !errors.Is(err, context.Canceled) {
		t.Errorf("Attest with canceled ctx: err = %v, want context.Canceled", err)
	}
}

func TestParseStartTime(t *testing.T) {
	tests := []struct {
		name    string
		stat    string
		want    uint64
		wantErr string
	}{
		{name: "plain", stat: "1 (init) S 0 1 1 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 1 0 99 1000 10", want: 99},
		{name: "spaces and parens in comm", stat: "7 (a) b (c) d) R 0 1 1 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 1 0 12345 1000 10", want: 12345},
		{name: "no comm", stat: "7 a R 0 1", wantErr: "no command name"},
		{name: "truncated", stat: "7 (a) R 0 1 1", wantErr: "fields after the command name"},
		{name: "bad number", stat: "1 (init) S 0 1 1 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 1 0 x9 1000", wantErr: "malformed process start time"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := attestor.ParseStartTime(tt.stat)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("= %d, %v; want %d, nil", got, err, tt.want)
			}
		})
	}
}

func TestMatch(t *testing.T) {
	workload := []string{"unix:uid:1000", "unix:gid:1000", "unix:path:/usr/bin/app"}
	tests := []struct {
		name     string
		entry    []string
		workload []string
		want     bool
	}{
		{name: "one of the workload's", entry: []string{"unix:uid:1000"}, workload: workload, want: true},
		{name: "all of the workload's", entry: workload, workload: workload, want: true},
		{name: "order does not matter", entry: []string{"unix:path:/usr/bin/app", "unix:uid:1000"}, workload: workload, want: true},
		{name: "one missing", entry: []string{"unix:uid:1000", "unix:user:root"}, workload: workload, want: false},
		{name: "different value", entry: []string{"unix:uid:0"}, workload: workload, want: false},
		{name: "empty entry matches nothing", entry: nil, workload: workload, want: false},
		{name: "no workload selectors", entry: []string{"unix:uid:1000"}, workload: nil, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := attestor.Match(tt.entry, tt.workload); got != tt.want {
				t.Errorf("Match(%q, %q) = %v, want %v", tt.entry, tt.workload, got, tt.want)
			}
		})
	}
}
