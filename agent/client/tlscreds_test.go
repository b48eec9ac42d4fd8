package client

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"math/big"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc/credentials"

	"github.com/signet-mesh/signet/internal/x509chain/x509chaintest"
)

// The calls in client_test.go run clientTLS against a real CA (the happy
// path and a CA the bundle does not vouch for); these cover what only a
// misbehaving peer shows.

// tlsPeer listens on loopback with a self-signed certificate, offering
// protos by ALPN, and records the server name each client asked for.
func tlsPeer(t *testing.T, protos []string) (addr string, names <-chan string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 8)
	cfg := &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		NextProtos:   protos,
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			got <- h.ServerName
			return nil, nil
		},
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.(*tls.Conn).Handshake()
				_, _ = c.Read(make([]byte, 1)) // until the client hangs up
			}()
		}
	}()
	return ln.Addr().String(), got
}

func TestClientTLSHandshake(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		protos     []string // the server's ALPN protocols
		serverName string   // in the client's config
		authority  string   // "": the listener's address
		wantName   string   // the server name the server saw
		wantErr    string
	}{
		{name: "h2 negotiated, name from the authority", protos: []string{"h2"}, authority: "ca.example.org:8443", wantName: "ca.example.org"},
		{name: "authority without a port", protos: []string{"h2"}, authority: "ca.example.org", wantName: "ca.example.org"},
		{name: "configured name wins", protos: []string{"h2"}, serverName: "signet-ca", authority: "ca.example.org:8443", wantName: "signet-ca"},
		{name: "server without ALPN", protos: nil, authority: "ca.example.org:8443", wantName: "ca.example.org", wantErr: `did not negotiate "h2"`},
		{name: "server with another protocol", protos: []string{"http/1.1"}, authority: "ca.example.org:8443", wantName: "ca.example.org", wantErr: `did not negotiate "h2"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			addr, names := tlsPeer(t, tc.protos)
			// Verification is go-spiffe's part, tested against a real CA in
			// client_test.go; here the peer is trusted as is.
			creds := newClientTLS(&tls.Config{InsecureSkipVerify: true, ServerName: tc.serverName, NextProtos: []string{"http/1.1"}}) //nolint:gosec // test peer
			raw, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			conn, info, err := creds.ClientHandshake(ctx, tc.authority, raw)
			select {
			case name := <-names:
				if name != tc.wantName {
					t.Errorf("server saw name %q, want %q", name, tc.wantName)
				}
			case <-ctx.Done():
				t.Fatal("the server saw no client hello")
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ClientHandshake error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ClientHandshake: %v", err)
			}
			defer conn.Close()
			tlsInfo, ok := info.(credentials.TLSInfo)
			if !ok {
				t.Fatalf("AuthInfo is %T, want credentials.TLSInfo", info)
			}
			if tlsInfo.SecurityLevel != credentials.PrivacyAndIntegrity || tlsInfo.State.NegotiatedProtocol != "h2" {
				t.Errorf("TLSInfo security level %v, protocol %q; want PrivacyAndIntegrity, h2", tlsInfo.SecurityLevel, tlsInfo.State.NegotiatedProtocol)
			}
		})
	}
}

// TestClientTLSHandshakeContext: a peer that accepts the connection and
// never answers holds the handshake only until ctx ends.
func TestClientTLSHandshakeContext(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			defer c.Close()
			_, _ = io.Copy(io.Discard, c) // the client hello, never answered, until the client hangs up
		}
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, _, err := newClientTLS(&tls.Config{InsecureSkipVerify: true}).ClientHandshake(ctx, "ca:8443", raw) //nolint:gosec // test peer
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("ClientHandshake error = %v, want the context's deadline", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("ClientHandshake did not return after its context ended")
	}
}

func TestClientTLSIsClientOnly(t *testing.T) {
	t.Parallel()
	creds := newClientTLS(&tls.Config{})
	if _, _, err := creds.ServerHandshake(nil); !errors.Is(err, errServerSide) {
		t.Fatalf("ServerHandshake error = %v, want errServerSide", err)
	}
	// Room in the caller's slice must not take the appended h2.
	protos := make([]string, 1, 4)
	protos[0] = "http/1.1"
	cfg := &tls.Config{NextProtos: protos}
	_ = newClientTLS(cfg)
	if got := protos[:2]; len(cfg.NextProtos) != 1 || got[1] != "" {
		t.Errorf("newClientTLS changed the caller's config: NextProtos %q, backing array %q", cfg.NextProtos, got)
	}
}

// TestVerifyCAShortestChain: the agent accepts the CA's chain by the
// shortest path its bundle allows (across a root rotation the CA's chain
// carries its intermediate twice, signed by each root); it refuses a
// chain to no root of its bundle and an SVID that is not the CA's.
func TestVerifyCAShortestChain(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	r := x509chaintest.NewRotation(t, td.ID().URL())
	key := x509chaintest.NewKey(t)
	caLeaf := x509chaintest.Sign(t, x509chaintest.Leaf(ServerID(td).URL()), r.Intermediate, key)
	for _, tt := range []struct {
		name      string
		bundle    []*x509.Certificate
		presented []*x509.Certificate
		wantChain []*x509.Certificate
		wantErr   string
	}{
		{name: "both roots held", bundle: []*x509.Certificate{r.OldRoot.Cert, r.NewRoot.Cert}, presented: []*x509.Certificate{caLeaf, r.Intermediate.Cert, r.Cross},
			wantChain: []*x509.Certificate{caLeaf, r.Intermediate.Cert, r.NewRoot.Cert}},
		{name: "only the old root held", bundle: []*x509.Certificate{r.OldRoot.Cert}, presented: []*x509.Certificate{caLeaf, r.Intermediate.Cert, r.Cross},
			wantChain: []*x509.Certificate{caLeaf, r.Cross, r.OldRoot.Cert}},
		{name: "no root of the bundle", bundle: []*x509.Certificate{r.Other.Cert}, presented: []*x509.Certificate{caLeaf, r.Intermediate.Cert, r.Cross}, wantErr: "unknown authority"},
		{name: "not the CA", bundle: []*x509.Certificate{r.OldRoot.Cert, r.NewRoot.Cert},
			presented: []*x509.Certificate{x509chaintest.Sign(t, x509chaintest.Leaf(spiffeid.RequireFromPath(td, "/workload").URL()), r.Intermediate, key), r.Intermediate.Cert, r.Cross},
			wantErr:   "unexpected ID"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var got [][]*x509.Certificate
			authorize := func(id spiffeid.ID, chains [][]*x509.Certificate) error {
				got = chains
				return tlsconfig.AuthorizeID(ServerID(td))(id, chains)
			}
			var raw [][]byte
			for _, c := range tt.presented {
				raw = append(raw, c.Raw)
			}
			err := verifyCA(x509bundle.FromX509Authorities(td, tt.bundle), authorize)(raw, nil)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("verifyCA = %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("verifyCA: %v", err)
			}
			if len(got) != 1 || !slices.EqualFunc(got[0], tt.wantChain, (*x509.Certificate).Equal) {
				t.Errorf("authorizer got %d chains (%d certificates in all), want one of %d certificates: the leaf up to the root", len(got), len(slices.Concat(got...)), len(tt.wantChain))
			}
		})
	}
}
