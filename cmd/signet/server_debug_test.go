package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCheckDebugListen: debug_listen takes a loopback host:port only, and
// --check-config refuses anything else, naming the key.
func TestCheckDebugListen(t *testing.T) {
	env := hostFiles(t)
	base := "trust_domain: example.org\ndata_dir: " + filepath.Join(t.TempDir(), "data") + "\n"
	tests := []struct {
		name    string
		listen  string
		wantErr string
	}{
		{name: "IPv4 loopback", listen: "127.0.0.1:6060"},
		{name: "IPv6 loopback", listen: "\"[::1]:6060\""},
		{name: "localhost", listen: "localhost:6060"},
		{name: "no port", listen: "127.0.0.1", wantErr: `debug_listen "127.0.0.1": must be host:port`},
		{name: "every interface", listen: "\":6060\"", wantErr: `debug_listen ":6060": must be a loopback address`},
		{name: "public address", listen: "10.0.0.1:6060", wantErr: `debug_listen "10.0.0.1:6060": must be a loopback address`},
		{name: "host name", listen: "ca.example.org:6060", wantErr: "must be a loopback address"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := checkConfig(t, "server", []byte(base+"debug_listen: "+tc.listen+"\n"), env)
			if tc.wantErr == "" {
				if err != nil || !strings.Contains(out, "configuration is valid") {
					t.Fatalf("%q, %v; want a valid configuration", out, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestServeDebug: with debug_listen set, the heap profile is served there
// until the server stops; without it, nothing listens.
func TestServeDebug(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if err := (serverConfig{}).serveDebug(ctx, logger); err != nil {
		t.Fatalf("without debug_listen: %v", err)
	}
	if err := (serverConfig{DebugListen: addr}).serveDebug(ctx, logger); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + addr + "/debug/pprof/heap?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "heap profile") {
		t.Fatalf("GET /debug/pprof/heap: %s\n%.200s", resp.Status, body)
	}
	for _, tc := range []struct {
		path, want string
		code       int
	}{
		{"/debug/pprof/", "goroutine", http.StatusOK},
		{"/debug/pprof/goroutine?debug=1", "goroutine profile", http.StatusOK},
		{"/debug/pprof/nope", `no profile named "nope"`, http.StatusNotFound},
	} {
		resp, err := http.Get("http://" + addr + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code || !strings.Contains(string(body), tc.want) {
			t.Errorf("GET %s: %s %.200q, want %d with %q", tc.path, resp.Status, body, tc.code, tc.want)
		}
	}
	cancel()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the debug listener still accepts after the server stopped")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
