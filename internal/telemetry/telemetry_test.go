package telemetry

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestHandler: /healthz always answers, /readyz follows the ready func
// (with its reason), /metrics serves the registry.
func TestHandler(t *testing.T) {
	reg := NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "signet_test_events_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(3)
	var notReady atomic.Pointer[error]
	ready := func(context.Context) error {
		if e := notReady.Load(); e != nil {
			return *e
		}
		return nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, Handler(reg, ready)) }()
	base := "http://" + ln.Addr().String()

	tests := []struct {
		name     string
		path     string
		notReady error
		code     int
		body     string
	}{
		{name: "healthz", path: "/healthz", code: 200, body: "ok"},
		{name: "healthz while not ready", path: "/healthz", notReady: errors.New("no bundle"), code: 200, body: "ok"},
		{name: "readyz", path: "/readyz", code: 200, body: "ready"},
		{name: "readyz not ready", path: "/readyz", notReady: errors.New("no bundle yet"), code: 503, body: "not ready: no bundle yet"},
		{name: "metrics", path: "/metrics", code: 200, body: "signet_test_events_total 3"},
		{name: "go runtime metrics", path: "/metrics", code: 200, body: "go_goroutines"},
		{name: "unknown path", path: "/debug/pprof/", code: 404},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.notReady != nil {
				notReady.Store(&tc.notReady)
				defer notReady.Store(nil)
			}
			resp, err := http.Get(base + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.code {
				t.Errorf("GET %s = %d, want %d (%s)", tc.path, resp.StatusCode, tc.code, b)
			}
			if !strings.Contains(string(b), tc.body) {
				t.Errorf("GET %s body = %q, want it to contain %q", tc.path, b, tc.body)
			}
		})
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve after cancel = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
}

// TestReadyTimeout: a readiness check that hangs is cut off, and /readyz
// answers 503 instead of hanging the probe.
func TestReadyTimeout(t *testing.T) {
	h := Handler(prometheus.NewRegistry(), func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go Serve(ctx, ln, h)
	start := time.Now()
	resp, err := http.Get("http://" + ln.Addr().String() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || time.Since(start) > 3*time.Second {
		t.Errorf("hanging check: %d after %s, want 503 within %s", resp.StatusCode, time.Since(start), readyTimeout)
	}
}
