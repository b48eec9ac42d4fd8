// Package testserver runs a real signet CA (ca/server) in-process for the
// agent's tests: the node API on 127.0.0.1 with its real TLS and node
// authorization, and the admin API on a Unix socket under a temp dir,
// reached through its gRPC client exactly as the CLI reaches it. Tests of
// agent/... use it instead of a fake CA, so what they check is the contract
// the agent relies on.
//
//	s := testserver.Start(t)
//	tok := s.JoinToken(t, "node1")          // a join token for node1
//	roots := s.Roots(t)                      // the trust bundle, to authenticate the CA
//	s.Entry(t, tok.SpiffeId, "spiffe://example.org/web", "unix:uid:1000")
//	s.Evict(t, tok.SpiffeId)                 // as `signet node evict`
//
// The agent packages never import ca/ (their dependency guard forbids it);
// only their _test.go files import this package. Every helper fails the
// test on error.
package testserver

import (
	"context"
	"crypto/x509"
	"errors"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/signet-mesh/signet/ca/api"
	"github.com/signet-mesh/signet/ca/server"
	"github.com/signet-mesh/signet/internal/peercred"
	"github.com/signet-mesh/signet/internal/testdir"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

// TrustDomain is the trust domain of every test server.
var TrustDomain = spiffeid.RequireTrustDomainFromString("example.org")

// Server is a running CA.
type Server struct {
	// Addr is the node API's address (host:port).
	Addr string
	// Admin is a client of the admin API, authorized as the test's uid.
	Admin adminv1.AdminServiceClient
	// Federation is a client of the federation admin API, on the same
	// socket.
	Federation adminv1.FederationServiceClient

	dir      string
	cancel   context.CancelFunc
	done     chan error
	stopOnce sync.Once
}

// Options change the CA a test runs; the zero value is Start's.
type Options struct {
	// MaxAttestations, MaxMintBatches and RetryAfter set the CA's
	// admission control (api.Admission); zero takes its defaults.
	MaxAttestations, MaxMintBatches int
	RetryAfter                      time.Duration
	// ReconnectRate sets how fast agents come back after a restart
	// (api.NodeConfig); zero takes the default.
	ReconnectRate float64
}

// Start runs a CA with a fresh store until the test ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	return StartWith(tb, Options{})
}

// StartWith is Start with o.
func StartWith(tb testing.TB, o Options) *Server {
	tb.Helper()
	dir := testdir.Short(tb)
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, server.Config{TrustDomain: TrustDomain, DataDir: filepath.Join(dir, "data"), Passphrase: []byte("test"),
		Admission:     api.Admission{MaxAttestations: o.MaxAttestations, MaxMintBatches: o.MaxMintBatches, RetryAfter: o.RetryAfter},
		ReconnectRate: o.ReconnectRate})
	if err != nil {
		cancel()
		tb.Fatalf("testserver: %v", err)
	}
	nodeLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cancel()
		srv.Close()
		tb.Fatal(err)
	}
	adminPath := filepath.Join(dir, "admin.sock")
	adminLn, err := peercred.Listen(adminPath, 0o600)
	if err != nil {
		cancel()
		srv.Close()
		tb.Fatal(err)
	}
	s := &Server{Addr: nodeLn.Addr().String(), dir: dir, cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- srv.Serve(ctx, nodeLn, adminLn) }()
	conn, err := grpc.NewClient("unix:"+adminPath, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	s.Admin = adminv1.NewAdminServiceClient(conn)
	s.Federation = adminv1.NewFederationServiceClient(conn)
	tb.Cleanup(func() {
		conn.Close()
		s.Stop(tb)
		srv.Close()
	})
	return s
}

// Stop stops serving (agents then see the CA as unreachable). It is
// idempotent.
func (s *Server) Stop(tb testing.TB) {
	tb.Helper()
	s.stopOnce.Do(func() {
		s.cancel()
		select {
		case err := <-s.done:
			if err != nil && !errors.Is(err, context.Canceled) {
				tb.Errorf("testserver: serving: %v", err)
			}
		case <-time.After(30 * time.Second):
			tb.Error("testserver: did not stop")
		}
	})
}

func callCtx(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

// JoinToken creates a join token for nodeName.
func (s *Server) JoinToken(tb testing.TB, nodeName string) *adminv1.CreateJoinTokenResponse {
	tb.Helper()
	tok, err := s.Admin.CreateJoinToken(callCtx(tb), &adminv1.CreateJoinTokenRequest{NodeName: nodeName})
	if err != nil {
		tb.Fatalf("testserver: creating join token: %v", err)
	}
	return tok
}

// Roots returns the trust bundle's root certificates.
func (s *Server) Roots(tb testing.TB) []*x509.Certificate {
	tb.Helper()
	b, err := s.Admin.GetBundle(callCtx(tb), &adminv1.GetBundleRequest{})
	if err != nil {
		tb.Fatalf("testserver: reading bundle: %v", err)
	}
	var roots []*x509.Certificate
	for _, der := range b.GetX509Authorities() {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			tb.Fatal(err)
		}
		roots = append(roots, c)
	}
	return roots
}

// Entry registers spiffeID for parentID with selectors and returns the
// entry's id.
func (s *Server) Entry(tb testing.TB, parentID, spiffeID string, selectors ...string) string {
	tb.Helper()
	resp, err := s.Admin.CreateEntries(callCtx(tb), &adminv1.CreateEntriesRequest{Entries: []*adminv1.Entry{{
		SpiffeId: spiffeID, ParentId: parentID, Selectors: selectors,
	}}})
	if err != nil {
		tb.Fatalf("testserver: creating entry %s: %v", spiffeID, err)
	}
	return resp.GetEntries()[0].GetId()
}

// Evict evicts the node nodeID, as `signet node evict` does.
func (s *Server) Evict(tb testing.TB, nodeID string) {
	tb.Helper()
	if _, err := s.Admin.EvictNode(callCtx(tb), &adminv1.EvictNodeRequest{SpiffeId: nodeID}); err != nil {
		tb.Fatalf("testserver: evicting %s: %v", nodeID, err)
	}
}
