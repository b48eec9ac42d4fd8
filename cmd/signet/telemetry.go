package main

import (
	"context"
	"fmt"
	"net"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/signet-mesh/signet/agent"
	"github.com/signet-mesh/signet/agent/proxyapi"
	"github.com/signet-mesh/signet/ca/server"
	"github.com/signet-mesh/signet/internal/telemetry"
	agentv1 "github.com/signet-mesh/signet/proto/signet/agent/v1"
	sdsserver "github.com/signet-mesh/signet/sds/server"
)

// telemetryListener is the metrics_listen endpoint of `signet server` and
// `signet agent`: /metrics, /healthz and /readyz on one HTTP listener.
type telemetryListener struct {
	ln  net.Listener
	reg *prometheus.Registry
}

// listenTelemetry listens on addr before anything else starts, so a port
// in use fails the start at once. An empty addr turns telemetry off: it
// returns nil, and every method of a nil *telemetryListener is a no-op.
func listenTelemetry(addr string) (*telemetryListener, error) {
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics_listen %s: %w", addr, err)
	}
	return &telemetryListener{ln: ln, reg: telemetry.NewRegistry()}, nil
}

// close releases the listener when the process stops before serving.
func (t *telemetryListener) close() {
	if t != nil {
		t.ln.Close()
	}
}

// metricsURL is where the metrics are served, for the serving log line.
func (t *telemetryListener) metricsURL() string {
	if t == nil {
		return "off"
	}
	return "http://" + t.ln.Addr().String() + "/metrics"
}

// healthDescription names the health endpoints for the serving log line:
// the process's own (a gRPC health service on its socket), plus /healthz
// and /readyz when telemetry is on.
func (t *telemetryListener) healthDescription(own string) string {
	if t == nil {
		return own
	}
	base := "http://" + t.ln.Addr().String()
	return own + "; " + base + "/healthz, " + base + "/readyz"
}

// run runs main and, beside it, the telemetry endpoint answering /readyz
// with ready, until main returns or ctx ends. It returns main's error.
func (t *telemetryListener) run(ctx context.Context, ready telemetry.ReadyFunc, main func(context.Context) error) error {
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
	g.Go(func() error { return t.serve(ctx, ready) })
	return g.Wait()
}

// serve serves the telemetry endpoint, answering /readyz with ready, until
// ctx ends. With telemetry off it returns nil at once.
func (t *telemetryListener) serve(ctx context.Context, ready telemetry.ReadyFunc) error {
	if t == nil {
		return nil
	}
	return telemetry.Serve(ctx, t.ln, telemetry.Handler(t.reg, ready))
}

// newServerMetrics returns the CA's metrics registered with t, or nil when
// telemetry is off.
func newServerMetrics(t *telemetryListener) *server.Metrics {
	if t == nil {
		return nil
	}
	return server.NewMetrics(t.reg)
}

// newAgentMetrics returns the agent's metrics registered with t, or nil
// when telemetry is off.
func newAgentMetrics(t *telemetryListener) *agent.Metrics {
	if t == nil {
		return nil
	}
	return agent.NewMetrics(t.reg)
}

// sdsMetrics wires the SDS server's hooks to the agent's metrics.
func sdsMetrics(m *agent.Metrics) sdsserver.Metrics {
	if m == nil {
		return sdsserver.Metrics{}
	}
	return sdsserver.Metrics{Pushed: m.SDSPushed, Rejected: m.SDSRejected}
}

// proxyReporter counts the connections proxies report, then hands them to
// r (the agent, which forwards them to the CA).
func proxyReporter(r proxyapi.Reporter, m *agent.Metrics) proxyapi.Reporter {
	if m == nil {
		return r
	}
	return countingReporter{r: r, m: m}
}

type countingReporter struct {
	r proxyapi.Reporter
	m *agent.Metrics
}

func (c countingReporter) AddConnections(counts []*agentv1.ConnectionCounts) {
	for _, n := range counts {
		c.m.ProxyConnections(n.GetMtls(), n.GetPlaintext(), n.GetRefused())
	}
	c.r.AddConnections(counts)
}
