package cli

import (
	"context"
	"fmt"
	"net"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/signet-mesh/signet/internal/telemetry"
)

// Telemetry is the metrics_listen endpoint of `signet server` and the
// agent: /metrics, /healthz and /readyz on one HTTP listener.
type Telemetry struct {
	ln  net.Listener
	reg *prometheus.Registry
}

// ListenTelemetry listens on addr before anything else starts, so a port
// in use fails the start at once. An empty addr turns telemetry off: it
// returns nil, and every method of a nil *Telemetry is a no-op.
func ListenTelemetry(addr string) (*Telemetry, error) {
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics_listen %s: %w", addr, err)
	}
	return &Telemetry{ln: ln, reg: telemetry.NewRegistry()}, nil
}

// Close releases the listener when the process stops before serving.
func (t *Telemetry) Close() {
	if t != nil {
		t.ln.Close()
	}
}

// MetricsURL is where the metrics are served, for the serving log line.
func (t *Telemetry) MetricsURL() string {
	if t == nil {
		return "off"
	}
	return "http://" + t.ln.Addr().String() + "/metrics"
}

// HealthDescription names the health endpoints for the serving log line:
// the process's own (a gRPC health service on its socket), plus /healthz
// and /readyz when telemetry is on.
func (t *Telemetry) HealthDescription(own string) string {
	if t == nil {
		return own
	}
	base := "http://" + t.ln.Addr().String()
	return own + "; " + base + "/healthz, " + base + "/readyz"
}

// Run runs main and, beside it, the telemetry endpoint answering /readyz
// with ready, until main returns or ctx ends. It returns main's error.
func (t *Telemetry) Run(ctx context.Context, ready telemetry.ReadyFunc, main func(context.Context) error) error {
	if t == nil {
		return main(ctx)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer cancel() // main is done: stop serving telemetry too
		return main(ctx)
	})
	g.Go(func() error { return t.Serve(ctx, ready) })
	return g.Wait()
}

// Serve serves the telemetry endpoint, answering /readyz with ready, until
// ctx ends. With telemetry off it returns nil at once.
func (t *Telemetry) Serve(ctx context.Context, ready telemetry.ReadyFunc) error {
	if t == nil {
		return nil
	}
	return telemetry.Serve(ctx, t.ln, telemetry.Handler(t.reg, ready))
}

// Registry is where the process registers its metrics; nil when
// telemetry is off.
func (t *Telemetry) Registry() *prometheus.Registry {
	if t == nil {
		return nil
	}
	return t.reg
}
