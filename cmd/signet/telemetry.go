package main

import (
	"github.com/signet-mesh/signet/ca/server"
	"github.com/signet-mesh/signet/cmd/internal/cli"
)

// telemetryListener is the metrics_listen endpoint (cmd/internal/cli).
type telemetryListener = cli.Telemetry

// newServerMetrics returns the CA's metrics registered with t, or nil when
// telemetry is off.
func newServerMetrics(t *telemetryListener) *server.Metrics {
	if t == nil {
		return nil
	}
	return server.NewMetrics(t.Registry())
}
