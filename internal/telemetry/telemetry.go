// Package telemetry serves a process's operational endpoints on one HTTP
// listener: Prometheus metrics on /metrics, liveness on /healthz and
// readiness on /readyz. The CA server and the node agent each define their
// own metric set (ca/server.Metrics, agent.Metrics) and readiness check;
// this package only exposes them.
//
//	reg := telemetry.NewRegistry()
//	m := server.NewMetrics(reg)
//	ln, _ := net.Listen("tcp", "127.0.0.1:9090")
//	go telemetry.Serve(ctx, ln, telemetry.Handler(reg, srv.Ready))
//
// /healthz answers 200 while the process serves HTTP at all: it is the
// liveness probe, and never depends on the CA or the store. /readyz answers
// 200 when ready returns nil and 503 with the error's text otherwise.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Limits of the HTTP server. Probes and scrapes are small requests from
// trusted infrastructure; the limits only keep a stuck client from holding
// a connection forever.
const (
	readHeaderTimeout = 5 * time.Second
	// readyTimeout bounds one readiness check; probes time out after 1s
	// by default in Kubernetes, so the check must answer faster.
	readyTimeout = 900 * time.Millisecond
	// shutdownTimeout bounds the drain of in-flight scrapes at exit.
	shutdownTimeout = 2 * time.Second
)

// ReadyFunc reports whether the process is ready to serve: nil when it is,
// an error saying what is missing otherwise. It must be safe for concurrent
// use and return promptly; ctx carries the deadline.
type ReadyFunc func(ctx context.Context) error

// NewRegistry returns a registry with the Go runtime and process
// collectors, to which the caller adds its own metrics.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// Handler returns the mux of /metrics (from g), /healthz and /readyz (from
// ready; nil means always ready).
func Handler(g prometheus.Gatherer, ready ReadyFunc) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{
		// A collector failing (the store closed mid-scrape) should not
		// hide every other metric.
		ErrorHandling: promhttp.ContinueOnError,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if ready != nil {
			ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
			defer cancel()
			if err := ready(ctx); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintf(w, "not ready: %v\n", err)
				return
			}
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}

// Serve serves h on ln until ctx ends, then drains in-flight requests
// (bounded) and returns nil. It returns an error only when serving fails.
// Serve closes ln.
func Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("telemetry: serving %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	return nil
}
