package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/credentials"

	"github.com/signet-mesh/signet/internal/x509chain"
)

// alpnH2 is the one application protocol gRPC speaks over TLS.
const alpnH2 = "h2"

// clientTLS is gRPC transport credentials for the agent's side of the
// node API: a TLS client handshake with a config go-spiffe's tlsconfig
// made (which authenticates the CA), and nothing else.
//
// It exists for the agent's size (issue 19): credentials.NewTLS serves
// both sides, so an agent using it links crypto/tls's whole server
// handshake, about 200 KB of binary that every agent maps and never runs.
// It does what NewTLS's client side does: the server name from the
// target's authority when the config sets none, a handshake bounded by
// ctx, h2 required by ALPN, and TLSInfo at PrivacyAndIntegrity for
// gRPC's per-call security checks.
type clientTLS struct {
	config *tls.Config
	// wrap, if not nil, wraps each connection after its handshake (see
	// dial).
	wrap func(net.Conn) net.Conn
}

// newClientTLS returns client-only TLS credentials for cfg, which it
// copies: cfg's verification callbacks are kept, and h2 is offered.
func newClientTLS(cfg *tls.Config) *clientTLS {
	c := cfg.Clone()
	if !slices.Contains(c.NextProtos, alpnH2) {
		c.NextProtos = append(slices.Clone(c.NextProtos), alpnH2)
	}
	return &clientTLS{config: c}
}

// errServerSide is what clientTLS answers a server handshake with: it is
// never given to a gRPC server.
var errServerSide = errors.New("client: agent TLS credentials are for dialing only")

// ClientHandshake implements credentials.TransportCredentials.
func (c *clientTLS) ClientHandshake(ctx context.Context, authority string, rawConn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	cfg := c.config
	if cfg.ServerName == "" {
		cfg = cfg.Clone() // one handshake's name must not leak into another's
		host, _, err := net.SplitHostPort(authority)
		if err != nil {
			host = authority // no port in it
		}
		cfg.ServerName = host
	}
	conn := tls.Client(rawConn, cfg)
	if err := conn.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, nil, err
	}
	state := conn.ConnectionState()
	if state.NegotiatedProtocol != alpnH2 {
		conn.Close()
		return nil, nil, fmt.Errorf("client: CA at %s did not negotiate %q by ALPN (negotiated %q): it is not a gRPC server", authority, alpnH2, state.NegotiatedProtocol)
	}
	var out net.Conn = conn
	if c.wrap != nil {
		out = c.wrap(conn)
	}
	return out, credentials.TLSInfo{
		State:          state,
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
	}, nil
}

// ServerHandshake implements credentials.TransportCredentials: refused.
func (c *clientTLS) ServerHandshake(rawConn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errServerSide
}

// Info implements credentials.TransportCredentials.
func (c *clientTLS) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls", SecurityVersion: "1.3", ServerName: c.config.ServerName}
}

// Clone implements credentials.TransportCredentials.
func (c *clientTLS) Clone() credentials.TransportCredentials {
	return &clientTLS{config: c.config.Clone(), wrap: c.wrap}
}

// OverrideServerName implements credentials.TransportCredentials.
//
// Deprecated: gRPC no longer calls it (grpc.WithAuthority sets the name).
func (c *clientTLS) OverrideServerName(name string) error {
	c.config.ServerName = name
	return nil
}

// verifyCA is the agent's check of the CA's certificate chain in place of
// go-spiffe's own (tlsconfig's VerifyPeerCertificate): the same SPIFFE
// checks against the trust domain's bundle, with the fewest signature
// checks (see x509chain: across a root rotation the CA's chain carries
// its intermediate twice), then authorize.
func verifyCA(bundles x509bundle.Source, authorize tlsconfig.Authorizer) func([][]byte, [][]*x509.Certificate) error {
	return func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return errors.New("client: the CA presented no certificate")
		}
		certs := make([]*x509.Certificate, len(raw))
		for i, der := range raw {
			cert, err := x509.ParseCertificate(der)
			if err != nil {
				return fmt.Errorf("client: parsing the CA's certificate chain: %w", err)
			}
			certs[i] = cert
		}
		type verified struct {
			id     spiffeid.ID
			chains [][]*x509.Certificate
		}
		v, err := x509chain.Shortest(certs[1:], func(intermediates []*x509.Certificate) (verified, error) {
			id, chains, err := x509svid.Verify(append([]*x509.Certificate{certs[0]}, intermediates...), bundles)
			return verified{id, chains}, err
		})
		if err != nil {
			return err
		}
		return authorize(v.id, v.chains)
	}
}
