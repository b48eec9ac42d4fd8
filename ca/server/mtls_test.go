package server

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/signet-mesh/signet/ca/api"
	"github.com/signet-mesh/signet/ca/audit"
	"github.com/signet-mesh/signet/internal/clock"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
	nodev1 "github.com/signet-mesh/signet/proto/signet/node/v1"
)

const (
	strictMode     = adminv1.MTLSMode_MTLS_MODE_STRICT
	permissiveMode = adminv1.MTLSMode_MTLS_MODE_PERMISSIVE
)

// TestMTLSPolicySync: policies are validated, stored, listed, and pushed to
// agents with the entry sync, the full set on the first message and on
// every change.
func TestMTLSPolicySync(t *testing.T) {
	c := startCA(t, testOpts{})
	n := c.attest(t, "policies")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := n.client.SyncEntries(ctx, &nodev1.SyncEntriesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if msg.MtlsPolicies == nil || len(msg.MtlsPolicies.Policies) != 0 {
		t.Fatalf("first message policies = %v, want an empty set", msg.MtlsPolicies)
	}

	set, err := c.admin.SetMTLSPolicy(ctx, &adminv1.SetMTLSPolicyRequest{Policy: &adminv1.MTLSPolicy{
		Prefix: "spiffe://example.org/prod", Mode: strictMode, ExemptPorts: []uint32{15021, 15021}, DryRun: true,
	}})
	if err != nil {
		t.Fatal(err)
	}
	p := set.Policy
	if p.Id == "" || p.Prefix != "spiffe://example.org/prod/" || len(p.ExemptPorts) != 1 || p.Revision == 0 {
		t.Fatalf("stored policy = %v; want an ID, the prefix ending in /, exempt ports deduplicated, a revision", p)
	}
	msg, err = stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if got := msg.GetMtlsPolicies().GetPolicies(); len(got) != 1 || got[0].Id != p.Id || got[0].Mode != "STRICT" || !got[0].DryRun {
		t.Fatalf("pushed policies = %v", msg.MtlsPolicies)
	}

	// Setting the same scope and port again replaces the policy.
	again, err := c.admin.SetMTLSPolicy(ctx, &adminv1.SetMTLSPolicyRequest{Policy: &adminv1.MTLSPolicy{Prefix: "spiffe://example.org/prod/", Mode: permissiveMode}})
	if err != nil {
		t.Fatal(err)
	}
	if again.Policy.Id != p.Id {
		t.Fatalf("replacing policy got ID %s, want %s", again.Policy.Id, p.Id)
	}
	if _, err := c.admin.SetMTLSPolicy(ctx, &adminv1.SetMTLSPolicyRequest{Policy: &adminv1.MTLSPolicy{Mode: permissiveMode}}); err != nil {
		t.Fatal(err)
	}
	list, err := c.admin.ListMTLSPolicies(ctx, &adminv1.ListMTLSPoliciesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Policies) != 2 || list.Policies[0].Prefix != "" || list.Policies[1].Mode != permissiveMode {
		t.Fatalf("list = %v; want the default first, then the prefix policy", list.Policies)
	}
	for msg.GetMtlsPolicies() == nil || len(msg.GetMtlsPolicies().GetPolicies()) != 2 {
		if msg, err = stream.Recv(); err != nil {
			t.Fatal(err)
		}
	}

	if _, err := c.admin.DeleteMTLSPolicy(ctx, &adminv1.DeleteMTLSPolicyRequest{Id: p.Id}); err != nil {
		t.Fatal(err)
	}
	msg, err = stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if got := msg.GetMtlsPolicies().GetPolicies(); len(got) != 1 || got[0].Prefix != "" {
		t.Fatalf("after delete pushed %v, want the default only", msg.MtlsPolicies)
	}
	_, err = c.admin.DeleteMTLSPolicy(ctx, &adminv1.DeleteMTLSPolicyRequest{Id: p.Id})
	if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), p.Id) {
		t.Fatalf("deleting again: %v, want NotFound naming the ID", err)
	}
}

func TestSetMTLSPolicyInvalid(t *testing.T) {
	c := startCA(t, testOpts{})
	tests := []struct {
		name    string
		policy  *adminv1.MTLSPolicy
		wantErr string
	}{
		{"no policy", nil, "policy: is required"},
		{"no mode", &adminv1.MTLSPolicy{}, "mode"},
		{"both scopes", &adminv1.MTLSPolicy{Mode: strictMode, SpiffeId: "spiffe://example.org/a", Prefix: "spiffe://example.org/b/"}, "spiffe_id and prefix"},
		{"foreign SPIFFE ID", &adminv1.MTLSPolicy{Mode: strictMode, SpiffeId: "spiffe://other.org/a"}, `spiffe_id "spiffe://other.org/a"`},
		{"bad prefix", &adminv1.MTLSPolicy{Mode: strictMode, Prefix: "example.org/a/"}, "prefix"},
		{"prefix of the whole trust domain", &adminv1.MTLSPolicy{Mode: strictMode, Prefix: "spiffe://example.org/"}, "whole trust domain"},
		{"port too large", &adminv1.MTLSPolicy{Mode: strictMode, Port: 70000}, "port"},
		{"exempt port on a port policy", &adminv1.MTLSPolicy{Mode: strictMode, Port: 8443, ExemptPorts: []uint32{9090}}, "exempt_ports"},
		{"exempt port 0", &adminv1.MTLSPolicy{Mode: strictMode, ExemptPorts: []uint32{0}}, "exempt_ports"},
		{"dry run without STRICT", &adminv1.MTLSPolicy{Mode: permissiveMode, DryRun: true}, "dry_run"},
		{"id set", &adminv1.MTLSPolicy{Mode: strictMode, Id: "mp-1"}, "assigned by the server"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.admin.SetMTLSPolicy(context.Background(), &adminv1.SetMTLSPolicyRequest{Policy: tt.policy})
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("SetMTLSPolicy: %v, want InvalidArgument containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestMTLSReadiness: counts reported by agents make mtls status and the
// STRICT readiness check, within the window and for the node's own
// workloads only.
func TestMTLSReadiness(t *testing.T) {
	clk := clock.NewFake(time.Now())
	c := startCA(t, testOpts{clock: clk})
	n := c.attest(t, "ready")
	other := c.attest(t, "other")
	const (
		wlWeb    = "spiffe://example.org/web"
		wlAPI    = "spiffe://example.org/api"
		wlTheirs = "spiffe://example.org/theirs"
	)
	c.entry(t, wlWeb, n.id.String())
	c.entry(t, wlAPI, n.id.String())
	c.entry(t, wlTheirs, other.id.String())
	ctx := context.Background()

	report := func(counts ...*nodev1.ConnectionCounts) {
		t.Helper()
		if _, err := n.client.ReportStatus(ctx, &nodev1.ReportStatusRequest{Connections: counts}); err != nil {
			t.Fatal(err)
		}
	}
	report(
		&nodev1.ConnectionCounts{SpiffeId: wlWeb, Port: 8443, Mtls: 5, Plaintext: 2, PlaintextSources: []string{"10.0.0.9"}},
		&nodev1.ConnectionCounts{SpiffeId: wlAPI, Port: 8443, Mtls: 7},
		// Not this node's workload: ignored.
		&nodev1.ConnectionCounts{SpiffeId: wlTheirs, Port: 8443, Plaintext: 9},
	)
	clk.Advance(time.Minute)
	report(&nodev1.ConnectionCounts{SpiffeId: wlWeb, Port: 9090, Plaintext: 1, PlaintextSources: []string{"10.0.0.10"}})

	st := mtlsStatusOf(t, c)
	if st.WindowSeconds != int64(api.DefaultMTLSWindow.Seconds()) {
		t.Errorf("window = %ds, want %s", st.WindowSeconds, api.DefaultMTLSWindow)
	}
	w := st.find(wlWeb)
	if w == nil || w.MtlsConnections != 5 || w.PlaintextConnections != 3 || w.Ready || w.Mode != permissiveMode ||
		strings.Join(w.PlaintextSources, ",") != "10.0.0.10,10.0.0.9" || len(w.Ports) != 2 {
		t.Fatalf("web status = %v", w)
	}
	if a := st.find(wlAPI); a == nil || !a.Ready || a.MtlsConnections != 7 {
		t.Fatalf("api status = %v, want ready with 7 mTLS", a)
	}
	if th := st.find(wlTheirs); th == nil || th.PlaintextConnections != 0 {
		t.Fatalf("another node's workload = %v: its counts came from the wrong node", th)
	}

	// STRICT over web is refused, naming it and its sources; STRICT on
	// api alone is fine, and so is STRICT on a port of web that saw no
	// plaintext.
	_, err := c.admin.SetMTLSPolicy(ctx, &adminv1.SetMTLSPolicyRequest{Policy: &adminv1.MTLSPolicy{Mode: strictMode}})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), wlWeb) || !strings.Contains(err.Error(), "10.0.0.9") || strings.Contains(err.Error(), wlAPI) {
		t.Fatalf("STRICT default: %v, want FailedPrecondition naming %s and its sources only", err, wlWeb)
	}
	if _, err := c.admin.SetMTLSPolicy(ctx, &adminv1.SetMTLSPolicyRequest{Policy: &adminv1.MTLSPolicy{Mode: strictMode, SpiffeId: wlAPI}}); err != nil {
		t.Fatalf("STRICT for a workload without plaintext: %v", err)
	}
	if _, err := c.admin.SetMTLSPolicy(ctx, &adminv1.SetMTLSPolicyRequest{Policy: &adminv1.MTLSPolicy{Mode: strictMode, SpiffeId: wlWeb, Port: 7000}}); err != nil {
		t.Fatalf("STRICT on a port without plaintext: %v", err)
	}
	// Dry run never breaks anything.
	if _, err := c.admin.SetMTLSPolicy(ctx, &adminv1.SetMTLSPolicyRequest{Policy: &adminv1.MTLSPolicy{Mode: strictMode, DryRun: true}}); err != nil {
		t.Fatalf("STRICT dry run: %v", err)
	}
	// Forced: applied, and the response names what it overrode.
	forced, err := c.admin.SetMTLSPolicy(ctx, &adminv1.SetMTLSPolicyRequest{Policy: &adminv1.MTLSPolicy{Mode: strictMode, SpiffeId: wlWeb, Port: 9090}, Force: true})
	if err != nil || len(forced.PlaintextWorkloads) != 1 || forced.PlaintextWorkloads[0] != wlWeb {
		t.Fatalf("forced STRICT: %v, %v", forced, err)
	}
	// Deleting a policy is checked the same way: under a STRICT default,
	// deleting web's own PERMISSIVE policy would make it STRICT.
	if _, err := c.admin.SetMTLSPolicy(ctx, &adminv1.SetMTLSPolicyRequest{Policy: &adminv1.MTLSPolicy{Mode: permissiveMode, SpiffeId: wlWeb}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.admin.SetMTLSPolicy(ctx, &adminv1.SetMTLSPolicyRequest{Policy: &adminv1.MTLSPolicy{Mode: strictMode}, Force: true}); err != nil {
		t.Fatal(err)
	}
	webID := ""
	list, _ := c.admin.ListMTLSPolicies(ctx, &adminv1.ListMTLSPoliciesRequest{})
	for _, p := range list.Policies {
		if p.SpiffeId == wlWeb && p.Port == 0 {
			webID = p.Id
		}
	}
	_, err = c.admin.DeleteMTLSPolicy(ctx, &adminv1.DeleteMTLSPolicyRequest{Id: webID})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), wlWeb) {
		t.Fatalf("deleting web's PERMISSIVE under a STRICT default: %v, want FailedPrecondition naming it", err)
	}

	// Once the window (and the slot that rounds it) has passed, web is
	// ready and nothing is refused.
	clk.Advance(api.DefaultMTLSWindow + time.Minute)
	if w := mtlsStatusOf(t, c).find(wlWeb); w == nil || !w.Ready || w.PlaintextConnections != 0 {
		t.Fatalf("after the window web = %v, want ready", w)
	}
	if _, err := c.admin.DeleteMTLSPolicy(ctx, &adminv1.DeleteMTLSPolicyRequest{Id: webID}); err != nil {
		t.Fatalf("deleting after the window: %v", err)
	}
	if w := mtlsStatusOf(t, c).find(wlWeb); w.Mode != strictMode {
		t.Fatalf("web mode = %s, want STRICT", w.Mode)
	}
}

type mtlsStatus struct{ *adminv1.GetMTLSStatusResponse }

func mtlsStatusOf(t *testing.T, c *testCA) mtlsStatus {
	t.Helper()
	st, err := c.admin.GetMTLSStatus(context.Background(), &adminv1.GetMTLSStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return mtlsStatus{st}
}

func (s mtlsStatus) find(id string) *adminv1.WorkloadMTLSStatus {
	for _, w := range s.Workloads {
		if w.SpiffeId == id {
			return w
		}
	}
	return nil
}

// TestMTLSPolicyAudit: every policy change, and every refusal for
// readiness, leaves one audit record in its transaction.
func TestMTLSPolicyAudit(t *testing.T) {
	c := startCA(t, testOpts{})
	n := c.attest(t, "audited")
	const web = "spiffe://example.org/web"
	c.entry(t, web, n.id.String())
	ctx := context.Background()
	if _, err := n.client.ReportStatus(ctx, &nodev1.ReportStatusRequest{Connections: []*nodev1.ConnectionCounts{{SpiffeId: web, Port: 80, Plaintext: 1}}}); err != nil {
		t.Fatal(err)
	}
	head := auditHead(t, c)

	set := func(p *adminv1.MTLSPolicy, force bool) (*adminv1.SetMTLSPolicyResponse, error) {
		return c.admin.SetMTLSPolicy(ctx, &adminv1.SetMTLSPolicyRequest{Policy: p, Force: force})
	}
	dry, err := set(&adminv1.MTLSPolicy{Prefix: "spiffe://example.org/ns/", Mode: strictMode, DryRun: true, ExemptPorts: []uint32{15021, 9090}}, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := set(&adminv1.MTLSPolicy{Mode: strictMode}, false); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("STRICT over plaintext: %v", err)
	}
	if _, err := set(&adminv1.MTLSPolicy{Mode: strictMode}, true); err != nil {
		t.Fatal(err)
	}
	if _, err := c.admin.DeleteMTLSPolicy(ctx, &adminv1.DeleteMTLSPolicyRequest{Id: dry.Policy.Id}); err != nil {
		t.Fatal(err)
	}

	recs := auditSince(t, c, head)
	want := []struct {
		typ, outcome, subject string
		details               map[string]string
	}{
		{audit.TypeMTLSPolicySet, audit.OutcomeSuccess, "spiffe://example.org/ns/", map[string]string{
			audit.DetailPolicyID: dry.Policy.Id, audit.DetailMode: "STRICT", audit.DetailDryRun: "true", audit.DetailExemptPorts: "9090,15021", audit.DetailPort: "0"}},
		{audit.TypeMTLSPolicySet, audit.OutcomeFailure, "spiffe://example.org", map[string]string{
			audit.DetailMode: "STRICT", audit.DetailForcedOver: web, audit.DetailReason: "plaintext seen in the window"}},
		{audit.TypeMTLSPolicySet, audit.OutcomeSuccess, "spiffe://example.org", map[string]string{
			audit.DetailMode: "STRICT", audit.DetailForcedOver: web}},
		{audit.TypeMTLSPolicyDeleted, audit.OutcomeSuccess, "spiffe://example.org/ns/", map[string]string{
			audit.DetailPolicyID: dry.Policy.Id, audit.DetailMethod: "DeleteMTLSPolicy"}},
	}
	if len(recs) != len(want) {
		t.Fatalf("%d audit records, want %d: %+v", len(recs), len(want), recs)
	}
	for i, w := range want {
		r := recs[i]
		if r.Type != w.typ || r.Outcome != w.outcome || r.Subject != w.subject || r.Actor == "" {
			t.Errorf("record %d = %s %s %q by %q, want %s %s %q", i, r.Type, r.Outcome, r.Subject, r.Actor, w.typ, w.outcome, w.subject)
		}
		for k, v := range w.details {
			if r.Details[k] != v {
				t.Errorf("record %d detail %s = %q, want %q", i, k, r.Details[k], v)
			}
		}
	}
}

// TestMTLSPolicyPreview: a preview installs nothing and writes no audit
// record; it lists, per workload whose mode would change, the counts over
// the window as the new policy would have treated them.
func TestMTLSPolicyPreview(t *testing.T) {
	c := startCA(t, testOpts{})
	n := c.attest(t, "preview")
	const (
		wlWeb = "spiffe://example.org/web"
		wlAPI = "spiffe://example.org/api"
		wlOff = "spiffe://example.org/other/off"
	)
	c.entry(t, wlWeb, n.id.String())
	c.entry(t, wlAPI, n.id.String())
	c.entry(t, wlOff, n.id.String())
	ctx := context.Background()
	if _, err := n.client.ReportStatus(ctx, &nodev1.ReportStatusRequest{Connections: []*nodev1.ConnectionCounts{
		{SpiffeId: wlWeb, Port: 8443, Mtls: 5, Plaintext: 2, PlaintextSources: []string{"10.0.0.9"}},
		{SpiffeId: wlAPI, Port: 8443, Mtls: 7},
	}}); err != nil {
		t.Fatal(err)
	}
	head := auditHead(t, c)
	resp, err := c.admin.SetMTLSPolicy(ctx, &adminv1.SetMTLSPolicyRequest{Preview: true,
		Policy: &adminv1.MTLSPolicy{Mode: strictMode, Prefix: "spiffe://example.org/"}})
	// A prefix of the whole trust domain is refused as for a real change.
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("preview of an invalid policy: %v, want InvalidArgument", err)
	}
	resp, err = c.admin.SetMTLSPolicy(ctx, &adminv1.SetMTLSPolicyRequest{Preview: true, Policy: &adminv1.MTLSPolicy{Mode: strictMode}})
	if err != nil {
		t.Fatalf("preview: %v", err)
	}
	if !resp.Preview {
		t.Error("response does not say it is a preview")
	}
	got := map[string]*adminv1.WorkloadMTLSStatus{}
	for _, w := range resp.WouldRefuse {
		got[w.SpiffeId] = w
	}
	if w := got[wlWeb]; w == nil || w.RefusedConnections != 2 || w.Ready || w.Mode != strictMode || strings.Join(w.PlaintextSources, ",") != "10.0.0.9" {
		t.Errorf("web in the preview: %v, want 2 plaintext connections refused under STRICT, from 10.0.0.9", w)
	}
	if w := got[wlAPI]; w == nil || w.RefusedConnections != 0 || !w.Ready || w.MtlsConnections != 7 {
		t.Errorf("api in the preview: %v, want its mode changing and nothing refused", w)
	}
	if strings.Join(resp.PlaintextWorkloads, ",") != wlWeb {
		t.Errorf("plaintext workloads %v, want only web", resp.PlaintextWorkloads)
	}
	list, err := c.admin.ListMTLSPolicies(ctx, &adminv1.ListMTLSPoliciesRequest{})
	if err != nil || len(list.Policies) != 0 {
		t.Errorf("policies after a preview: %v, %v; want none installed", list, err)
	}
	if h := auditHead(t, c); h != head {
		t.Errorf("a preview wrote %d audit records", h-head)
	}

	// A policy that changes nothing for a workload leaves it out.
	if _, err := c.admin.SetMTLSPolicy(ctx, &adminv1.SetMTLSPolicyRequest{Policy: &adminv1.MTLSPolicy{Mode: strictMode, SpiffeId: wlAPI}}); err != nil {
		t.Fatal(err)
	}
	resp, err = c.admin.SetMTLSPolicy(ctx, &adminv1.SetMTLSPolicyRequest{Preview: true, Policy: &adminv1.MTLSPolicy{Mode: strictMode, Prefix: "spiffe://example.org/other/"}})
	if err != nil || len(resp.WouldRefuse) != 1 || resp.WouldRefuse[0].SpiffeId != wlOff {
		t.Errorf("preview of a prefix policy: %v, %v; want only %s", resp, err, wlOff)
	}
}
