package api

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/signet-mesh/signet/internal/mtlspolicy"
)

func TestMTLSTrafficWindow(t *testing.T) {
	tr := newMTLSTraffic()
	tr.setWindow(10 * time.Minute) // slots of 30s
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	web := trafficKey{spiffeID: "spiffe://example.org/web", port: 8443}
	api := trafficKey{spiffeID: "spiffe://example.org/api", port: 8443}

	tr.add(t0, web, trafficCounts{plaintext: 2, sources: []string{"10.0.0.2", "10.0.0.1"}})
	tr.add(t0.Add(time.Second), web, trafficCounts{mtls: 3, plaintext: 1, sources: []string{"10.0.0.1"}})
	tr.add(t0.Add(5*time.Minute), api, trafficCounts{mtls: 1, refused: 4})
	tr.add(t0, api, trafficCounts{}) // nothing to record

	want := map[trafficKey]trafficCounts{
		web: {mtls: 3, plaintext: 3, sources: []string{"10.0.0.1", "10.0.0.2"}},
		api: {mtls: 1, refused: 4},
	}
	opt := cmp.AllowUnexported(trafficCounts{})
	if diff := cmp.Diff(want, tr.snapshot(t0.Add(9*time.Minute)), opt, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("within the window (-want +got):\n%s", diff)
	}
	// A count stays for the whole window...
	if got := tr.snapshot(t0.Add(10 * time.Minute))[web]; got.plaintext != 3 {
		t.Errorf("at the end of the window web has %d plaintext, want 3", got.plaintext)
	}
	// ...and leaves at most a slot later; keys with nothing left go.
	got := tr.snapshot(t0.Add(10*time.Minute + 31*time.Second))
	if _, ok := got[web]; ok {
		t.Errorf("web still counted a slot after the window: %+v", got[web])
	}
	if got[api].refused != 4 {
		t.Errorf("api lost its counts early: %+v", got[api])
	}
	if len(tr.rings) != 1 {
		t.Errorf("%d keys held, want 1 (web pruned)", len(tr.rings))
	}
}

func TestMergeSources(t *testing.T) {
	var many []string
	for i := range maxTrafficSources + 10 {
		many = append(many, time.Duration(i).String())
	}
	got := mergeSources([]string{"b"}, []string{"a", "b", "", "c"})
	if diff := cmp.Diff([]string{"a", "b", "c"}, got); diff != "" {
		t.Errorf("merge (-want +got):\n%s", diff)
	}
	if got := mergeSources(nil, many); len(got) != maxTrafficSources {
		t.Errorf("kept %d sources, want the limit %d", len(got), maxTrafficSources)
	}
}

func TestRefusesPlaintext(t *testing.T) {
	const web, api = "spiffe://example.org/web", "spiffe://example.org/api"
	traffic := map[trafficKey]trafficCounts{
		{web, 8443}: {plaintext: 1},
		{web, 9090}: {mtls: 4},
		{api, 8443}: {plaintext: 2},
	}
	strict := func(scope string, port uint32) mtlspolicy.Policy {
		return mtlspolicy.Policy{ID: scope, SPIFFEID: scope, Port: port, Mode: mtlspolicy.Strict}
	}
	tests := []struct {
		name          string
		before, after []mtlspolicy.Policy
		want          []string
	}{
		{"STRICT default", nil, []mtlspolicy.Policy{{Mode: mtlspolicy.Strict}}, []string{api, web}},
		{"STRICT for one workload", nil, []mtlspolicy.Policy{strict(web, 0)}, []string{web}},
		{"STRICT on a port without plaintext", nil, []mtlspolicy.Policy{strict(web, 9090)}, nil},
		{"dry run", nil, []mtlspolicy.Policy{{Mode: mtlspolicy.Strict, DryRun: true}}, nil},
		{"exempt port", nil, []mtlspolicy.Policy{{Mode: mtlspolicy.Strict, ExemptPorts: []uint32{8443}}}, nil},
		{"already STRICT", []mtlspolicy.Policy{strict(web, 0)}, []mtlspolicy.Policy{strict(web, 0), strict(web, 9090)}, nil},
		{"PERMISSIVE", nil, []mtlspolicy.Policy{{Mode: mtlspolicy.Permissive}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, refusesPlaintext(tt.before, tt.after, traffic)); diff != "" {
				t.Errorf("refusesPlaintext (-want +got):\n%s", diff)
			}
		})
	}
}
