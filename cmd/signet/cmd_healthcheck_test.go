package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/signet-mesh/signet/cmd/internal/cli"
	"github.com/signet-mesh/signet/internal/testdir"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// TestHealthcheck: exit 0 ("ready") exactly when the target is ready, and
// a message saying why not otherwise.
func TestHealthcheck(t *testing.T) {
	dir := testdir.Short(t)
	sock := filepath.Join(dir, "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	hs := health.NewServer()
	g := grpc.NewServer()
	healthpb.RegisterHealthServer(g, hs)
	go g.Serve(ln)
	t.Cleanup(g.Stop)

	ready := true
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if !ready {
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("not ready: no trust bundle from the CA yet\n"))
			return
		}
		w.Write([]byte("ready\n"))
	}))
	t.Cleanup(web.Close)

	tests := []struct {
		name    string
		args    []string
		serving healthpb.HealthCheckResponse_ServingStatus
		ready   bool
		wantErr string
	}{
		{name: "socket serving", args: []string{"--socket", sock}, serving: healthpb.HealthCheckResponse_SERVING},
		{name: "socket not serving", args: []string{"--socket", sock}, serving: healthpb.HealthCheckResponse_NOT_SERVING, wantErr: "is not ready (NOT_SERVING)"},
		{name: "admin socket serving", args: []string{"--admin-socket", sock}, serving: healthpb.HealthCheckResponse_SERVING},
		{name: "no such socket", args: []string{"--socket", filepath.Join(dir, "none.sock"), "--timeout", "2s"}, wantErr: "is not healthy"},
		{name: "url ready", args: []string{"--url", web.URL + "/readyz"}, ready: true},
		{name: "url not ready", args: []string{"--url", web.URL + "/readyz"}, wantErr: "503 Service Unavailable: not ready: no trust bundle"},
		// No flag and no environment: the agent at the default socket.
		{name: "no target", args: []string{"--timeout", "1s"}, wantErr: "agent at " + cli.DefaultAgentSocket},
		{name: "two targets", args: []string{"--socket", sock, "--url", web.URL}, wantErr: "exactly one of"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := os.Stat(cli.DefaultAgentSocket); tc.name == "no target" && err == nil {
				t.Skipf("an agent serves %s on this machine", cli.DefaultAgentSocket)
			}
			hs.SetServingStatus("", tc.serving)
			ready = tc.ready
			var stdout bytes.Buffer
			env := &cliEnv{stdout: &stdout, stderr: &bytes.Buffer{}, getenv: mapEnv(nil)}
			err := run(context.Background(), env, append([]string{"healthcheck"}, tc.args...))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("error = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || strings.TrimSpace(stdout.String()) != "ready" {
				t.Errorf("healthcheck = %q, %v; want ready", stdout.String(), err)
			}
		})
	}
}
