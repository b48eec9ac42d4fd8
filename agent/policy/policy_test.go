package policy_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/signet-mesh/signet/agent/policy"
	"github.com/signet-mesh/signet/internal/mtlspolicy"
	nodev1 "github.com/signet-mesh/signet/proto/signet/node/v1"
)

func TestApply(t *testing.T) {
	s := policy.NewSet(nil)
	ps, known, changed := s.MTLSPolicies()
	if known || len(ps) != 0 {
		t.Fatalf("before any sync: %v, known %v", ps, known)
	}
	s.Apply(&nodev1.MTLSPolicies{Policies: []*nodev1.MTLSPolicy{
		{Id: "mp-1", SpiffeId: "spiffe://example.org/web", Port: 8443, Mode: "STRICT", ExemptPorts: []uint32{15021}, DryRun: true},
		{Id: "mp-2", Mode: "MUTUAL"}, // unknown: skipped
		{Id: "mp-3", Prefix: "spiffe://example.org/ns/", Mode: "DISABLE"},
	}})
	select {
	case <-changed:
	default:
		t.Fatal("changed channel not closed by a new policy set")
	}
	ps, known, _ = s.MTLSPolicies()
	want := []mtlspolicy.Policy{
		{ID: "mp-1", SPIFFEID: "spiffe://example.org/web", Port: 8443, Mode: mtlspolicy.Strict, ExemptPorts: []uint32{15021}, DryRun: true},
		{ID: "mp-3", Prefix: "spiffe://example.org/ns/", Mode: mtlspolicy.Disable},
	}
	if diff := cmp.Diff(want, ps); !known || diff != "" {
		t.Fatalf("policies (known %v) (-want +got):\n%s", known, diff)
	}
	// An empty set is known, and means PERMISSIVE everywhere.
	s.Apply(&nodev1.MTLSPolicies{})
	if ps, known, _ := s.MTLSPolicies(); !known || len(ps) != 0 {
		t.Fatalf("after an empty set: %v, known %v", ps, known)
	}
}
