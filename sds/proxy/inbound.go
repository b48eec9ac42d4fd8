package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/signet-mesh/signet/internal/mtlspolicy"
	"github.com/signet-mesh/signet/sds/internal/logkey"
)

// TLS record header bytes of a ClientHello: content type handshake (22),
// then the major version 3 of every SSL 3.0 / TLS record version.
const (
	recordTypeHandshake = 0x16
	recordVersionMajor  = 0x03
	// peekBufferSize is the smallest bufio.Reader: enough to peek at a
	// record header. Larger reads bypass it.
	peekBufferSize = 16
)

// handleInbound serves one inbound connection under the decision for its
// port at the time it was accepted.
func (p *Proxy) handleInbound(ctx context.Context, c net.Conn, in Inbound, port uint32) {
	defer c.Close()
	src := hostOf(c.RemoteAddr())
	log := p.log.With(logkey.Port, port, logkey.Source, src)
	d := p.currentPolicy(port)
	if in.Health || d.Exempt {
		p.splice(ctx, plainEnd(c), in.Upstream, log)
		return
	}
	if d.Mode == mtlspolicy.Disable {
		p.counts.add(port, src, kindPlaintext)
		p.splice(ctx, plainEnd(c), in.Upstream, log)
		return
	}
	wait := p.cfg.HandshakeTimeout
	if d.Mode == mtlspolicy.Permissive {
		wait = p.cfg.DetectTimeout
	}
	br := bufio.NewReaderSize(c, peekBufferSize)
	isTLS, err := detectTLS(c, br, wait)
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		log.Debug("inbound connection closed before it spoke", logkey.Error, err)
		return
	}
	strict := d.Mode == mtlspolicy.Strict
	if !isTLS {
		switch {
		case !strict:
			p.counts.add(port, src, kindPlaintext)
		case d.DryRun:
			p.counts.add(port, src, kindPlaintext, kindRefused)
			log.Info("dry run: STRICT would refuse this connection", logkey.Reason, "plaintext", logkey.PolicyID, d.PolicyID)
		default:
			p.counts.add(port, src, kindRefused)
			log.Info("refused inbound connection", logkey.Reason, "plaintext in STRICT mode", logkey.PolicyID, d.PolicyID)
			return
		}
		p.splice(ctx, plainEnd(&peekedConn{Conn: c, r: br}), in.Upstream, log)
		return
	}

	dryRun := strict && d.DryRun
	cfg := p.serverTLS
	if dryRun {
		cfg = p.dryRunTLS
	}
	// The TLS side reads through the transport (see transport.go), starting
	// with the bytes peeked at.
	peeked, _ := br.Peek(br.Buffered())
	tr := newTransport(c, bytes.Clone(peeked))
	tc := tls.Server(tr, cfg)
	hctx, cancel := context.WithTimeout(ctx, p.cfg.HandshakeTimeout)
	err = tc.HandshakeContext(hctx)
	cancel()
	if err != nil {
		p.counts.add(port, src, kindRefused)
		log.Info("refused inbound connection", logkey.Reason, "mTLS handshake failed", logkey.Error, err)
		return
	}
	peer, verr := p.verifyClient(tc.ConnectionState().PeerCertificates)
	if verr != nil {
		// Only the dry-run config lets a handshake with a bad client
		// certificate complete.
		p.counts.add(port, src, kindRefused)
		log.Info("dry run: STRICT would refuse this connection", logkey.Reason, verr.Error(), logkey.PolicyID, d.PolicyID)
	} else {
		p.counts.add(port, src, kindMTLS)
		log = log.With(logkey.PeerID, peer.String())
	}
	p.splice(ctx, tlsEnd(tc, tr), in.Upstream, log)
}

// detectTLS peeks at the first bytes for a TLS ClientHello, waiting at most
// wait for the client to send them. A timeout returns false with the
// deadline error; the connection is usable either way.
func detectTLS(c net.Conn, br *bufio.Reader, wait time.Duration) (bool, error) {
	c.SetReadDeadline(time.Now().Add(wait))
	defer c.SetReadDeadline(time.Time{})
	b, err := br.Peek(1)
	if len(b) == 0 {
		return false, err
	}
	if b[0] != recordTypeHandshake {
		return false, nil
	}
	b, _ = br.Peek(2)
	return len(b) == 2 && b[1] == recordVersionMajor, nil
}

// newServerTLS is the inbound TLS config. Enforcing, a client must present
// an SVID that verifies (and is allowed); otherwise any certificate, or
// none, completes the handshake and the caller checks it (dry run).
func (p *Proxy) newServerTLS(enforce bool) *tls.Config {
	cfg := &tls.Config{
		MinVersion:                  tls.VersionTLS12,
		GetCertificate:              func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return p.cfg.Credentials.Certificate() },
		ClientAuth:                  tls.RequestClientCert,
		SessionTicketsDisabled:      true,
		DynamicRecordSizingDisabled: true,
	}
	if enforce {
		cfg.ClientAuth = tls.RequireAnyClientCert
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			_, err := p.verifyClient(cs.PeerCertificates)
			return err
		}
	}
	return cfg
}

// verifyClient checks a client's chain against the bundle and the allowed
// peers, and returns its SPIFFE ID.
func (p *Proxy) verifyClient(chain []*x509.Certificate) (spiffeid.ID, error) {
	if len(chain) == 0 {
		return spiffeid.ID{}, errors.New("no client certificate")
	}
	id, _, err := x509svid.Verify(chain, p.cfg.Credentials)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("client certificate: %w", err)
	}
	if len(p.cfg.AllowedPeers) > 0 && !slices.Contains(p.cfg.AllowedPeers, id) {
		return id, fmt.Errorf("peer %s is not allowed", id)
	}
	return id, nil
}

// splice dials upstream and copies both ways until both sides are done.
func (p *Proxy) splice(ctx context.Context, c end, upstream string, log *slog.Logger) {
	d := net.Dialer{Timeout: p.cfg.DialTimeout}
	up, err := d.DialContext(ctx, "tcp", upstream)
	if err != nil {
		log.Warn("dialing upstream failed", logkey.Upstream, upstream, logkey.Error, err)
		return
	}
	pipe(c, plainEnd(up))
}

// peekedConn reads through the reader that peeked at the first bytes.
type peekedConn struct {
	net.Conn
	r io.Reader
}

func (c *peekedConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// CloseWrite half-closes the underlying connection.
func (c *peekedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
