package server

import (
	"context"
	"crypto"
	"fmt"
	"io"
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc/codes"

	"github.com/signet-mesh/signet/ca/api"
	"github.com/signet-mesh/signet/ca/keys"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
	nodev1 "github.com/signet-mesh/signet/proto/signet/node/v1"
)

// TestRotateNowWindowFromMeasuredCost: the window a rotate-now sends the
// agents is the connected fleet's SVIDs at the cost the CA measured on its
// mints, on all its cores, and the metrics show that window and cost.
func TestRotateNowWindowFromMeasuredCost(t *testing.T) {
	cost := rotateNowWindow(t, testOpts{})
	if cost == time.Millisecond {
		t.Fatalf("SVID cost = %v, want one measured (not the default)", cost)
	}
}

// TestRotateNowWindowRemoteSigner: with a CA key outside the process (an
// HSM), the CA's CPU is not the limit: the window is sized from the
// signer's latency.
func TestRotateNowWindowRemoteSigner(t *testing.T) {
	const latency = 20 * time.Millisecond
	km := &slowKeys{latency: latency}
	if cost := rotateNowWindow(t, testOpts{wrapKeys: func(m keys.Manager) keys.Manager { km.Manager = m; return km }}); cost < latency {
		t.Fatalf("SVID cost = %v, want at least the signer's latency %v", cost, latency)
	}
}

// rotateNowWindow mints the SVIDs of a node's entries on a CA started with
// o, activates a root with --rotate-now and checks the window the node's
// stream is sent against the metrics; it returns the SVID cost.
func rotateNowWindow(t *testing.T, o testOpts) time.Duration {
	t.Helper()
	const entries = 40
	m := NewMetrics(prometheus.NewRegistry())
	o.metrics = m
	c := startCA(t, o)
	n := c.attest(t, "n1")
	req := &nodev1.MintX509SVIDsRequest{}
	for i := range entries {
		id := c.entry(t, fmt.Sprintf("spiffe://example.org/w%d", i), n.id.String())
		req.Params = append(req.Params, &nodev1.MintX509SVIDParams{EntryId: id, Csr: csr(t, newKey(t))})
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	stream, err := n.client.SyncEntries(ctx, &nodev1.SyncEntriesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if got := len(first.GetEntries()); got != entries {
		t.Fatalf("first sync message has %d entries, want %d", got, entries)
	}
	// Mint them all, twice: enough SVIDs for a measured cost.
	for range 2 {
		resp, err := n.client.MintX509SVIDs(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range resp.GetResults() {
			if codes.Code(r.GetCode()) != codes.OK {
				t.Fatalf("mint %s: %s", r.GetEntryId(), r.GetMessage())
			}
		}
	}

	if _, err := c.admin.PrepareRoot(ctx, &adminv1.PrepareRootRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.admin.ActivateRoot(ctx, &adminv1.ActivateRootRequest{Force: true, RotateNow: true}); err != nil {
		t.Fatal(err)
	}
	var sent time.Duration
	for {
		msg, err := stream.Recv()
		if err != nil {
			t.Fatalf("no new rotate generation on the stream: %v", err)
		}
		if msg.GetRotateGeneration() != first.GetRotateGeneration() {
			sent = time.Duration(msg.GetRotateSpreadMs()) * time.Millisecond
			break
		}
	}
	window, cost := gaugeSeconds(t, m.rotateWindow), gaugeSeconds(t, m.rotateCost)
	t.Logf("window %v, SVID cost %v", window, cost)
	if cost <= 0 {
		t.Fatalf("SVID cost = %v, want positive", cost)
	}
	// Both durations went through float seconds in a gauge: compare within
	// a microsecond, not by rounding, which can split them at a boundary.
	if want := time.Duration(entries * float64(cost) / (float64(runtime.GOMAXPROCS(0)) * api.RotateUtilization)); (window - want).Abs() > time.Microsecond {
		t.Errorf("window = %v, want %d SVIDs x %v at %v of %d cores = %v", window, entries, cost, api.RotateUtilization, runtime.GOMAXPROCS(0), want)
	}
	if sent != window.Truncate(time.Millisecond) {
		t.Errorf("window sent to the agent = %v, want the metric's %v", sent, window)
	}
	return cost
}

// slowKeys hands out signers that take latency per signature, as an HSM
// or a KMS does.
type slowKeys struct {
	keys.Manager
	latency time.Duration
}

func (k *slowKeys) Create(ctx context.Context, name string, kt keys.KeyType) (crypto.Signer, string, error) {
	s, ref, err := k.Manager.Create(ctx, name, kt)
	if err != nil {
		return nil, "", err
	}
	return slowSigner{s, k.latency}, ref, nil
}

func (k *slowKeys) Load(ctx context.Context, ref string) (crypto.Signer, error) {
	s, err := k.Manager.Load(ctx, ref)
	if err != nil {
		return nil, err
	}
	return slowSigner{s, k.latency}, nil
}

type slowSigner struct {
	crypto.Signer
	latency time.Duration
}

func (s slowSigner) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	time.Sleep(s.latency) // the round trip to the HSM
	return s.Signer.Sign(rand, digest, opts)
}

// gaugeSeconds reads g as a duration in seconds.
func gaugeSeconds(tb testing.TB, g prometheus.Gauge) time.Duration {
	tb.Helper()
	var d dto.Metric
	if err := g.Write(&d); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(d.GetGauge().GetValue() * float64(time.Second))
}
