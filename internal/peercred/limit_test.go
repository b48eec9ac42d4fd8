package peercred_test

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/signet-mesh/signet/internal/peercred"
)

// helperSocketEnv makes this test binary, run again as another user, dial
// the socket it names instead of running tests (see TestHelperDial).
const helperSocketEnv = "PEERCRED_HELPER_SOCKET"

// TestHelperDial is not a test: run with helperSocketEnv set, it connects
// to that socket, says "?" and exits 0 if the server answers.
func TestHelperDial(t *testing.T) {
	path := os.Getenv(helperSocketEnv)
	if path == "" {
		t.Skip("helper process only")
	}
	conn, err := net.DialTimeout("unix", path, 10*time.Second)
	if err != nil {
		os.Exit(2)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 1)
	if _, err := conn.Write([]byte("?")); err != nil {
		os.Exit(3)
	}
	if _, err := io.ReadFull(conn, buf); err != nil {
		os.Exit(4)
	}
	os.Exit(0)
}

// echoServer accepts on ln and answers each connection's bytes, until ln
// closes. It records the uid of each accepted connection.
type echoServer struct {
	mu   sync.Mutex
	uids []uint32
}

func (e *echoServer) serve(ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		c, err := peercred.Read(conn)
		if err == nil {
			e.mu.Lock()
			e.uids = append(e.uids, c.UID)
			e.mu.Unlock()
		}
		go func() {
			defer conn.Close()
			io.Copy(conn, conn)
		}()
	}
}

// answered reports whether conn gets its byte back (the server accepted
// it) or is closed (refused).
func answered(t *testing.T, conn net.Conn) bool {
	t.Helper()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte("?")); err != nil {
		return false
	}
	buf := make([]byte, 1)
	_, err := io.ReadFull(conn, buf)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("reading the answer: %v", err)
	}
	return err == nil
}

// TestLimitConns opens more connections than the limit as one uid: the
// ones past it are refused, a closed one frees its slot, and another uid
// still gets through.
func TestLimitConns(t *testing.T) {
	dir, err := os.MkdirTemp("", "peercred") // reachable by another uid
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	path := filepath.Join(dir, "s.sock")
	inner, err := peercred.Listen(path, 0o777)
	if err != nil {
		t.Fatal(err)
	}
	refused := make(chan peercred.Creds, 10)
	const limit = 3
	ln := peercred.LimitConns(inner, limit, func(c peercred.Creds) { refused <- c })
	defer ln.Close()
	srv := &echoServer{}
	go srv.serve(ln)

	var conns []net.Conn
	for i := range limit + 2 {
		conn, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		got := answered(t, conn)
		if want := i < limit; got != want {
			t.Fatalf("connection %d of one uid answered %v, want %v (limit %d)", i+1, got, want, limit)
		}
		conns = append(conns, conn)
	}
	for range 2 {
		select {
		case c := <-refused:
			if c.UID != uint32(os.Getuid()) || c.PID != int32(os.Getpid()) {
				t.Errorf("refused creds %+v, want this process", c)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("refusal not reported")
		}
	}

	// Closing one gives its slot back.
	conns[0].Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		ok := answered(t, conn)
		if ok {
			defer conn.Close()
			break
		}
		conn.Close()
		if time.Now().After(deadline) {
			t.Fatal("a closed connection did not free its slot")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// Another uid is not affected.
	if os.Getuid() != 0 {
		t.Skip("connecting as another uid needs root")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	helper := filepath.Join(dir, "helper.test")
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(helper, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(helper, "-test.run=^TestHelperDial$")
	cmd.Env = append(os.Environ(), helperSocketEnv+"="+path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("uid 65534 while uid %d is at its limit: %v\n%s", os.Getuid(), err, out)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if last := srv.uids[len(srv.uids)-1]; last != 65534 {
		t.Errorf("last accepted uid %d, want 65534", last)
	}
}

// TestLimitConnsGRPC: connections of LimitConns go through
// TransportCredentials (with their pidfd), and gRPC closing a connection
// frees its slot.
func TestLimitConnsGRPC(t *testing.T) {
	path := filepath.Join(t.TempDir(), "grpc.sock")
	inner, err := peercred.Listen(path, 0o700)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(peercred.TransportCredentials()))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(peercred.LimitConns(inner, 1, nil))
	defer srv.Stop()

	check := func() error {
		conn, err := grpc.NewClient("unix:"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}
	held, err := grpc.NewClient("unix:"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := healthpb.NewHealthClient(held).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("first connection: %v", err)
	}
	if err := check(); err == nil {
		t.Fatal("a second connection of the same uid got through a limit of 1")
	}
	held.Close()
	waitUntil(t, "the slot freed by a closed connection", func() bool { return check() == nil })
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
