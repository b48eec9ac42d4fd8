package server

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/signet-mesh/signet/ca"
	"github.com/signet-mesh/signet/ca/api"
	"github.com/signet-mesh/signet/internal/peercred"
	"github.com/signet-mesh/signet/internal/testdir"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
	nodev1 "github.com/signet-mesh/signet/proto/signet/node/v1"
)

// startCAWithMetrics is startCA with a metric set, on a pedantic registry
// that checks every collector's Collect against its Describe.
func startCAWithMetrics(tb testing.TB) (*testCA, *Metrics, *prometheus.Registry, string) {
	tb.Helper()
	dir := testdir.Short(tb)
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := NewForTest(ctx, Config{TrustDomain: td, DataDir: filepath.Join(dir, "data"), Passphrase: []byte("test"), Metrics: m}, TestOptions{StoreNoSync: true, KeyKDFIterations: testKDFIterations})
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	adminPath := filepath.Join(dir, "admin.sock")
	adminLn, err := peercred.Listen(adminPath, 0o600)
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln, adminLn) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("Serve: %v", err)
		}
		srv.Close()
	})
	conn, err := grpc.NewClient("unix://"+adminPath, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	b, err := srv.Bundle(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	return &testCA{srv: srv, addr: ln.Addr().String(), admin: adminv1.NewAdminServiceClient(conn), roots: b.X509Authorities}, m, reg, adminPath
}

// gauge returns the value of the single series of name whose labels
// include want, and whether there is one.
func gauge(tb testing.TB, g prometheus.Gatherer, name string, want map[string]string) (float64, bool) {
	tb.Helper()
	mfs, err := g.Gather()
	if err != nil {
		tb.Fatalf("gathering: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue series
				}
			}
			return value(m), true
		}
	}
	return 0, false
}

func value(m *dto.Metric) float64 {
	switch {
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetHistogram() != nil:
		return float64(m.GetHistogram().GetSampleCount())
	}
	return 0
}

// TestMetrics: attestation, minting and entry-sync move the counters and
// gauges they should, and nothing else.
func TestMetrics(t *testing.T) {
	c, m, reg, _ := startCAWithMetrics(t)
	issued := func(kind, outcome string) float64 {
		return testutil.ToFloat64(m.svidsIssued.WithLabelValues(kind, outcome))
	}

	n := c.attest(t, "a")
	if _, err := c.anonClient(t).AttestNode(context.Background(), &nodev1.AttestNodeRequest{JoinToken: "bogus", Csr: csr(t, newKey(t))}); err == nil {
		t.Fatal("attestation with a bogus token succeeded")
	}
	for result, want := range map[string]float64{api.AttestSuccess: 1, api.AttestUnknownToken: 1, api.AttestExpiredToken: 0, api.AttestError: 0} {
		if got := testutil.ToFloat64(m.attestations.WithLabelValues(result)); got != want {
			t.Errorf("attestations{result=%q} = %v, want %v", result, got, want)
		}
	}

	entry := c.entry(t, "spiffe://example.org/web", n.id.String())
	resp, err := n.client.MintX509SVIDs(context.Background(), &nodev1.MintX509SVIDsRequest{Params: []*nodev1.MintX509SVIDParams{
		{EntryId: entry, Csr: csr(t, newKey(t))},
		{EntryId: "no-such-entry", Csr: csr(t, newKey(t))},
		{EntryId: entry, Csr: []byte("not a CSR")},
	}})
	if err != nil || len(resp.Results) != 3 {
		t.Fatalf("MintX509SVIDs = %v, %v", resp, err)
	}
	for _, tc := range []struct {
		kind, outcome string
		want          float64
	}{
		{api.SVIDKindNode, api.OutcomeSuccess, 1},
		{api.SVIDKindWorkload, api.OutcomeSuccess, 1},
		{api.SVIDKindWorkload, api.OutcomeDenied, 1},
		{api.SVIDKindWorkload, api.OutcomeInvalid, 1},
		{api.SVIDKindWorkload, api.OutcomeError, 0},
	} {
		if got := issued(tc.kind, tc.outcome); got != tc.want {
			t.Errorf("%s{kind=%q,outcome=%q} = %v, want %v", MetricSVIDsIssued, tc.kind, tc.outcome, got, tc.want)
		}
	}
	// Only requests that reached the signer are timed.
	if got, _ := gauge(t, reg, MetricMintDuration, map[string]string{"kind": api.SVIDKindWorkload}); got != 1 {
		t.Errorf("%s{kind=workload} count = %v, want 1", MetricMintDuration, got)
	}
	if got, _ := gauge(t, reg, MetricStoreCommitDuration, map[string]string{"op": "batch"}); got < 1 {
		t.Errorf("%s{op=batch} count = %v, want at least 1", MetricStoreCommitDuration, got)
	}
	if got, _ := gauge(t, reg, MetricStoreCommitDuration, map[string]string{"op": "update"}); got < 3 {
		t.Errorf("%s{op=update} count = %v, want at least 3 (token, attestation, entry)", MetricStoreCommitDuration, got)
	}
	// The mint's recording was a group commit of its own.
	if got, _ := gauge(t, reg, MetricStoreGroupCommitCalls, nil); got < 1 {
		t.Errorf("%s count = %v, want at least 1", MetricStoreGroupCommitCalls, got)
	}

	if got, ok := gauge(t, reg, MetricEntries, nil); !ok || got != 1 {
		t.Errorf("%s = %v (present %v), want 1", MetricEntries, got, ok)
	}
	if got, ok := gauge(t, reg, MetricBundleRevision, nil); !ok || got < 1 {
		t.Errorf("%s = %v (present %v), want at least 1", MetricBundleRevision, got, ok)
	}
	for _, kind := range []string{"root", "intermediate"} {
		got, ok := gauge(t, reg, MetricAuthorityExpiry, map[string]string{"kind": kind, "state": "active"})
		if !ok || got <= 0 {
			t.Errorf("%s{kind=%q,state=active} = %v (present %v), want positive", MetricAuthorityExpiry, kind, got, ok)
		}
	}

	if got, _ := gauge(t, reg, MetricConnectedAgents, nil); got != 0 {
		t.Errorf("%s before any sync stream = %v, want 0", MetricConnectedAgents, got)
	}
	if got, ok := gauge(t, reg, MetricReplicaAgents, map[string]string{"replica": "default"}); !ok || got != 0 {
		t.Errorf("%s{replica=default} before any sync stream = %v (present %v), want 0", MetricReplicaAgents, got, ok)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := n.client.SyncEntries(ctx, &nodev1.SyncEntriesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	if got, _ := gauge(t, reg, MetricConnectedAgents, nil); got != 1 {
		t.Errorf("%s with a sync stream open = %v, want 1", MetricConnectedAgents, got)
	}
	// The one server of a bbolt store is the replica named "default".
	if got, ok := gauge(t, reg, MetricReplicaAgents, map[string]string{"replica": "default"}); !ok || got != 1 {
		t.Errorf("%s{replica=default} with a sync stream open = %v (present %v), want 1", MetricReplicaAgents, got, ok)
	}
	cancel()
	waitUntil(t, "connected agents back to 0", func() bool {
		got, _ := gauge(t, reg, MetricConnectedAgents, nil)
		return got == 0
	})

	// The audit log's length, whatever the server records (the count
	// grows as features add records): present, and never below zero.
	if got, ok := gauge(t, reg, MetricAuditRecords, nil); !ok || got < 0 {
		t.Errorf("%s = %v (present %v)", MetricAuditRecords, got, ok)
	}

	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("metric %s does not follow Prometheus conventions: %s", p.Metric, p.Text)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestMetricsNil: a nil *Metrics (metrics off) is safe to use.
func TestMetricsNil(t *testing.T) {
	var m *Metrics
	if h := m.nodeHooks(); h.SVIDIssued != nil || h.Signed != nil || h.NodeAttested != nil {
		t.Error("nil Metrics gave node hooks")
	}
	if st := m.instrument(nil); st != nil {
		t.Error("nil Metrics wrapped the store")
	}
	m.bind(nil)
}

// TestReady: ready while the store is open and the key signs; not ready
// with a key that does not match the authority's certificate, or once the
// store is closed. The gRPC health service on the admin socket follows.
func TestReady(t *testing.T) {
	c, _, _, adminPath := startCAWithMetrics(t)
	ctx := context.Background()
	if err := c.srv.Ready(ctx); err != nil {
		t.Fatalf("Ready = %v, want nil", err)
	}

	conn, err := grpc.NewClient("unix://"+adminPath, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	waitUntil(t, "health SERVING", func() bool {
		r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
		return err == nil && r.Status == healthpb.HealthCheckResponse_SERVING
	})

	good := c.srv.ca.X509Authority()
	if err := probeSigner(good); err != nil {
		t.Errorf("probeSigner(active authority) = %v", err)
	}
	if err := probeSigner(&ca.X509Authority{ID: "x", Certificate: good.Certificate, Signer: newKey(t)}); err == nil {
		t.Error("probeSigner with another key = nil, want an error")
	}

	// A key that is not the certificate's: Ready catches it.
	bad := *good
	bad.ID = "mismatched"
	bad.Signer = newKey(t)
	c.srv.ca.SetX509Authority(&bad)
	if err := c.srv.Ready(ctx); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("Ready with a mismatched key = %v, want a mismatch error", err)
	}
	waitUntil(t, "health NOT_SERVING", func() bool {
		r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
		return err == nil && r.Status == healthpb.HealthCheckResponse_NOT_SERVING
	})
	c.srv.ca.SetX509Authority(good)
	if err := c.srv.Ready(ctx); err != nil {
		t.Errorf("Ready with the key restored = %v, want nil (the cached result is per authority)", err)
	}

	// No authority at all.
	c.srv.ca.SetX509Authority(nil)
	if err := c.srv.Ready(ctx); err == nil {
		t.Error("Ready without an authority = nil, want an error")
	}
	c.srv.ca.SetX509Authority(good)

	c.srv.Close()
	if err := c.srv.Ready(ctx); err == nil || !strings.Contains(err.Error(), "store") {
		t.Errorf("Ready after Close = %v, want a store error", err)
	}
}
