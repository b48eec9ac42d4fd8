package grpcserve

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/signet-mesh/signet/internal/peercred"
)

// TestServeStopsWithContext: the server answers while ctx lives, and Serve
// returns nil soon after ctx ends, even with a stream held open.
func TestServeStopsWithContext(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, srv, ln) }()

	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := healthpb.NewHealthClient(conn)
	if _, err := client.Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("check while serving: %v", err)
	}
	watch, err := client.Watch(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Recv(); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve returned %v after cancellation, want nil", err)
		}
	case <-time.After(DrainTimeout + 5*time.Second):
		t.Fatal("Serve did not return after cancellation")
	}
}

// TestLocalSocketClosesIdle: a connection with no call open is closed
// after the idle limit; one holding a stream is not.
func TestLocalSocketClosesIdle(t *testing.T) {
	const idle = 300 * time.Millisecond
	path := filepath.Join(t.TempDir(), "s.sock")
	ln, err := peercred.Listen(path, 0o700)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(localSocketOptions(idle)...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go Serve(ctx, srv, ln)

	dial := func() *grpc.ClientConn {
		conn, err := grpc.NewClient("unix:"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatal(err)
		}
		return conn
	}
	idleConn := dial()
	busyConn := dial()
	watch, err := healthpb.NewHealthClient(busyConn).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Recv(); err != nil {
		t.Fatal(err)
	}
	// The server's GOAWAY moves the idle client's connection to IDLE.
	deadline := time.Now().Add(20 * time.Second)
	for idleConn.GetState() != connectivity.Idle {
		if time.Now().After(deadline) {
			t.Fatalf("idle connection still %v after %v", idleConn.GetState(), 20*time.Second)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if s := busyConn.GetState(); s != connectivity.Ready {
		t.Errorf("connection with an open stream is %v, want READY", s)
	}
}
