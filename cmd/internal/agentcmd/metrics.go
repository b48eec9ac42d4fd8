package agentcmd

import (
	"github.com/signet-mesh/signet/agent"
	"github.com/signet-mesh/signet/agent/proxyapi"
	"github.com/signet-mesh/signet/cmd/internal/cli"
	agentv1 "github.com/signet-mesh/signet/proto/signet/agent/v1"
	sdsserver "github.com/signet-mesh/signet/sds/server"
)

// newAgentMetrics returns the agent's metrics registered with t, or nil
// when telemetry is off.
func newAgentMetrics(t *cli.Telemetry) *agent.Metrics {
	if t == nil {
		return nil
	}
	return agent.NewMetrics(t.Registry())
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
