package e2e

import (
	"context"
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

// The CLI commands of issue #12 that stand on new admin RPCs (or new
// fields of old ones): token list/revoke, token create refusing a live
// node name, entry update, mtls set --dry-run and audit prune --dry-run.
// Each test first asks the server directly; where the handler answers
// Unimplemented (or ignores the new field) the test skips, naming it.

// adminClient dials the server's admin socket as the CLI does.
func adminClient(t testing.TB, s *testServer) adminv1.AdminServiceClient {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+s.admin,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", s.admin)
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return adminv1.NewAdminServiceClient(conn)
}

// skipIfUnimplemented skips the test when err is the server's
// Unimplemented for rpc.
func skipIfUnimplemented(t *testing.T, rpc string, err error) {
	t.Helper()
	if status.Code(err) == codes.Unimplemented {
		t.Skipf("the server's %s handler answers Unimplemented (the CA side of issue #12 is not merged)", rpc)
	}
}

func rpcCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestCLITokenListRevoke: token list shows unused tokens without their
// secrets; revoke by id and by node name removes them.
func TestCLITokenListRevoke(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	_, err := adminClient(t, s).ListJoinTokens(rpcCtx(t), &adminv1.ListJoinTokensRequest{})
	skipIfUnimplemented(t, "ListJoinTokens", err)
	if err != nil {
		t.Fatal(err)
	}
	var a, b struct {
		Token string `json:"token"`
		ID    string `json:"id"`
	}
	json.Unmarshal([]byte(s.cli(t, "token", "create", "--node-name", "node-a", "-o", "json")), &a)
	json.Unmarshal([]byte(s.cli(t, "token", "create", "--node-name", "node-b", "-o", "json")), &b)
	type listed struct {
		ID       string `json:"id"`
		NodeName string `json:"node_name"`
	}
	list := func() []listed {
		out := s.cli(t, "token", "list", "-o", "json")
		if strings.Contains(out, a.Token) || strings.Contains(out, b.Token) {
			t.Fatalf("token list shows a secret:\n%s", out)
		}
		var l []listed
		if err := json.Unmarshal([]byte(out), &l); err != nil {
			t.Fatal(err)
		}
		return l
	}
	if l := list(); len(l) != 2 {
		t.Fatalf("token list = %+v, want node-a and node-b", l)
	}
	if table := s.cli(t, "token", "list"); !strings.Contains(table, "node-a") || !strings.Contains(table, "node-b") {
		t.Errorf("token list table:\n%s", table)
	}
	s.cli(t, "token", "revoke", "--node-name", "node-a")
	if l := list(); len(l) != 1 || l[0].NodeName != "node-b" {
		t.Fatalf("after revoking node-a: %+v", l)
	}
	s.cli(t, "token", "revoke", l0(t, list()).ID)
	if l := list(); len(l) != 0 {
		t.Fatalf("after revoking node-b's token by id: %+v", l)
	}
	if r := s.run(t, "token", "revoke", "--node-name", "node-a"); r.code != 1 {
		t.Errorf("revoking again: exit %d, stderr %q", r.code, r.stderr)
	}
}

func l0[T any](t *testing.T, l []T) T {
	t.Helper()
	if len(l) == 0 {
		t.Fatal("empty list")
	}
	return l[0]
}

// TestCLITokenTakeover: a token for a live node's name is refused, naming
// the node and the way out; --force creates it and says what it replaces.
func TestCLITokenTakeover(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	a := startAgent(t, s, "live")
	waitFor(t, 30*time.Second, "the node to be listed", func() bool {
		return strings.Contains(s.cli(t, "node", "list"), a.nodeID)
	})
	_, err := adminClient(t, s).CreateJoinToken(rpcCtx(t), &adminv1.CreateJoinTokenRequest{NodeName: "live"})
	if err == nil {
		t.Skip("the server's CreateJoinToken does not refuse a live node's name (the CA side of issue #12 is not merged)")
	}
	r := s.run(t, "token", "create", "--node-name", "live")
	if r.code != 1 || !strings.Contains(r.stderr, a.nodeID) || !strings.Contains(r.stderr, "--force") {
		t.Errorf("token for a live node: exit %d, stderr %q; want exit 1 naming the node and --force", r.code, r.stderr)
	}
	r = s.run(t, "token", "create", "--node-name", "live", "--force")
	if r.code != 0 || !strings.Contains(r.stderr, "replaces the live node "+a.nodeID) {
		t.Errorf("token create --force: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestCLIEntryUpdate: entry update changes the TTL and DNS names in place,
// keeping the id and taking a new revision.
func TestCLIEntryUpdate(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	_, err := adminClient(t, s).UpdateEntry(rpcCtx(t), &adminv1.UpdateEntryRequest{Id: "none"})
	skipIfUnimplemented(t, "UpdateEntry", err)
	var tok struct {
		SPIFFEID string `json:"spiffe_id"`
	}
	json.Unmarshal([]byte(s.cli(t, "token", "create", "--node-name", "upd", "-o", "json")), &tok)
	id := strings.TrimSpace(s.cli(t, "entry", "create", "--spiffe-id", "spiffe://example.org/upd", "--parent-id", tok.SPIFFEID, "--selector", "unix:uid:1000"))
	type entry struct {
		ID       string   `json:"id"`
		X509TTL  string   `json:"x509_ttl"`
		DNSNames []string `json:"dns_names"`
		Revision int64    `json:"revision"`
	}
	show := func() entry {
		var e entry
		if err := json.Unmarshal([]byte(s.cli(t, "entry", "show", id, "-o", "json")), &e); err != nil {
			t.Fatal(err)
		}
		return e
	}
	before := show()
	s.cli(t, "entry", "update", id, "--x509-ttl", "1d", "--dns", "upd.internal")
	after := show()
	if after.ID != id || after.X509TTL != "24h0m0s" || len(after.DNSNames) != 1 || after.DNSNames[0] != "upd.internal" || after.Revision <= before.Revision {
		t.Errorf("after update: %+v (before %+v)", after, before)
	}
	s.cli(t, "entry", "update", "--clear-dns", id)
	if e := show(); len(e.DNSNames) != 0 || e.X509TTL != "24h0m0s" {
		t.Errorf("after --clear-dns: %+v; want no DNS names and the TTL kept", e)
	}
	if r := s.run(t, "entry", "update", id, "--x509-ttl", "0"); r.code != 1 || !strings.Contains(r.stderr, "--x509-ttl") {
		t.Errorf("--x509-ttl 0: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestCLIPreviews: mtls set --dry-run and audit prune --dry-run change
// nothing.
func TestCLIPreviews(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	resp, err := adminClient(t, s).SetMTLSPolicy(rpcCtx(t), &adminv1.SetMTLSPolicyRequest{
		Policy: &adminv1.MTLSPolicy{SpiffeId: "spiffe://example.org/probe", Mode: adminv1.MTLSMode_MTLS_MODE_STRICT}, Preview: true})
	if err != nil {
		t.Fatal(err)
	}
	if !resp.Preview {
		t.Skip("the server's SetMTLSPolicy ignores preview (the CA side of issue #12 is not merged)")
	}
	var preview struct {
		Preview     bool              `json:"preview"`
		WouldRefuse []json.RawMessage `json:"would_refuse"`
	}
	if err := json.Unmarshal([]byte(s.cli(t, "mtls", "set", "--mode", "STRICT", "--dry-run", "-o", "json")), &preview); err != nil || !preview.Preview {
		t.Fatalf("mtls set --dry-run: %+v, %v", preview, err)
	}
	if out := strings.TrimSpace(s.cli(t, "mtls", "list", "-o", "json")); out != "[]" {
		t.Errorf("a preview installed a policy: %s", out)
	}

	// Prune only removes exported records: export first. The probe
	// prunes before 1970 (nothing) and tells whether dry_run is honoured.
	exp := filepath.Join(t.TempDir(), "audit.jsonl")
	s.cli(t, "audit", "export", "--out", exp)
	pr, err := adminClient(t, s).PruneAudit(rpcCtx(t), &adminv1.PruneAuditRequest{Before: 1, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if !pr.DryRun {
		t.Skip("the server's PruneAudit ignores dry_run (the CA side of issue #12 is not merged)")
	}
	firstSeq := func() string {
		out := s.cli(t, "audit", "verify")
		_, rest, _ := strings.Cut(out, " seq ")
		first, _, _ := strings.Cut(rest, "..")
		return first
	}
	before := firstSeq()
	if out := s.cli(t, "audit", "prune", "--before", "0s", "--dry-run"); !strings.HasPrefix(out, "would remove ") {
		t.Errorf("audit prune --dry-run: %q", out)
	}
	if after := firstSeq(); after != before {
		t.Errorf("audit prune --dry-run removed records: the log started at seq %s, now at %s", before, after)
	}
}
