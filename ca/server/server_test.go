package server

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/signet-mesh/signet/ca"
	"github.com/signet-mesh/signet/ca/api"
	"github.com/signet-mesh/signet/ca/keys"
	"github.com/signet-mesh/signet/ca/store"
	"github.com/signet-mesh/signet/internal/clock"
	"github.com/signet-mesh/signet/internal/peercred"
	"github.com/signet-mesh/signet/internal/testdir"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
	nodev1 "github.com/signet-mesh/signet/proto/signet/node/v1"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

// testCA is a CA served on 127.0.0.1 and a Unix admin socket.
type testCA struct {
	srv   *Server
	addr  string
	admin adminv1.AdminServiceClient
	// conn is the admin socket's connection, for its other services.
	conn  *grpc.ClientConn
	batch adminv1.EntryBatchServiceClient
	roots []*x509.Certificate
	dir   string
	// stop ends Serve and closes the server; it is idempotent.
	stop func()
}

type testOpts struct {
	clock     clock.Clock
	nodeRate  float64
	noSync    bool
	noAudit   bool
	wrapStore func(store.Store) store.Store
	wrapKeys  func(keys.Manager) keys.Manager
	// etcd and serverName run the CA as a replica on etcd.
	etcd       *EtcdConfig
	serverName string
	admission  api.Admission
	metrics    *Metrics
	// checkpointRecords is TestOptions.CheckpointRecords.
	checkpointRecords int
}

// testKDFIterations is the PBKDF2 iteration count of the keys the tests'
// CAs write (TestOptions.KeyKDFIterations): the default, 600,000, made
// every CA start spend about 7 s under the race detector, most of this
// package's test time. The tests in ca/keys and internal/keypass cover
// the default.
const testKDFIterations = 1000

func startCA(tb testing.TB, o testOpts) *testCA {
	tb.Helper()
	dir := testdir.Short(tb)
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := NewForTest(ctx, Config{TrustDomain: td, DataDir: filepath.Join(dir, "data"), Passphrase: []byte("test"), Clock: o.clock, NodeRate: o.nodeRate, Etcd: o.etcd, ServerName: o.serverName, Admission: o.admission, Metrics: o.metrics},
		TestOptions{StoreNoSync: o.noSync, NoAudit: o.noAudit, WrapStore: o.wrapStore, WrapKeys: o.wrapKeys, KeyKDFIterations: testKDFIterations, CheckpointRecords: o.checkpointRecords})
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
	stop := sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("Serve: %v", err)
		}
		srv.Close()
	})
	tb.Cleanup(stop)
	conn, err := grpc.NewClient("unix://"+adminPath, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	b, err := srv.Bundle(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	return &testCA{srv: srv, addr: ln.Addr().String(), admin: adminv1.NewAdminServiceClient(conn), batch: adminv1.NewEntryBatchServiceClient(conn), conn: conn, roots: b.X509Authorities, dir: dir, stop: stop}
}

func (c *testCA) bundle() *x509bundle.Bundle { return x509bundle.FromX509Authorities(td, c.roots) }

// token creates a join token and returns it with the node ID it grants.
func (c *testCA) token(tb testing.TB, name string, ttl time.Duration) (string, string) {
	tb.Helper()
	resp, err := c.admin.CreateJoinToken(context.Background(), &adminv1.CreateJoinTokenRequest{NodeName: name, TtlSeconds: int64(ttl / time.Second)})
	if err != nil {
		tb.Fatal(err)
	}
	return resp.Token, resp.SpiffeId
}

// anonClient is a node API client without a client certificate.
func (c *testCA) anonClient(tb testing.TB) nodev1.NodeServiceClient {
	tb.Helper()
	cfg := tlsconfig.TLSClientConfig(c.bundle(), tlsconfig.AuthorizeID(spiffeid.RequireFromPath(td, "/signet/server")))
	conn, err := grpc.NewClient(c.addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return nodev1.NewNodeServiceClient(conn)
}

// node is an attested agent with an mTLS client.
type node struct {
	id     spiffeid.ID
	svid   *x509svid.SVID
	client nodev1.NodeServiceClient
}

func (c *testCA) attest(tb testing.TB, name string) *node {
	tb.Helper()
	tok, _ := c.token(tb, name, time.Minute)
	return c.attestWithToken(tb, tok)
}

func (c *testCA) attestWithToken(tb testing.TB, tok string) *node {
	tb.Helper()
	key := newKey(tb)
	resp, err := c.anonClient(tb).AttestNode(context.Background(), &nodev1.AttestNodeRequest{JoinToken: tok, Csr: csr(tb, key)})
	if err != nil {
		tb.Fatal(err)
	}
	svid := toSVID(tb, resp.Svid, key)
	cfg := tlsconfig.MTLSClientConfig(svidSource{svid}, c.bundle(), tlsconfig.AuthorizeID(spiffeid.RequireFromPath(td, "/signet/server")))
	conn, err := grpc.NewClient(c.addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return &node{id: svid.ID, svid: svid, client: nodev1.NewNodeServiceClient(conn)}
}

type svidSource struct{ s *x509svid.SVID }

func (s svidSource) GetX509SVID() (*x509svid.SVID, error) { return s.s, nil }

func (c *testCA) entry(tb testing.TB, spiffeID, parent string) string {
	tb.Helper()
	resp, err := c.admin.CreateEntries(context.Background(), &adminv1.CreateEntriesRequest{Entries: []*adminv1.Entry{{
		SpiffeId: spiffeID, ParentId: parent, Selectors: []string{"unix:uid:1000"},
	}}})
	if err != nil {
		tb.Fatal(err)
	}
	return resp.Entries[0].Id
}

func newKey(tb testing.TB) crypto.Signer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func csr(tb testing.TB, key crypto.Signer) []byte {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		tb.Fatal(err)
	}
	return der
}

func toSVID(tb testing.TB, p *nodev1.X509SVID, key crypto.Signer) *x509svid.SVID {
	tb.Helper()
	var raw []byte
	for _, c := range p.CertChain {
		raw = append(raw, c...)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	svid, err := x509svid.ParseRaw(raw, keyDER)
	if err != nil {
		tb.Fatalf("SVID rejected by go-spiffe: %v", err)
	}
	return svid
}

// TestJoinTokenRace: 50 concurrent attestations with one token; exactly one
// succeeds and the others are refused.
func TestJoinTokenRace(t *testing.T) {
	// Room for all 50 at once: the race, not admission control, decides.
	c := startCA(t, testOpts{admission: api.Admission{MaxAttestations: 64}})
	tok, nodeID := c.token(t, "racer", time.Minute)
	client := c.anonClient(t)
	var wins, denied atomic.Int32
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			key := newKey(t)
			_, err := client.AttestNode(context.Background(), &nodev1.AttestNodeRequest{JoinToken: tok, Csr: csr(t, key)})
			switch status.Code(err) {
			case codes.OK:
				wins.Add(1)
			case codes.PermissionDenied:
				denied.Add(1)
			default:
				t.Errorf("unexpected error: %v", err)
			}
		})
	}
	wg.Wait()
	if wins.Load() != 1 || denied.Load() != 49 {
		t.Fatalf("%d attestations succeeded and %d were denied; want 1 and 49", wins.Load(), denied.Load())
	}
	nodes, err := c.admin.ListNodes(context.Background(), &adminv1.ListNodesRequest{})
	if err != nil || len(nodes.Nodes) != 1 || nodes.Nodes[0].SpiffeId != nodeID {
		t.Fatalf("nodes after race = %v, %v; want just %s", nodes, err, nodeID)
	}
}

// TestExpiredTokenConsumed: an expired token is refused and consumed, by
// the server's clock.
func TestExpiredTokenConsumed(t *testing.T) {
	clk := clock.NewFake(time.Now())
	c := startCA(t, testOpts{clock: clk})
	tok, _ := c.token(t, "late", 5*time.Second)
	clk.Advance(6 * time.Second)
	client := c.anonClient(t)
	_, err := client.AttestNode(context.Background(), &nodev1.AttestNodeRequest{JoinToken: tok, Csr: csr(t, newKey(t))})
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired token: %v, want PermissionDenied mentioning expiry", err)
	}
	clk.Set(clk.Now().Add(-time.Minute)) // even back in its validity window
	_, err = client.AttestNode(context.Background(), &nodev1.AttestNodeRequest{JoinToken: tok, Csr: csr(t, newKey(t))})
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "already used") {
		t.Fatalf("reused expired token: %v, want PermissionDenied (consumed)", err)
	}
}

// TestMintAuthorization: a node can mint only the entries it parents; for
// another node's entry it gets NotFound and nothing is signed.
func TestMintAuthorization(t *testing.T) {
	c := startCA(t, testOpts{})
	a := c.attest(t, "a")
	b := c.attest(t, "b")
	entryA := c.entry(t, "spiffe://example.org/web", a.id.String())

	keyB := newKey(t)
	resp, err := b.client.MintX509SVIDs(context.Background(), &nodev1.MintX509SVIDsRequest{Params: []*nodev1.MintX509SVIDParams{
		{EntryId: entryA, Csr: csr(t, keyB)},
		{EntryId: "no-such-entry", Csr: csr(t, keyB)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range resp.Results {
		if codes.Code(r.Code) != codes.NotFound || r.Message != "entry not found or not authorized" || r.Svid != nil {
			t.Errorf("result for %s = %v, want NotFound with no SVID", r.EntryId, r)
		}
	}
	list, err := c.admin.ListSVIDs(context.Background(), &adminv1.ListSVIDsRequest{SpiffeId: "spiffe://example.org/web"})
	if err != nil || len(list.Svids) != 0 {
		t.Fatalf("SVIDs for web after refused mint: %v, %v; want none", list, err)
	}

	keyA := newKey(t)
	resp, err = a.client.MintX509SVIDs(context.Background(), &nodev1.MintX509SVIDsRequest{Params: []*nodev1.MintX509SVIDParams{{EntryId: entryA, Csr: csr(t, keyA)}}})
	if err != nil || codes.Code(resp.Results[0].Code) != codes.OK {
		t.Fatalf("mint own entry: %v %v", resp, err)
	}
	svid := toSVID(t, resp.Results[0].Svid, keyA)
	if svid.ID.String() != "spiffe://example.org/web" {
		t.Errorf("minted %s", svid.ID)
	}
	if _, _, err := x509svid.Verify(svid.Certificates, c.bundle()); err != nil {
		t.Errorf("minted SVID does not verify against the bundle: %v", err)
	}
	list, err = c.admin.ListSVIDs(context.Background(), &adminv1.ListSVIDsRequest{SpiffeId: "spiffe://example.org/web", Valid: true})
	if err != nil || len(list.Svids) != 1 || list.Svids[0].NodeId != a.id.String() || list.Svids[0].Serial != ca.FormatSerial(svid.Certificates[0].SerialNumber) {
		t.Fatalf("SVID index after mint: %v, %v", list, err)
	}
}

// TestEvictedNode: after eviction the node's still-valid SVID is refused.
func TestEvictedNode(t *testing.T) {
	c := startCA(t, testOpts{})
	n := c.attest(t, "gone")
	if _, err := n.client.RenewNodeSVID(context.Background(), &nodev1.RenewNodeSVIDRequest{Csr: csr(t, newKey(t))}); err != nil {
		t.Fatalf("renewal before eviction: %v", err)
	}
	if _, err := c.admin.EvictNode(context.Background(), &adminv1.EvictNodeRequest{SpiffeId: n.id.String()}); err != nil {
		t.Fatal(err)
	}
	_, err := n.client.RenewNodeSVID(context.Background(), &nodev1.RenewNodeSVIDRequest{Csr: csr(t, newKey(t))})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("renewal after eviction: %v, want PermissionDenied", err)
	}
	_, err = n.client.MintX509SVIDs(context.Background(), &nodev1.MintX509SVIDsRequest{Params: []*nodev1.MintX509SVIDParams{{EntryId: "x", Csr: csr(t, newKey(t))}}})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("mint after eviction: %v, want PermissionDenied", err)
	}
	if _, err := c.anonClient(t).RenewNodeSVID(context.Background(), &nodev1.RenewNodeSVIDRequest{Csr: csr(t, newKey(t))}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("renewal without a client certificate: %v, want Unauthenticated", err)
	}
}

// TestLimits: batch size, CSR size and per-node rate each get a clear
// status, and the process survives garbage and oversized frames.
func TestLimits(t *testing.T) {
	c := startCA(t, testOpts{nodeRate: 5})
	n := c.attest(t, "busy")
	entry := c.entry(t, "spiffe://example.org/limits", n.id.String())
	ctx := context.Background()

	big := make([]*nodev1.MintX509SVIDParams, 501)
	for i := range big {
		big[i] = &nodev1.MintX509SVIDParams{EntryId: entry, Csr: []byte{1}}
	}
	if _, err := n.client.MintX509SVIDs(ctx, &nodev1.MintX509SVIDsRequest{Params: big}); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "limit of 500") {
		t.Errorf("oversized batch: %v", err)
	}
	resp, err := n.client.MintX509SVIDs(ctx, &nodev1.MintX509SVIDsRequest{Params: []*nodev1.MintX509SVIDParams{{EntryId: entry, Csr: make([]byte, 64<<10)}}})
	if err != nil || codes.Code(resp.Results[0].Code) != codes.InvalidArgument {
		t.Errorf("oversized CSR: %v %v, want per-entry InvalidArgument", resp, err)
	}

	// Garbage on the TLS port, then an oversized message.
	for range 3 {
		conn, err := net.Dial("tcp", c.addr)
		if err != nil {
			t.Fatal(err)
		}
		conn.Write([]byte("\x16\x03\x01\xff\xffgarbage that is not a TLS handshake" + strings.Repeat("\x00", 1000)))
		conn.Close()
		tc := tls.Client(mustDial(t, c.addr), &tls.Config{InsecureSkipVerify: true})
		tc.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + strings.Repeat("\xff", 4096)))
		tc.Close()
	}
	huge := &nodev1.MintX509SVIDsRequest{Params: []*nodev1.MintX509SVIDParams{{EntryId: entry, Csr: make([]byte, 5<<20)}}}
	if _, err := n.client.MintX509SVIDs(ctx, huge); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("5 MiB message: %v, want ResourceExhausted", err)
	}

	// The rate limit: more calls than the burst in a tight loop.
	var limited bool
	for range 300 {
		_, err := n.client.RenewNodeSVID(ctx, &nodev1.RenewNodeSVIDRequest{Csr: []byte("x")})
		if status.Code(err) == codes.ResourceExhausted {
			limited = true
			break
		}
	}
	if !limited {
		t.Error("300 back-to-back calls were never rate limited")
	}
	// Still serving.
	if _, err := c.admin.GetBundle(ctx, &adminv1.GetBundleRequest{}); err != nil {
		t.Fatalf("server unhealthy after abuse: %v", err)
	}
	if _, err := c.anonClient(t).AttestNode(ctx, &nodev1.AttestNodeRequest{JoinToken: "nope", Csr: csr(t, newKey(t))}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("node API after abuse: %v", err)
	}
}

func mustDial(t *testing.T, addr string) net.Conn {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

// TestSyncEntries: the first message is the full state with the bundle;
// then creations and deletions arrive as pushed changes with higher
// revisions.
func TestSyncEntries(t *testing.T) {
	c := startCA(t, testOpts{})
	n := c.attest(t, "syncer")
	other := c.attest(t, "other")
	first := c.entry(t, "spiffe://example.org/one", n.id.String())
	c.entry(t, "spiffe://example.org/not-mine", other.id.String())

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
	if !msg.Full || len(msg.Entries) != 1 || msg.Entries[0].Id != first || msg.Bundle == nil || len(msg.Bundle.X509Authorities) != 1 {
		t.Fatalf("first message = %v", msg)
	}
	rev := msg.Revision

	second := c.entry(t, "spiffe://example.org/two", n.id.String())
	msg, err = stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if msg.Full || len(msg.Entries) != 1 || msg.Entries[0].Id != second || msg.Revision <= rev || msg.Bundle != nil {
		t.Fatalf("after create = %v", msg)
	}
	rev = msg.Revision
	if _, err := c.admin.DeleteEntry(ctx, &adminv1.DeleteEntryRequest{Id: first}); err != nil {
		t.Fatal(err)
	}
	msg, err = stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(msg.DeletedEntryIds) != 1 || msg.DeletedEntryIds[0] != first || msg.Revision <= rev {
		t.Fatalf("after delete = %v", msg)
	}
}
