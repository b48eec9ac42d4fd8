package peercred_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/signet-mesh/signet/internal/peercred"
)

// handshake accepts one connection on a fresh socket and runs the server
// handshake on it, as gRPC would.
func handshake(t *testing.T) (net.Conn, peercred.Creds, net.Conn) {
	t.Helper()
	ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "s.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("unix", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	raw, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	conn, ai, err := peercred.TransportCredentials().ServerHandshake(raw)
	if err != nil {
		t.Fatalf("ServerHandshake: %v", err)
	}
	return conn, ai.(peercred.AuthInfo).Creds, client
}

func TestServerHandshakeTakesPIDFD(t *testing.T) {
	conn, c, _ := handshake(t)
	if c.PID != int32(os.Getpid()) || c.UID != uint32(os.Getuid()) {
		t.Errorf("creds = %+v, want pid %d uid %d", c, os.Getpid(), os.Getuid())
	}
	if c.PIDFD == nil {
		conn.Close()
		t.Skip("kernel supports neither SO_PEERPIDFD nor pidfd_open")
	}
	if _, ok := conn.(syscall.Conn); !ok {
		t.Errorf("handshake conn %T lost SyscallConn", conn)
	}
	exited, err := c.PIDFD.Exited()
	if err != nil || exited {
		t.Errorf("Exited() = %v, %v; want false, nil for the live test process", exited, err)
	}
	if err := conn.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := c.PIDFD.Exited(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Exited() after the connection closed: err = %v, want os.ErrClosed", err)
	}
	if err := c.PIDFD.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestNoPIDFDLeak opens connections to a gRPC server, checks each one holds
// a pidfd, and that every pidfd is closed once the clients go away.
func TestNoPIDFDLeak(t *testing.T) {
	base := countPIDFDs(t)
	sock := filepath.Join(t.TempDir(), "grpc.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(peercred.TransportCredentials()))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(ln)
	defer srv.Stop()

	const n = 20
	var clients []*grpc.ClientConn
	for i := 0; i < n; i++ {
		cc, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		clients = append(clients, cc)
	}
	open := countPIDFDs(t)
	if open == base {
		t.Skip("kernel supports neither SO_PEERPIDFD nor pidfd_open")
	}
	if open != base+n {
		t.Errorf("with %d connections open: %d pidfds, want %d", n, open, base+n)
	}
	for _, cc := range clients {
		cc.Close()
	}
	waitFor(t, "pidfds to be closed", func() bool { return countPIDFDs(t) == base })
}

func countPIDFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err == nil && strings.Contains(target, "pidfd") {
			n++
		}
	}
	return n
}

// waitFor polls cond until it holds, failing the test after a deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}
