package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"net"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/signet-mesh/signet/internal/x509chain/x509chaintest"
)

// testTLSCert is a self-signed certificate for 127.0.0.1.
func testTLSCert(t *testing.T) *tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestNodeConfigsRotate: every handshake gets the config of the current
// server certificate and client roots; while neither changes, the same
// one (each connection keeps its config as long as it lives).
func TestNodeConfigsRotate(t *testing.T) {
	certA, certB := testTLSCert(t), testTLSCert(t)
	rootsA, rootsB := x509.NewCertPool(), x509.NewCertPool()
	cert, roots := certA, rootsA
	c := &nodeConfigs{
		cert:  func() (*tls.Certificate, error) { return cert, nil },
		roots: func() *x509.CertPool { return roots },
	}
	get := func() *tls.Config {
		t.Helper()
		cfg, err := c.get()
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	first := get()
	if second := get(); second != first {
		t.Error("two handshakes with nothing rotated got two configs, want one shared")
	}
	if first.ClientAuth != tls.RequestClientCert || first.VerifyConnection == nil || first.MinVersion != tls.VersionTLS13 || len(first.NextProtos) != 1 || first.NextProtos[0] != alpnH2 {
		t.Errorf("config: ClientAuth %v, VerifyConnection set %v, MinVersion %#x, NextProtos %q; want RequestClientCert verified by verifyClient, TLS 1.3, [h2]",
			first.ClientAuth, first.VerifyConnection != nil, first.MinVersion, first.NextProtos)
	}
	if first.ClientCAs != rootsA || first.Certificates[0].PrivateKey != certA.PrivateKey {
		t.Error("first config is not of the current certificate and roots")
	}
	roots = rootsB
	if got := get(); got == first || got.ClientCAs != rootsB || got.Certificates[0].PrivateKey != certA.PrivateKey {
		t.Error("after the roots rotated, a handshake did not get a config with the new roots and the same certificate")
	}
	cert = certB
	if got := get(); got.ClientCAs != rootsB || got.Certificates[0].PrivateKey != certB.PrivateKey {
		t.Error("after the certificate rotated, a handshake did not get a config with the new certificate")
	}
}

// TestNodeTLSRequiresH2: the node API completes a handshake that
// negotiated h2, with TLSInfo at PrivacyAndIntegrity, and refuses one that
// negotiated no application protocol (not a gRPC client).
func TestNodeTLSRequiresH2(t *testing.T) {
	cert := testTLSCert(t)
	creds := newNodeTLS(&nodeConfigs{
		cert:  func() (*tls.Certificate, error) { return cert, nil },
		roots: x509.NewCertPool,
	})
	for _, tt := range []struct {
		name       string
		nextProtos []string
		wantErr    string
	}{
		{name: "h2", nextProtos: []string{alpnH2}},
		{name: "no ALPN", wantErr: "did not negotiate"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srvConn, cliConn := net.Pipe()
			defer cliConn.Close()
			go func() {
				c := tls.Client(cliConn, &tls.Config{InsecureSkipVerify: true, NextProtos: tt.nextProtos}) //nolint:gosec // the test's server is self-signed
				c.Handshake()                                                                              //nolint:errcheck // the server's side is checked
			}()
			conn, info, err := creds.ServerHandshake(srvConn)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ServerHandshake = %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ServerHandshake: %v", err)
			}
			defer conn.Close()
			ti, ok := info.(credentials.TLSInfo)
			if !ok || ti.SecurityLevel != credentials.PrivacyAndIntegrity || ti.State.NegotiatedProtocol != alpnH2 {
				t.Fatalf("AuthInfo %#v, want TLSInfo at PrivacyAndIntegrity with h2", info)
			}
		})
	}
}

// TestNodeTLSVerifiesClientChain: a client certificate is verified
// against the current roots by the shortest chain (across a root rotation
// an agent's chain carries its intermediate twice, signed by each root),
// and refused when it chains to no root; callerNode gets the verified
// chain, and nothing is left behind for the next handshake.
func TestNodeTLSVerifiesClientChain(t *testing.T) {
	uri := &url.URL{Scheme: "spiffe", Host: "example.org"}
	r := x509chaintest.NewRotation(t, uri)
	leafKey := x509chaintest.NewKey(t)
	leaf := x509chaintest.Sign(t, x509chaintest.Leaf(uri), r.Intermediate, leafKey)
	stranger := x509chaintest.Sign(t, x509chaintest.Leaf(uri), r.Other, leafKey)
	pool := func(cas ...*x509chaintest.CA) *x509.CertPool {
		p := x509.NewCertPool()
		for _, ca := range cas {
			p.AddCert(ca.Cert)
		}
		return p
	}
	serverCert := testTLSCert(t)
	for _, tt := range []struct {
		name      string
		roots     *x509.CertPool
		presented []*x509.Certificate
		wantChain []*x509.Certificate // nil: no verified chain
		wantErr   string
	}{
		{name: "both roots held", roots: pool(r.OldRoot, r.NewRoot), presented: []*x509.Certificate{leaf, r.Intermediate.Cert, r.Cross},
			wantChain: []*x509.Certificate{leaf, r.Intermediate.Cert, r.NewRoot.Cert}},
		{name: "only the old root held", roots: pool(r.OldRoot), presented: []*x509.Certificate{leaf, r.Intermediate.Cert, r.Cross},
			wantChain: []*x509.Certificate{leaf, r.Cross, r.OldRoot.Cert}},
		{name: "unknown root", roots: pool(r.OldRoot, r.NewRoot), presented: []*x509.Certificate{stranger}, wantErr: "unknown authority"},
		{name: "no certificate", roots: pool(r.OldRoot, r.NewRoot)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			configs := &nodeConfigs{
				cert:  func() (*tls.Certificate, error) { return serverCert, nil },
				roots: func() *x509.CertPool { return tt.roots },
			}
			creds := newNodeTLS(configs)
			clientCfg := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{alpnH2}} //nolint:gosec // the test's server is self-signed
			if tt.presented != nil {
				var chain [][]byte
				for _, c := range tt.presented {
					chain = append(chain, c.Raw)
				}
				// Sent whatever roots the server names, as an agent does.
				clientCfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
					return &tls.Certificate{Certificate: chain, PrivateKey: leafKey}, nil
				}
			}
			srvConn, cliConn := net.Pipe()
			defer cliConn.Close()
			clientErr := make(chan error, 1)
			go func() {
				c := tls.Client(cliConn, clientCfg)
				err := c.Handshake()
				if err == nil {
					// A TLS 1.3 client hears of its certificate's refusal
					// on its first read.
					_, err = c.Read(make([]byte, 1))
				}
				clientErr <- err
			}()
			conn, info, err := creds.ServerHandshake(srvConn)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ServerHandshake = %v, want an error containing %q", err, tt.wantErr)
				}
				if err := <-clientErr; err == nil || !strings.Contains(err.Error(), "bad certificate") {
					t.Errorf("client saw %v, want the bad certificate alert", err)
				}
			} else {
				if err != nil {
					t.Fatalf("ServerHandshake: %v", err)
				}
				conn.Close()
				got := info.(credentials.TLSInfo).State.VerifiedChains
				switch {
				case tt.wantChain == nil && got != nil:
					t.Errorf("verified chains %v for a client without a certificate", got)
				case tt.wantChain != nil && (len(got) != 1 || !slices.EqualFunc(got[0], tt.wantChain, (*x509.Certificate).Equal)):
					t.Errorf("verified chains: got %d (%d certificates in all), want one of %d certificates: the leaf up to the root", len(got), len(slices.Concat(got...)), len(tt.wantChain))
				}
			}
			configs.verified.Range(func(k, _ any) bool {
				t.Errorf("chains of %v kept after the handshake", k)
				return true
			})
		})
	}
}
