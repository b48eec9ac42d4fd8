package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc/credentials"

	"github.com/signet-mesh/signet/internal/x509chain"
)

// alpnH2 is the one application protocol gRPC speaks over TLS.
const alpnH2 = "h2"

// nodeTLS is the gRPC transport credentials of the node API: a TLS 1.3
// server handshake, h2 required by ALPN, and TLSInfo at
// PrivacyAndIntegrity for gRPC's per-call security checks and for
// callerNode, which reads the verified chain.
//
// It exists for the memory of each connected agent (issue 16).
// credentials.NewTLS clones the config GetConfigForClient returns at every
// handshake (to add h2), and the connection keeps that clone as long as
// it lives; it also hands gRPC the raw socket beside the TLS connection,
// for which gRPC reads and keeps each connection's socket options (TCP_INFO
// and others) for channelz, which this server does not serve. nodeTLS
// gives every connection the same config while the certificate and the
// roots are unchanged (nodeConfigs), and gRPC only the TLS connection.
type nodeTLS struct {
	configs *nodeConfigs
	// listener is the config each handshake starts with: it takes its
	// own from configs, as it is when the handshake starts.
	listener *tls.Config
}

// nodeConfigs builds the TLS config of the node API's connections from
// the current server certificate and client roots, once per pair: both
// rotate, and a handshake takes them as they are when it starts.
type nodeConfigs struct {
	cert  func() (*tls.Certificate, error)
	roots func() *x509.CertPool
	cur   atomic.Pointer[nodeConfig]
	// verified holds the chains verifyClient built, from the handshake's
	// leaf certificate (parsed anew at each handshake, so its own) until
	// ServerHandshake takes them.
	verified sync.Map // *x509.Certificate -> [][]*x509.Certificate
}

// nodeConfig is a config and what it was built from.
type nodeConfig struct {
	cert  *tls.Certificate
	roots *x509.CertPool
	cfg   *tls.Config
}

// get returns the config for a handshake starting now. Two handshakes
// racing on a rotation may each build one; either is right.
func (c *nodeConfigs) get() (*tls.Config, error) {
	cert, err := c.cert()
	if err != nil {
		return nil, err
	}
	roots := c.roots()
	if cur := c.cur.Load(); cur != nil && cur.cert == cert && cur.roots == roots {
		return cur.cfg, nil
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{*cert},
		NextProtos:   []string{alpnH2},
		// AttestNode is called without a node SVID; every other
		// call requires one (checked per RPC). A certificate given is
		// verified by verifyClient, as VerifyClientCertIfGiven would.
		// ClientCAs names the roots in the certificate request.
		ClientAuth: tls.RequestClientCert,
		ClientCAs:  roots,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return c.verifyClient(cs, roots)
		},
	}
	c.cur.Store(&nodeConfig{cert: cert, roots: roots, cfg: cfg})
	return cfg, nil
}

// verifyClient verifies the client certificate of a handshake, if one was
// given, against roots, as crypto/tls does for VerifyClientCertIfGiven
// (with the fewest signature checks: see x509chain), and keeps the chains
// for ServerHandshake.
func (c *nodeConfigs) verifyClient(cs tls.ConnectionState, roots *x509.CertPool) error {
	if len(cs.PeerCertificates) == 0 {
		return nil
	}
	leaf := cs.PeerCertificates[0]
	chains, err := x509chain.Shortest(cs.PeerCertificates[1:], func(intermediates []*x509.Certificate) ([][]*x509.Certificate, error) {
		opts := x509.VerifyOptions{Roots: roots, Intermediates: x509.NewCertPool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
		for _, cert := range intermediates {
			opts.Intermediates.AddCert(cert)
		}
		return leaf.Verify(opts)
	})
	if err != nil {
		return fmt.Errorf("server: verifying the client certificate: %w", err)
	}
	c.verified.Store(leaf, chains)
	return nil
}

// takeVerified returns, and forgets, the chains verifyClient built for
// the handshake state is of.
func (c *nodeConfigs) takeVerified(state tls.ConnectionState) [][]*x509.Certificate {
	if len(state.PeerCertificates) == 0 {
		return nil
	}
	chains, _ := c.verified.LoadAndDelete(state.PeerCertificates[0])
	v, _ := chains.([][]*x509.Certificate)
	return v
}

// newNodeTLS returns the node API's credentials.
func newNodeTLS(configs *nodeConfigs) *nodeTLS {
	return &nodeTLS{configs: configs, listener: &tls.Config{
		MinVersion: tls.VersionTLS13,
		NextProtos: []string{alpnH2},
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return configs.get()
		},
	}}
}

// errClientSide is what nodeTLS answers a client handshake with: it is
// never given to a gRPC client.
var errClientSide = errors.New("server: node API TLS credentials are for serving only")

// ServerHandshake implements credentials.TransportCredentials. gRPC
// bounds the handshake with a deadline on rawConn.
func (c *nodeTLS) ServerHandshake(rawConn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn := tls.Server(rawConn, c.listener)
	err := conn.Handshake()
	state := conn.ConnectionState()
	state.VerifiedChains = c.configs.takeVerified(state)
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	if state.NegotiatedProtocol != alpnH2 {
		conn.Close()
		return nil, nil, fmt.Errorf("server: client at %s did not negotiate %q by ALPN (negotiated %q): it is not a gRPC client", rawConn.RemoteAddr(), alpnH2, state.NegotiatedProtocol)
	}
	return conn, credentials.TLSInfo{
		State:          state,
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
	}, nil
}

// ClientHandshake implements credentials.TransportCredentials: refused.
func (c *nodeTLS) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errClientSide
}

// Info implements credentials.TransportCredentials.
func (c *nodeTLS) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls", SecurityVersion: "1.3"}
}

// Clone implements credentials.TransportCredentials.
func (c *nodeTLS) Clone() credentials.TransportCredentials { return newNodeTLS(c.configs) }

// OverrideServerName implements credentials.TransportCredentials.
//
// Deprecated: gRPC no longer calls it.
func (c *nodeTLS) OverrideServerName(string) error { return nil }
