package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/credentials"
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
	if first.ClientAuth != tls.VerifyClientCertIfGiven || first.MinVersion != tls.VersionTLS13 || len(first.NextProtos) != 1 || first.NextProtos[0] != alpnH2 {
		t.Errorf("config: ClientAuth %v, MinVersion %#x, NextProtos %q; want VerifyClientCertIfGiven, TLS 1.3, [h2]", first.ClientAuth, first.MinVersion, first.NextProtos)
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
