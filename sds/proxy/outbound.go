package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/signet-mesh/signet/sds/internal/logkey"
)

// handleOutbound carries one local plaintext connection over mTLS to o's
// remote.
func (p *Proxy) handleOutbound(ctx context.Context, c net.Conn, o Outbound, cfg *tls.Config) {
	defer c.Close()
	log := p.log.With(logkey.Remote, o.Remote, logkey.PeerID, o.PeerID.String())
	d := net.Dialer{Timeout: p.cfg.DialTimeout}
	raw, err := d.DialContext(ctx, "tcp", o.Remote)
	if err != nil {
		log.Warn("dialing remote failed", logkey.Error, err)
		return
	}
	tr := newTransport(raw, nil)
	tc := tls.Client(tr, cfg)
	hctx, cancel := context.WithTimeout(ctx, p.cfg.HandshakeTimeout)
	err = tc.HandshakeContext(hctx)
	cancel()
	if err != nil {
		raw.Close()
		log.Warn("outbound mTLS handshake failed", logkey.Error, err)
		return
	}
	pipe(plainEnd(c), tlsEnd(tc, tr))
}

// newClientTLS is the outbound TLS config: present the proxy's certificate,
// and accept only a server SVID that chains to the bundle and is peer.
// Hostnames play no part in SPIFFE authentication, so the standard
// verification is replaced (InsecureSkipVerify) by VerifyConnection.
func (p *Proxy) newClientTLS(peer spiffeid.ID) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return p.cfg.Credentials.Certificate()
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return fmt.Errorf("proxy: remote presented no certificate")
			}
			id, _, err := x509svid.Verify(cs.PeerCertificates, p.cfg.Credentials)
			if err != nil {
				return fmt.Errorf("proxy: remote certificate: %w", err)
			}
			if id != peer {
				return fmt.Errorf("proxy: remote is %s, want %s", id, peer)
			}
			return nil
		},
		DynamicRecordSizingDisabled: true,
	}
}
