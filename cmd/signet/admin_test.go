package main

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/signet-mesh/signet/internal/testdir"
)

// TestAdminConnSeesRestartedServer: a client of the admin socket that
// outlives the server (signet bench fleet's, across its kill -9) reaches
// it within about a second of its return, however long it was down. With
// gRPC's default backoff, six seconds of failed calls leave the next try
// up to nine seconds away.
func TestAdminConnSeesRestartedServer(t *testing.T) {
	dir := testdir.Short(t)
	a := &adminOptions{socket: filepath.Join(dir, "admin.sock")}
	conn, err := a.conn()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := healthpb.NewHealthClient(conn)
	check := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := client.Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}

	// The server is down: every call fails, and the client backs off.
	for down := time.Now().Add(6 * time.Second); time.Now().Before(down); time.Sleep(100 * time.Millisecond) {
		if err := check(); err == nil {
			t.Fatal("a call succeeded with no server on the socket")
		}
	}

	ln, err := net.Listen("unix", a.socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(ln) //nolint:errcheck // stopped below
	defer srv.Stop()
	back := time.Now()
	for deadline := back.Add(3 * time.Second); check() != nil; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the client did not reach the server within 3s of its return")
		}
	}
	t.Logf("reached the server %v after its return", time.Since(back).Round(time.Millisecond))
}
