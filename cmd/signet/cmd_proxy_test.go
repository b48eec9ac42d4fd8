package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestProxyFlags: bad input exits with an error naming the flag, before
// anything listens.
func TestProxyFlags(t *testing.T) {
	id := "spiffe://example.org/web"
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"no identity", []string{"--inbound", "127.0.0.1:0=127.0.0.1:1"}, "--spiffe-id is required"},
		{"bad identity", []string{"--spiffe-id", "web", "--inbound", "127.0.0.1:0=127.0.0.1:1"}, `--spiffe-id "web"`},
		{"nothing to proxy", []string{"--spiffe-id", id}, "nothing to proxy"},
		{"inbound without target", []string{"--spiffe-id", id, "--inbound", "127.0.0.1:0"}, "LISTEN=TARGET"},
		{"inbound target not host:port", []string{"--spiffe-id", id, "--inbound", "127.0.0.1:0=localhost"}, `"localhost" is not host:port`},
		{"outbound without peer", []string{"--spiffe-id", id, "--outbound", "127.0.0.1:0=127.0.0.1:1"}, "--outbound needs --peer-id"},
		{"peer without outbound", []string{"--spiffe-id", id, "--inbound", "127.0.0.1:0=127.0.0.1:1", "--peer-id", id}, "--peer-id goes with --outbound"},
		{"peer count", []string{"--spiffe-id", id, "--outbound", "127.0.0.1:0=127.0.0.1:1", "--outbound", "127.0.0.1:0=127.0.0.1:2",
			"--outbound", "127.0.0.1:0=127.0.0.1:3", "--peer-id", id, "--peer-id", id}, "2 --peer-id for 3 --outbound"},
		{"bad peer", []string{"--spiffe-id", id, "--outbound", "127.0.0.1:0=127.0.0.1:1", "--peer-id", "spiffe://"}, "--peer-id"},
		{"bad allowed peer", []string{"--spiffe-id", id, "--inbound", "127.0.0.1:0=127.0.0.1:1", "--allow-peer", "x"}, "--allow-peer"},
		{"bad health port", []string{"--spiffe-id", id, "--inbound", "127.0.0.1:0=127.0.0.1:1", "--health-port", "x"}, "--health-port"},
		{"health port not an inbound", []string{"--spiffe-id", id, "--inbound", "127.0.0.1:0=127.0.0.1:1", "--health-port", "1"}, "no --inbound listens on that port"},
		{"listen fails", []string{"--spiffe-id", id, "--inbound", "256.0.0.1:1=127.0.0.1:1"}, "--inbound 256.0.0.1:1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := &cliEnv{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}, getenv: mapEnv(nil)}
			err := run(context.Background(), env, append([]string{"proxy", "--socket", "/nonexistent/agent.sock"}, tt.args...))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want %q", err, tt.wantErr)
			}
		})
	}
}
