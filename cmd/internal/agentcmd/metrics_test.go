package agentcmd

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/signet-mesh/signet/agent"
	agentv1 "github.com/signet-mesh/signet/proto/signet/agent/v1"
)

type fakeReporter struct{ got [][]*agentv1.ConnectionCounts }

func (f *fakeReporter) AddConnections(c []*agentv1.ConnectionCounts) { f.got = append(f.got, c) }

// TestProxyReporter: reported connections are counted by type and still
// reach the agent; without metrics the agent is used as is.
func TestProxyReporter(t *testing.T) {
	f := &fakeReporter{}
	if proxyReporter(f, nil) != f {
		t.Error("without metrics the reporter is wrapped")
	}
	reg := prometheus.NewRegistry()
	r := proxyReporter(f, agent.NewMetrics(reg))
	r.AddConnections([]*agentv1.ConnectionCounts{
		{SpiffeId: "spiffe://example.org/a", Port: 8080, Mtls: 5, Plaintext: 2},
		{SpiffeId: "spiffe://example.org/b", Port: 8080, Refused: 1},
	})
	if len(f.got) != 1 || len(f.got[0]) != 2 {
		t.Errorf("agent got %v, want the report", f.got)
	}
	want := `
# HELP signet_agent_proxy_connections_total Inbound connections reported by sidecar proxies, by type (mtls, plaintext, refused).
# TYPE signet_agent_proxy_connections_total counter
signet_agent_proxy_connections_total{type="mtls"} 5
signet_agent_proxy_connections_total{type="plaintext"} 2
signet_agent_proxy_connections_total{type="refused"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), agent.MetricProxyConnections); err != nil {
		t.Error(err)
	}
}
