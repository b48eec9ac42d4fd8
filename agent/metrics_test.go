package agent

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
)

func newTestAgent(t *testing.T, m *Metrics) *Agent {
	t.Helper()
	a, err := New(Config{
		ServerAddress: "127.0.0.1:1",
		TrustDomain:   spiffeid.RequireTrustDomainFromString("example.org"),
		DataDir:       t.TempDir(),
		KeyPassphrase: []byte("test"), KeyKDFIterations: 1000, // as agent_test.testKDFIterations
		Metrics: m,
	})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestMetricsRegistry: the agent's metrics register on a pedantic registry,
// follow Prometheus naming conventions, and read the cache at scrape time.
func TestMetricsRegistry(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	newTestAgent(t, m)
	m.setConnected(true)
	m.setBackoff(opSync, 0)
	m.rotated(kindWorkload)
	m.rotationFailed(kindNode)
	m.SDSPushed("stream", 2)
	m.SDSRejected("delta")
	m.ProxyConnections(3, 1, -2)

	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("metric %s does not follow Prometheus conventions: %s", p.Metric, p.Text)
	}
	// Before the first SVID: a count of zero, and no expiry series.
	if n, err := testutil.GatherAndCount(reg, MetricSVIDs); err != nil || n != 1 {
		t.Errorf("%s series = %d, %v; want 1", MetricSVIDs, n, err)
	}
	for _, name := range []string{MetricSVIDMinTimeToExpiry, MetricNodeSVIDTimeToExpiry} {
		if n, err := testutil.GatherAndCount(reg, name); err != nil || n != 0 {
			t.Errorf("%s series without SVIDs = %d, %v; want 0", name, n, err)
		}
	}
	for _, tc := range []struct {
		c    prometheus.Collector
		want float64
	}{
		{m.connected, 1},
		{m.rotations.WithLabelValues(kindWorkload), 1},
		{m.rotationFailures.WithLabelValues(kindNode), 1},
		{m.rotationFailures.WithLabelValues(kindWorkload), 0},
		{m.sdsPushes.WithLabelValues("stream"), 1},
		{m.sdsNacks.WithLabelValues("delta"), 1},
		{m.proxyConns.WithLabelValues("mtls"), 3},
		{m.proxyConns.WithLabelValues("plaintext"), 1},
		{m.proxyConns.WithLabelValues("refused"), 0},
	} {
		if got := testutil.ToFloat64(tc.c); got != tc.want {
			t.Errorf("%v = %v, want %v", tc.c, got, tc.want)
		}
	}
}

// TestStreamInterceptor: Workload API and SDS streams are counted while
// open; other services are not.
func TestStreamInterceptor(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	ic := m.StreamInterceptor()
	for _, tc := range []struct {
		method, api string
		counted     bool
	}{
		{"/SpiffeWorkloadAPI/FetchX509SVID", "workload", true},
		{"/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets", "sds", true},
		{"/grpc.health.v1.Health/Watch", "", false},
	} {
		var during float64
		err := ic(nil, nil, &grpc.StreamServerInfo{FullMethod: tc.method}, func(any, grpc.ServerStream) error {
			if tc.counted {
				during = testutil.ToFloat64(m.streams.WithLabelValues(tc.api))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if tc.counted {
			if after := testutil.ToFloat64(m.streams.WithLabelValues(tc.api)); during != 1 || after != 0 {
				t.Errorf("%s: open streams during = %v, after = %v; want 1, 0", tc.method, during, after)
			}
		}
	}
	// A nil Metrics passes calls through.
	var nilM *Metrics
	called := false
	nilM.StreamInterceptor()(nil, nil, &grpc.StreamServerInfo{FullMethod: "/SpiffeWorkloadAPI/FetchX509SVID"}, func(any, grpc.ServerStream) error {
		called = true
		return nil
	})
	if !called {
		t.Error("nil Metrics interceptor did not call the handler")
	}
}

// TestReadyBeforeAttestation: an agent without a node identity is not
// ready, and says why.
func TestReadyBeforeAttestation(t *testing.T) {
	a := newTestAgent(t, nil)
	if err := a.Ready(context.Background()); err == nil || !strings.Contains(err.Error(), "node identity") {
		t.Errorf("Ready before attestation = %v, want a node identity error", err)
	}
}
