package agent

import (
	"fmt"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/signet-mesh/signet/internal/mtlspolicy"
	agentv1 "github.com/signet-mesh/signet/proto/signet/agent/v1"
	nodev1 "github.com/signet-mesh/signet/proto/signet/node/v1"
)

func newPolicyAgent(t *testing.T) *Agent {
	t.Helper()
	a, err := New(Config{ServerAddress: "127.0.0.1:1", TrustDomain: spiffeid.RequireTrustDomainFromString("example.org"),
		DataDir: t.TempDir(), KeyPassphrase: []byte("test")})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestApplyPolicies(t *testing.T) {
	a := newPolicyAgent(t)
	ps, known, changed := a.MTLSPolicies()
	if known || len(ps) != 0 {
		t.Fatalf("before any sync: %v, known %v", ps, known)
	}
	a.applyPolicies(&nodev1.MTLSPolicies{Policies: []*nodev1.MTLSPolicy{
		{Id: "mp-1", SpiffeId: "spiffe://example.org/web", Port: 8443, Mode: "STRICT", ExemptPorts: []uint32{15021}, DryRun: true},
		{Id: "mp-2", Mode: "MUTUAL"}, // unknown: skipped
		{Id: "mp-3", Prefix: "spiffe://example.org/ns/", Mode: "DISABLE"},
	}})
	select {
	case <-changed:
	default:
		t.Fatal("changed channel not closed by a new policy set")
	}
	ps, known, _ = a.MTLSPolicies()
	want := []mtlspolicy.Policy{
		{ID: "mp-1", SPIFFEID: "spiffe://example.org/web", Port: 8443, Mode: mtlspolicy.Strict, ExemptPorts: []uint32{15021}, DryRun: true},
		{ID: "mp-3", Prefix: "spiffe://example.org/ns/", Mode: mtlspolicy.Disable},
	}
	if diff := cmp.Diff(want, ps); !known || diff != "" {
		t.Fatalf("policies (known %v) (-want +got):\n%s", known, diff)
	}
	// An empty set is known, and means PERMISSIVE everywhere.
	a.applyPolicies(&nodev1.MTLSPolicies{})
	if ps, known, _ := a.MTLSPolicies(); !known || len(ps) != 0 {
		t.Fatalf("after an empty set: %v, known %v", ps, known)
	}
}

func TestConnectionCounts(t *testing.T) {
	a := newPolicyAgent(t)
	web := "spiffe://example.org/web"
	a.AddConnections([]*agentv1.ConnectionCounts{
		{SpiffeId: web, Port: 8443, Mtls: 2, Plaintext: 1, PlaintextSources: []string{"10.0.0.1"}},
		{SpiffeId: web, Port: 8443, Plaintext: 2, Refused: 1, PlaintextSources: []string{"10.0.0.1", "10.0.0.2"}},
		{SpiffeId: web, Port: 9090, Mtls: 5},
	})
	got := a.mtls.takeCounts()
	slices.SortFunc(got, func(x, y *nodev1.ConnectionCounts) int { return int(x.Port) - int(y.Port) })
	want := []*nodev1.ConnectionCounts{
		{SpiffeId: web, Port: 8443, Mtls: 2, Plaintext: 3, Refused: 1, PlaintextSources: []string{"10.0.0.1", "10.0.0.2"}},
		{SpiffeId: web, Port: 9090, Mtls: 5},
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Fatalf("summed counts (-want +got):\n%s", diff)
	}
	if again := a.mtls.takeCounts(); again != nil {
		t.Fatalf("counts after take: %v", again)
	}
	// A failed report puts them back, added to what came meanwhile.
	a.AddConnections([]*agentv1.ConnectionCounts{{SpiffeId: web, Port: 9090, Mtls: 1}})
	a.mtls.putBack(want[1:])
	if got := a.mtls.takeCounts(); len(got) != 1 || got[0].Mtls != 6 {
		t.Fatalf("after put back: %v", got)
	}

	// Bounds: pairs and sources.
	var many []*agentv1.ConnectionCounts
	for i := range maxPendingCounts + 10 {
		many = append(many, &agentv1.ConnectionCounts{SpiffeId: web, Port: uint32(i + 1), Plaintext: 1, PlaintextSources: []string{fmt.Sprint(i)}})
	}
	a.AddConnections(many)
	var sources []string
	for i := range maxPendingSources + 10 {
		sources = append(sources, fmt.Sprint("10.1.0.", i))
	}
	a.AddConnections([]*agentv1.ConnectionCounts{{SpiffeId: web, Port: 1, PlaintextSources: sources}})
	got = a.mtls.takeCounts()
	if len(got) != maxPendingCounts {
		t.Fatalf("held %d pairs, want the limit %d", len(got), maxPendingCounts)
	}
	for _, c := range got {
		if len(c.PlaintextSources) > maxPendingSources {
			t.Fatalf("held %d sources, want at most %d", len(c.PlaintextSources), maxPendingSources)
		}
	}
}
