package client_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/signet-mesh/signet/agent/client"
	"github.com/signet-mesh/signet/internal/nodeapi"
	nodev1 "github.com/signet-mesh/signet/proto/signet/node/v1"
	"github.com/signet-mesh/signet/test/testserver"
)

// These tests run the client against a real CA (test/testserver): real
// TLS, real node authorization, real signing.

var td = testserver.TrustDomain

func newKey(t *testing.T) crypto.Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// attested is a node attested to s, with a client connected as it.
type attested struct {
	svid   *x509svid.SVID
	bundle *x509bundle.Bundle
	src    *client.Source
	c      *client.Client
}

func attest(t *testing.T, s *testserver.Server, name string) *attested {
	t.Helper()
	tok := s.JoinToken(t, name)
	key := newKey(t)
	svid, b, err := client.Attest(ctx(t), client.AttestParams{Address: s.Addr, TrustDomain: td, Bootstrap: s.Roots(t), JoinToken: tok.GetToken(), Key: key})
	if err != nil {
		t.Fatalf("Attest: %v", err)
	}
	bundle, err := client.BundleFromProto(td, b)
	if err != nil {
		t.Fatal(err)
	}
	src := client.NewSource(svid, bundle)
	c, err := client.Dial(s.Addr, td, src)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &attested{svid: svid, bundle: bundle, src: src, c: c}
}

// TestClient runs every call against one CA (starting one costs seconds
// under the race detector).
func TestClient(t *testing.T) {
	s := testserver.Start(t)
	t.Run("attest", func(t *testing.T) { testAttest(t, s) })
	t.Run("node calls", func(t *testing.T) { testNodeCalls(t, s) })
	t.Run("evicted node", func(t *testing.T) { testEvictedNode(t, s) })
	t.Run("source", func(t *testing.T) { testSource(t, s) })
	t.Run("svid from proto", func(t *testing.T) { testSVIDFromProto(t, s) })
}

func testAttest(t *testing.T, s *testserver.Server) {
	// A root that did not sign the CA's certificate.
	otherRoot, err := x509.ParseCertificate(selfSigned(t, newKey(t)))
	if err != nil {
		t.Fatal(err)
	}
	tok := s.JoinToken(t, "node1")
	key := newKey(t)
	tests := []struct {
		name     string
		params   client.AttestParams
		key      crypto.Signer // nil: key
		wantCode codes.Code    // of the error, when wantErr is set
		wantErr  string
	}{
		{name: "unknown token", params: client.AttestParams{Bootstrap: s.Roots(t), JoinToken: "no-such-token"}, wantCode: codes.PermissionDenied, wantErr: "attesting"},
		{name: "no bundle", params: client.AttestParams{JoinToken: tok.GetToken()}, wantErr: "a trust bundle is required"},
		{name: "roots of another CA", params: client.AttestParams{Bootstrap: []*x509.Certificate{otherRoot}, JoinToken: tok.GetToken()}, wantCode: codes.Unavailable, wantErr: "attesting"},
		{name: "valid token", params: client.AttestParams{Bootstrap: s.Roots(t), JoinToken: tok.GetToken()}},
		// The same key again is a retry whose answer was lost: the CA
		// gives the attestation back. Another key is another agent.
		{name: "token retried with the same key", params: client.AttestParams{Bootstrap: s.Roots(t), JoinToken: tok.GetToken()}},
		{name: "token used by another key", params: client.AttestParams{Bootstrap: s.Roots(t), JoinToken: tok.GetToken()}, key: newKey(t), wantCode: codes.PermissionDenied, wantErr: "attesting"},
	}
	for _, tt := range tests { // in order: the token is used once
		t.Run(tt.name, func(t *testing.T) {
			p := tt.params
			p.Address, p.TrustDomain, p.Key = s.Addr, td, key
			if tt.key != nil {
				p.Key = tt.key
			}
			svid, b, err := client.Attest(ctx(t), p)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Attest = %v, want an error containing %q", err, tt.wantErr)
				}
				if tt.wantCode != codes.OK && status.Code(err) != tt.wantCode {
					t.Fatalf("Attest = %v (code %v), want code %v", err, status.Code(err), tt.wantCode)
				}
				return
			}
			if err != nil {
				t.Fatalf("Attest: %v", err)
			}
			if got := svid.ID.String(); got != tok.GetSpiffeId() {
				t.Errorf("node SVID for %s, want %s", got, tok.GetSpiffeId())
			}
			if !svid.Certificates[0].PublicKey.(*ecdsa.PublicKey).Equal(key.Public()) {
				t.Error("node SVID is not for the key that asked")
			}
			bundle, err := client.BundleFromProto(td, b)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := x509svid.Verify(svid.Certificates, bundle); err != nil {
				t.Errorf("node SVID does not verify against the returned bundle: %v", err)
			}
		})
	}
}

func testNodeCalls(t *testing.T, s *testserver.Server) {
	n := attest(t, s, "node2")
	entryID := s.Entry(t, n.svid.ID.String(), "spiffe://example.org/web", "unix:uid:1000")

	t.Run("sync", func(t *testing.T) {
		stream, err := n.c.SyncEntries(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		msg, err := stream.Recv()
		if err != nil {
			t.Fatalf("first sync message: %v", err)
		}
		if !msg.GetFull() || len(msg.GetEntries()) != 1 || msg.GetEntries()[0].GetId() != entryID || msg.GetBundle() == nil {
			t.Errorf("first sync message = %v, want full, with entry %s and the bundle", msg, entryID)
		}
	})

	t.Run("mint", func(t *testing.T) {
		key := newKey(t)
		reqs := []client.MintRequest{{EntryID: entryID, Key: key}}
		// Past one batch: the rest are entries of no one, refused one by
		// one, so the split and the order of the results show.
		for i := range client.MaxMintBatch {
			reqs = append(reqs, client.MintRequest{EntryID: fmt.Sprintf("unknown-%d", i), Key: key})
		}
		results, err := n.c.MintX509SVIDs(ctx(t), reqs)
		if err != nil {
			t.Fatalf("MintX509SVIDs: %v", err)
		}
		if len(results) != len(reqs) {
			t.Fatalf("%d results for %d requests", len(results), len(reqs))
		}
		if r := results[0]; r.Err != nil || r.SVID == nil || r.SVID.ID.String() != "spiffe://example.org/web" || r.EntryID != entryID {
			t.Fatalf("result for the entry = %+v", r)
		}
		if _, _, err := x509svid.Verify(results[0].SVID.Certificates, n.bundle); err != nil {
			t.Errorf("minted SVID does not verify: %v", err)
		}
		for i, r := range results[1:] {
			if want := fmt.Sprintf("unknown-%d", i); r.EntryID != want || status.Code(r.Err) != codes.NotFound {
				t.Fatalf("result %d = %s, %v; want %s, NotFound", i+1, r.EntryID, r.Err, want)
			}
		}
	})

	t.Run("jwt", func(t *testing.T) {
		tok, err := n.c.MintJWTSVID(ctx(t), entryID, []string{"spiffe://example.org/db"})
		if err != nil {
			t.Fatalf("MintJWTSVID: %v", err)
		}
		svid, err := jwtsvid.ParseInsecure(tok, []string{"spiffe://example.org/db"})
		if err != nil || svid.ID.String() != "spiffe://example.org/web" {
			t.Fatalf("JWT-SVID %v, %v; want one for spiffe://example.org/web", svid, err)
		}
		if _, err := n.c.MintJWTSVID(ctx(t), "unknown", []string{"x"}); status.Code(err) != codes.NotFound {
			t.Errorf("JWT-SVID for an entry of no one: %v, want NotFound", err)
		}
	})

	t.Run("report", func(t *testing.T) {
		if err := n.c.ReportStatus(ctx(t), 1); err != nil {
			t.Errorf("ReportStatus: %v", err)
		}
		counts := []*nodev1.ConnectionCounts{{SpiffeId: "spiffe://example.org/web", Port: 8443, Mtls: 3}}
		if err := n.c.ReportConnections(ctx(t), 1, counts); err != nil {
			t.Errorf("ReportConnections: %v", err)
		}
	})

	t.Run("renew", func(t *testing.T) {
		key := newKey(t)
		fresh, err := n.c.RenewNodeSVID(ctx(t), key)
		if err != nil {
			t.Fatalf("RenewNodeSVID: %v", err)
		}
		if fresh.ID != n.svid.ID || fresh.Certificates[0].SerialNumber.Cmp(n.svid.Certificates[0].SerialNumber) == 0 {
			t.Errorf("renewed SVID %s serial %v; want a new certificate for %s", fresh.ID, fresh.Certificates[0].SerialNumber, n.svid.ID)
		}
		// The connection takes the renewed SVID on its next handshake.
		n.src.SetSVID(fresh)
		if got, _ := n.src.GetX509SVID(); got != fresh {
			t.Error("Source does not hold the renewed SVID")
		}
	})
}

// testEvictedNode: once the node is evicted, the CA refuses its identity
// for good, and the client's errors say so in a form the agent can read
// (nodeapi.NodeRejection), whatever the call.
func testEvictedNode(t *testing.T, s *testserver.Server) {
	n := attest(t, s, "evicted")
	entryID := s.Entry(t, n.svid.ID.String(), "spiffe://example.org/evicted/web", "unix:uid:1000")
	s.Evict(t, n.svid.ID.String())

	calls := map[string]func() error{
		"renew": func() error { _, err := n.c.RenewNodeSVID(ctx(t), newKey(t)); return err },
		"mint": func() error {
			_, err := n.c.MintX509SVIDs(ctx(t), []client.MintRequest{{EntryID: entryID, Key: newKey(t)}})
			return err
		},
		"jwt":    func() error { _, err := n.c.MintJWTSVID(ctx(t), entryID, []string{"x"}); return err },
		"report": func() error { return n.c.ReportStatus(ctx(t), 1) },
		"sync": func() error {
			stream, err := n.c.SyncEntries(ctx(t))
			if err != nil {
				return err
			}
			_, err = stream.Recv()
			return err
		},
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			err := call()
			if reason, ok := nodeapi.NodeRejection(err); !ok || reason != nodeapi.ReasonEvicted {
				t.Fatalf("%s after eviction = %v; want a node rejection %s", name, err, nodeapi.ReasonEvicted)
			}
		})
	}
}

func testSource(t *testing.T, s *testserver.Server) {
	n := attest(t, s, "source")
	if _, err := n.src.GetX509BundleForTrustDomain(spiffeid.RequireTrustDomainFromString("other.org")); err == nil {
		t.Error("bundle for another trust domain: want an error")
	}
	b := x509bundle.FromX509Authorities(td, s.Roots(t))
	n.src.SetBundle(b)
	if got, err := n.src.GetX509BundleForTrustDomain(td); err != nil || got != b {
		t.Errorf("bundle after SetBundle = %v, %v", got, err)
	}
}

func testSVIDFromProto(t *testing.T, s *testserver.Server) {
	n := attest(t, s, "proto")
	var chain [][]byte
	for _, c := range n.svid.Certificates {
		chain = append(chain, c.Raw)
	}
	plain := selfSigned(t, n.svid.PrivateKey) // no URI SAN
	tests := []struct {
		name    string
		p       *nodev1.X509SVID
		key     crypto.Signer
		wantErr string
	}{
		{name: "valid", p: &nodev1.X509SVID{CertChain: chain}, key: n.svid.PrivateKey},
		{name: "nil", p: nil, key: n.svid.PrivateKey, wantErr: "no certificate"},
		{name: "empty chain", p: &nodev1.X509SVID{}, key: n.svid.PrivateKey, wantErr: "no certificate"},
		{name: "garbage", p: &nodev1.X509SVID{CertChain: [][]byte{[]byte("not DER")}}, key: n.svid.PrivateKey, wantErr: "parsing returned certificate"},
		{name: "another key", p: &nodev1.X509SVID{CertChain: chain}, key: newKey(t), wantErr: "does not match the requested key"},
		{name: "not an SVID", p: &nodev1.X509SVID{CertChain: [][]byte{plain}}, key: n.svid.PrivateKey, wantErr: "not an SVID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svid, err := client.SVIDFromProto(tt.p, tt.key)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("SVIDFromProto = %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || svid.ID != n.svid.ID {
				t.Fatalf("SVIDFromProto = %v, %v", svid, err)
			}
		})
	}
}

func TestBundleFromProto(t *testing.T) {
	if _, err := client.BundleFromProto(td, &nodev1.Bundle{}); err == nil || !strings.Contains(err.Error(), "no roots") {
		t.Errorf("empty bundle: %v, want a no roots error", err)
	}
	if _, err := client.BundleFromProto(td, &nodev1.Bundle{X509Authorities: [][]byte{[]byte("junk")}}); err == nil || !strings.Contains(err.Error(), "parsing bundle root") {
		t.Errorf("junk root: %v, want a parse error", err)
	}
	der := selfSigned(t, newKey(t))
	b, err := client.BundleFromProto(td, &nodev1.Bundle{X509Authorities: [][]byte{der}})
	if err != nil || len(b.X509Authorities()) != 1 || b.TrustDomain() != td {
		t.Errorf("BundleFromProto = %v, %v", b, err)
	}
}

// selfSigned returns the DER of a self-signed CA certificate for key, with
// no SPIFFE ID.
func selfSigned(t *testing.T, key crypto.Signer) []byte {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), IsCA: true, BasicConstraintsValid: true, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}
