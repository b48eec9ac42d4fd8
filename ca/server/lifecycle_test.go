package server

import (
	"context"
	"crypto"
	"crypto/x509"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/signet-mesh/signet/ca"
	"github.com/signet-mesh/signet/ca/audit"
	"github.com/signet-mesh/signet/internal/clock"
	"github.com/signet-mesh/signet/internal/nodeapi"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
	nodev1 "github.com/signet-mesh/signet/proto/signet/node/v1"
)

// Issue 12, "Node identity lifecycle": a live node's name cannot be handed
// to a second token holder by mistake; a forced takeover cuts the old
// holder off at once; the CA tells an agent why it refuses its identity.

// clientFor is a node API client presenting svid.
func (c *testCA) clientFor(tb testing.TB, svid *x509svid.SVID) nodev1.NodeServiceClient {
	tb.Helper()
	cfg := tlsconfig.MTLSClientConfig(svidSource{svid}, c.bundle(), tlsconfig.AuthorizeID(spiffeid.RequireFromPath(td, "/signet/server")))
	conn, err := grpc.NewClient(c.addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return nodev1.NewNodeServiceClient(conn)
}

// wantRejection fails unless err is the CA refusing the node for reason.
func wantRejection(t *testing.T, what string, err error, reason nodeapi.Reason) {
	t.Helper()
	got, ok := nodeapi.NodeRejection(err)
	if !ok || got != reason {
		t.Fatalf("%s: %v (rejection %q), want a node rejection %s", what, err, got, reason)
	}
}

// renew is a node SVID renewal through client.
func renew(t *testing.T, client nodev1.NodeServiceClient) error {
	t.Helper()
	_, err := client.RenewNodeSVID(context.Background(), &nodev1.RenewNodeSVIDRequest{Csr: csr(t, newKey(t))})
	return err
}

// TestTokenForLiveNodeRefused: a token for the name of an attested node
// is refused with a message naming the node and both ways out, and
// nothing is stored or audited.
func TestTokenForLiveNodeRefused(t *testing.T) {
	c := startCA(t, testOpts{})
	ctx := context.Background()
	n := c.attest(t, "web-1")
	head := auditHead(t, c)

	_, err := c.admin.CreateJoinToken(ctx, &adminv1.CreateJoinTokenRequest{NodeName: "web-1"})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("token for a live node: %v, want FailedPrecondition", err)
	}
	for _, want := range []string{n.id.String(), "signet node evict " + n.id.String(), "--force"} {
		if !strings.Contains(status.Convert(err).Message(), want) {
			t.Errorf("refusal %q does not name %q", status.Convert(err).Message(), want)
		}
	}
	toks, err := c.admin.ListJoinTokens(ctx, &adminv1.ListJoinTokensRequest{})
	if err != nil || len(toks.Tokens) != 0 {
		t.Errorf("ListJoinTokens after the refusal: %v, %v; want none", toks, err)
	}
	if h := auditHead(t, c); h != head {
		t.Errorf("a refused token creation wrote %d audit records", h-head)
	}
}

// TestForcedTakeover: a forced token names the node it replaces, in its
// answer and its audit record; once used, the old node's SVIDs stop
// working at once (on its open connection and its entry stream too),
// while the new holder's work.
func TestForcedTakeover(t *testing.T) {
	c := startCA(t, testOpts{})
	ctx := context.Background()
	old := c.attest(t, "web-1")
	stream, err := old.client.SyncEntries(ctx, &nodev1.SyncEntriesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("first sync message: %v", err)
	}
	// A renewal within the same attestation: both SVIDs speak for the
	// node (a connection opened before the renewal keeps working).
	if err := renew(t, old.client); err != nil {
		t.Fatalf("renewal: %v", err)
	}
	head := auditHead(t, c)

	resp, err := c.admin.CreateJoinToken(ctx, &adminv1.CreateJoinTokenRequest{NodeName: "web-1", Force: true})
	if err != nil {
		t.Fatalf("forced token: %v", err)
	}
	if resp.ReplacedNodeId != old.id.String() || resp.Id == "" {
		t.Errorf("forced token response: replaced %q, id %q; want %s and the token id", resp.ReplacedNodeId, resp.Id, old.id)
	}
	recs := auditSince(t, c, head)
	if len(recs) != 1 || recs[0].Type != audit.TypeTokenCreated || recs[0].Details[audit.DetailReplaces] != old.id.String() {
		t.Fatalf("audit of the forced token: %+v, want one token.created naming the replaced node", recs)
	}
	// Before the token is used, the old node still works.
	if err := renew(t, old.client); err != nil {
		t.Fatalf("renewal before the forced token is used: %v", err)
	}

	fresh := c.attestWithToken(t, resp.Token)
	if fresh.id != old.id {
		t.Fatalf("forced token attested %s, want %s", fresh.id, old.id)
	}
	wantRejection(t, "old node's renewal after the takeover", renew(t, old.client), nodeapi.ReasonSuperseded)
	_, err = old.client.MintX509SVIDs(ctx, &nodev1.MintX509SVIDsRequest{Params: []*nodev1.MintX509SVIDParams{{EntryId: "x", Csr: csr(t, newKey(t))}}})
	wantRejection(t, "old node's mint after the takeover", err, nodeapi.ReasonSuperseded)
	// Its open entry stream ends with the same answer.
	deadline := time.After(10 * time.Second)
	for {
		done := make(chan error, 1)
		go func() { _, err := stream.Recv(); done <- err }()
		select {
		case err := <-done:
			if err == nil {
				continue // a change sent before the takeover
			}
			wantRejection(t, "old node's entry stream", err, nodeapi.ReasonSuperseded)
		case <-deadline:
			t.Fatal("the old node's entry stream did not end after the takeover")
		}
		break
	}
	// A new connection with the old node's SVID is refused too.
	wantRejection(t, "old SVID on a new connection", renew(t, c.clientFor(t, old.svid)), nodeapi.ReasonSuperseded)
	if err := renew(t, fresh.client); err != nil {
		t.Errorf("the new holder's renewal: %v", err)
	}
	var attested *audit.Record
	for _, r := range auditSince(t, c, head) {
		if r.Type == audit.TypeNodeAttested && r.Outcome == audit.OutcomeSuccess {
			attested = &r
		}
	}
	if attested == nil || attested.Details[audit.DetailReplaces] != old.id.String() || attested.Details[audit.DetailReplacedIncarnation] == "" ||
		attested.Details[audit.DetailIncarnation] == attested.Details[audit.DetailReplacedIncarnation] {
		t.Errorf("audit of the takeover: %+v, want the replaced node and both incarnations", attested)
	}
}

// TestNodeRejectionReasons: the CA says why it refuses an identity for
// good: evicted, superseded (after eviction and a new attestation), or
// unknown. An evicted node attests again with a new token, and node list
// shows evicted nodes only when asked, marked so.
func TestNodeRejectionReasons(t *testing.T) {
	c := startCA(t, testOpts{})
	ctx := context.Background()
	n := c.attest(t, "db-1")
	if _, err := c.admin.EvictNode(ctx, &adminv1.EvictNodeRequest{SpiffeId: n.id.String()}); err != nil {
		t.Fatal(err)
	}
	err := renew(t, n.client)
	wantRejection(t, "evicted node's renewal", err, nodeapi.ReasonEvicted)
	if !strings.Contains(status.Convert(err).Message(), "evicted") {
		t.Errorf("evicted node's refusal %q does not say it was evicted", status.Convert(err).Message())
	}

	nodes, err := c.admin.ListNodes(ctx, &adminv1.ListNodesRequest{})
	if err != nil || len(nodes.Nodes) != 0 {
		t.Fatalf("node list after eviction: %v, %v; want no live node", nodes, err)
	}
	nodes, err = c.admin.ListNodes(ctx, &adminv1.ListNodesRequest{IncludeEvicted: true})
	if err != nil || len(nodes.Nodes) != 1 || nodes.Nodes[0].EvictedAt == 0 || nodes.Nodes[0].Connected {
		t.Fatalf("node list with evicted nodes: %v, %v; want db-1 marked evicted, not connected", nodes, err)
	}

	// Attesting again with a new token (no --force needed: the name is
	// free) works; the old SVID is now superseded.
	again := c.attest(t, "db-1")
	if err := renew(t, again.client); err != nil {
		t.Fatalf("renewal after attesting again: %v", err)
	}
	wantRejection(t, "pre-eviction SVID after attesting again", renew(t, n.client), nodeapi.ReasonSuperseded)

	// An SVID the CA signed for a node it has no record of.
	key := newKey(t)
	ghost := spiffeid.RequireFromPath(td, "/signet/agent/join_token/ghost")
	signed, err := c.srv.ca.SignX509SVID(ctx, ca.X509SVIDParams{SPIFFEID: ghost, PublicKey: key.Public()})
	if err != nil {
		t.Fatal(err)
	}
	svid := &x509svid.SVID{ID: ghost, Certificates: signed.Chain, PrivateKey: key}
	wantRejection(t, "unknown node", renew(t, c.clientFor(t, svid)), nodeapi.ReasonUnknown)
}

// TestFailedAttestationsAudited: every failed attestation is logged and
// audited with the caller's address, and with the node name when the
// token is known: unknown, expired, already used, bad CSR, and a token
// that may not take over a live node.
func TestFailedAttestationsAudited(t *testing.T) {
	clk := clock.NewFake(time.Now())
	c := startCA(t, testOpts{clock: clk})
	ctx := context.Background()
	expired, _ := c.token(t, "late", 5*time.Second)
	used, _ := c.token(t, "used", time.Minute)
	c.attestWithToken(t, used)
	badCSR, _ := c.token(t, "badcsr", time.Minute)
	// A token made while the name was free, used after another token
	// attested it.
	second, _ := c.token(t, "twice", time.Minute)
	c.attest(t, "twice")
	clk.Advance(6 * time.Second) // "late" expires

	head := auditHead(t, c)
	attempt := func(tok string, der []byte) error {
		_, err := c.anonClient(t).AttestNode(ctx, &nodev1.AttestNodeRequest{JoinToken: tok, Csr: der})
		return err
	}
	good := csr(t, newKey(t))
	tests := []struct {
		name     string
		err      error
		wantCode codes.Code
		nodeName string
		reason   string
	}{
		{"unknown token", attempt("no-such-token", good), codes.PermissionDenied, "", "unknown join token"},
		{"expired token", attempt(expired, good), codes.PermissionDenied, "late", "expired"},
		{"used token", attempt(used, good), codes.PermissionDenied, "used", "already used"},
		{"bad CSR", attempt(badCSR, []byte("junk")), codes.InvalidArgument, "badcsr", "invalid CSR"},
		{"live node", attempt(second, good), codes.PermissionDenied, "twice", "taken by a live node"},
	}
	recs := auditSince(t, c, head)
	if len(recs) != len(tests) {
		t.Fatalf("%d audit records for %d failed attestations: %+v", len(recs), len(tests), recs)
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if status.Code(tt.err) != tt.wantCode {
				t.Errorf("attestation: %v, want %s", tt.err, tt.wantCode)
			}
			r := recs[i]
			if r.Type != audit.TypeNodeAttested || r.Outcome != audit.OutcomeFailure {
				t.Fatalf("record %+v, want a failed node.attested", r)
			}
			if !strings.HasPrefix(r.Details[audit.DetailPeerAddress], "127.0.0.1:") {
				t.Errorf("peer address %q, want the caller's", r.Details[audit.DetailPeerAddress])
			}
			if r.Details[audit.DetailNodeName] != tt.nodeName {
				t.Errorf("node name %q, want %q", r.Details[audit.DetailNodeName], tt.nodeName)
			}
			if !strings.Contains(r.Details[audit.DetailReason], tt.reason) {
				t.Errorf("reason %q, want it to contain %q", r.Details[audit.DetailReason], tt.reason)
			}
		})
	}
	// The bad CSR did not spend its token.
	if _, err := c.anonClient(t).AttestNode(ctx, &nodev1.AttestNodeRequest{JoinToken: badCSR, Csr: good}); err != nil {
		t.Errorf("token after a bad CSR: %v, want it still usable", err)
	}
}

// TestJoinTokenListAndRevoke: list shows unused, unexpired tokens without
// their secret; revoke by id or by node name deletes them with an audit
// record, and a revoked token no longer attests.
func TestJoinTokenListAndRevoke(t *testing.T) {
	c := startCA(t, testOpts{})
	ctx := context.Background()
	tokA, _ := c.token(t, "a", time.Hour)
	tokB, _ := c.token(t, "b", time.Hour)
	used, _ := c.token(t, "c", time.Hour)
	c.attestWithToken(t, used)

	list, err := c.admin.ListJoinTokens(ctx, &adminv1.ListJoinTokensRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tok := range list.Tokens {
		names = append(names, tok.NodeName)
		if tok.Id == "" || tok.ExpiresAt == 0 || tok.SpiffeId == "" {
			t.Errorf("listed token %+v lacks its id, expiry or SPIFFE ID", tok)
		}
		if strings.Contains(tok.String(), tokA) || strings.Contains(tok.String(), tokB) {
			t.Errorf("listed token %+v shows a secret", tok)
		}
	}
	if strings.Join(names, ",") != "a,b" {
		t.Fatalf("listed tokens for %v, want a and b (c was used)", names)
	}

	head := auditHead(t, c)
	byID, err := c.admin.RevokeJoinToken(ctx, &adminv1.RevokeJoinTokenRequest{Id: list.Tokens[0].Id})
	if err != nil || len(byID.Revoked) != 1 || byID.Revoked[0].NodeName != "a" {
		t.Fatalf("revoke by id: %v, %v", byID, err)
	}
	byName, err := c.admin.RevokeJoinToken(ctx, &adminv1.RevokeJoinTokenRequest{NodeName: "b"})
	if err != nil || len(byName.Revoked) != 1 {
		t.Fatalf("revoke by node name: %v, %v", byName, err)
	}
	recs := auditSince(t, c, head)
	if len(recs) != 2 || recs[0].Type != audit.TypeTokenRevoked || recs[1].Details[audit.DetailNodeName] != "b" {
		t.Errorf("audit of two revocations: %+v", recs)
	}
	for _, tok := range []string{tokA, tokB} {
		if _, err := c.anonClient(t).AttestNode(ctx, &nodev1.AttestNodeRequest{JoinToken: tok, Csr: csr(t, newKey(t))}); status.Code(err) != codes.PermissionDenied {
			t.Errorf("attestation with a revoked token: %v, want PermissionDenied", err)
		}
	}
	for _, tt := range []struct {
		req  *adminv1.RevokeJoinTokenRequest
		code codes.Code
		msg  string
	}{
		{&adminv1.RevokeJoinTokenRequest{Id: "nope"}, codes.NotFound, `no unused join token with id "nope"`},
		{&adminv1.RevokeJoinTokenRequest{NodeName: "c"}, codes.NotFound, `no unused join token for node "c"`},
		{&adminv1.RevokeJoinTokenRequest{}, codes.InvalidArgument, "exactly one of"},
		{&adminv1.RevokeJoinTokenRequest{Id: "x", NodeName: "y"}, codes.InvalidArgument, "exactly one of"},
	} {
		_, err := c.admin.RevokeJoinToken(ctx, tt.req)
		if status.Code(err) != tt.code || !strings.Contains(status.Convert(err).Message(), tt.msg) {
			t.Errorf("RevokeJoinToken(%v): %v, want %s containing %q", tt.req, err, tt.code, tt.msg)
		}
	}
}

// TestUpdateEntry: an update keeps the id, takes a new revision (so the
// agent re-mints), is audited with what changed, and is validated like a
// creation: a bad update changes nothing.
func TestUpdateEntry(t *testing.T) {
	c := startCA(t, testOpts{})
	ctx := context.Background()
	n := c.attest(t, "app")
	id := c.entry(t, "spiffe://example.org/app", n.id.String())
	before, err := c.admin.GetEntry(ctx, &adminv1.GetEntryRequest{Id: id})
	if err != nil {
		t.Fatal(err)
	}
	stream, err := n.client.SyncEntries(ctx, &nodev1.SyncEntriesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	head := auditHead(t, c)
	ttl := int64(600)
	resp, err := c.admin.UpdateEntry(ctx, &adminv1.UpdateEntryRequest{Id: id, X509TtlSeconds: &ttl,
		Selectors: &adminv1.StringList{Values: []string{"unix:uid:2000"}}, DnsNames: &adminv1.StringList{Values: []string{"app.internal"}}})
	if err != nil {
		t.Fatalf("UpdateEntry: %v", err)
	}
	got := resp.Entry
	if got.Id != id || got.X509TtlSeconds != 600 || strings.Join(got.Selectors, ",") != "unix:uid:2000" || strings.Join(got.DnsNames, ",") != "app.internal" || got.Revision <= before.Entry.Revision {
		t.Errorf("updated entry %+v, want the same id, the new fields and a revision above %d", got, before.Entry.Revision)
	}
	msg, err := stream.Recv()
	if err != nil || len(msg.Entries) != 1 || msg.Entries[0].Revision != got.Revision {
		t.Errorf("agent's sync after the update: %v, %v; want the entry at revision %d", msg, err, got.Revision)
	}
	recs := auditSince(t, c, head)
	if len(recs) != 1 || recs[0].Type != audit.TypeEntryUpdated || recs[0].Details[audit.DetailChanged] != "x509_ttl,dns_names,selectors" {
		t.Errorf("audit of the update: %+v", recs)
	}

	head = auditHead(t, c)
	for _, tt := range []struct {
		name string
		req  *adminv1.UpdateEntryRequest
		code codes.Code
		msg  string
	}{
		{"bad selector", &adminv1.UpdateEntryRequest{Id: id, Selectors: &adminv1.StringList{Values: []string{"unix:uid:x"}}}, codes.InvalidArgument, "decimal number"},
		{"no selectors", &adminv1.UpdateEntryRequest{Id: id, Selectors: &adminv1.StringList{}}, codes.InvalidArgument, "at least one selector"},
		{"wildcard not allowed", &adminv1.UpdateEntryRequest{Id: id, DnsNames: &adminv1.StringList{Values: []string{"*.internal"}}}, codes.InvalidArgument, "is a wildcard"},
		{"nothing to change", &adminv1.UpdateEntryRequest{Id: id}, codes.InvalidArgument, "nothing to change"},
		{"unknown entry", &adminv1.UpdateEntryRequest{Id: "nope", X509TtlSeconds: &ttl}, codes.NotFound, `entry "nope" not found`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.admin.UpdateEntry(ctx, tt.req)
			if status.Code(err) != tt.code || !strings.Contains(status.Convert(err).Message(), tt.msg) {
				t.Errorf("UpdateEntry: %v, want %s containing %q", err, tt.code, tt.msg)
			}
		})
	}
	after, err := c.admin.GetEntry(ctx, &adminv1.GetEntryRequest{Id: id})
	if err != nil || after.Entry.Revision != got.Revision || auditHead(t, c) != head {
		t.Errorf("refused updates changed the entry (%v) or the audit log", after)
	}
}

// TestPruneAuditDryRun: a dry run says how many records a prune would
// remove, and removes none.
func TestPruneAuditDryRun(t *testing.T) {
	c := startCA(t, testOpts{})
	ctx := context.Background()
	c.token(t, "x", time.Minute)
	stream, err := c.admin.ExportAudit(ctx, &adminv1.ExportAuditRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := stream.Recv(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	head := auditHead(t, c)
	resp, err := c.admin.PruneAudit(ctx, &adminv1.PruneAuditRequest{Before: time.Now().Add(time.Hour).UnixNano(), DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if !resp.DryRun || resp.Removed == 0 || int(resp.Removed) >= int(head) {
		t.Errorf("dry run = %+v, want some of the %d records and dry_run set", resp, head)
	}
	if h := auditHead(t, c); h != head || auditSince(t, c, 0)[0].Seq != 1 {
		t.Errorf("a dry run changed the log")
	}
}

// TestAttestationRetrySameKey: an agent whose attestation succeeded but
// whose answer was lost (a client timeout under load) retries with its
// spent token and the same key, and gets the same attestation back; any
// other key, an evicted node, or an expired token is refused as a used
// token.
func TestAttestationRetrySameKey(t *testing.T) {
	clk := clock.NewFake(time.Now())
	c := startCA(t, testOpts{clock: clk})
	ctx := context.Background()
	tok, nodeID := c.token(t, "lost", time.Minute)
	key := newKey(t)
	attest := func(k crypto.Signer) (*nodev1.AttestNodeResponse, error) {
		return c.anonClient(t).AttestNode(ctx, &nodev1.AttestNodeRequest{JoinToken: tok, Csr: csr(t, k)})
	}
	first, err := attest(key)
	if err != nil {
		t.Fatal(err)
	}
	leaf := func(r *nodev1.AttestNodeResponse) *x509.Certificate {
		t.Helper()
		cert, err := x509.ParseCertificate(r.GetSvid().GetCertChain()[0])
		if err != nil {
			t.Fatal(err)
		}
		return cert
	}
	head := auditHead(t, c)
	again, err := attest(key)
	if err != nil {
		t.Fatalf("retry with the same key: %v, want the attestation again", err)
	}
	a, b := leaf(first), leaf(again)
	if a.SerialNumber.Cmp(b.SerialNumber) == 0 || a.Subject.SerialNumber != b.Subject.SerialNumber || a.URIs[0].String() != nodeID {
		t.Errorf("retry gave serial %x incarnation %q for %s; want a new SVID of incarnation %q for %s", b.SerialNumber, b.Subject.SerialNumber, b.URIs[0], a.Subject.SerialNumber, nodeID)
	}
	recs := auditSince(t, c, head)
	if len(recs) != 1 || recs[0].Outcome != audit.OutcomeSuccess || !strings.Contains(recs[0].Details[audit.DetailReason], "retry") {
		t.Errorf("audit records of the retry: %+v, want one successful node.attested naming the retry", recs)
	}

	if _, err := attest(newKey(t)); status.Code(err) != codes.PermissionDenied {
		t.Errorf("spent token with another key: %v, want PermissionDenied", err)
	}
	clk.Advance(2 * time.Minute)
	if _, err := attest(key); status.Code(err) != codes.PermissionDenied {
		t.Errorf("retry after the token expired: %v, want PermissionDenied", err)
	}

	tok2, nodeID2 := c.token(t, "evicted", time.Hour)
	key2 := newKey(t)
	if _, err := c.anonClient(t).AttestNode(ctx, &nodev1.AttestNodeRequest{JoinToken: tok2, Csr: csr(t, key2)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.admin.EvictNode(ctx, &adminv1.EvictNodeRequest{SpiffeId: nodeID2}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.anonClient(t).AttestNode(ctx, &nodev1.AttestNodeRequest{JoinToken: tok2, Csr: csr(t, key2)}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("retry for an evicted node: %v, want PermissionDenied", err)
	}
}
