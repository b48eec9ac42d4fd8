package rotation

import (
	"context"
	"crypto/tls"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-mesh/signet/ca"
	"github.com/signet-mesh/signet/ca/keys"
	"github.com/signet-mesh/signet/internal/nodeapi"
)

// ServerID returns the CA server's SPIFFE ID in td.
func ServerID(td spiffeid.TrustDomain) spiffeid.ID { return nodeapi.ServerID(td) }

// ServerTLSCertificate returns the CA server's current TLS certificate: an
// X509-SVID for spiffe://<td>/signet/server signed by the active
// intermediate, whose key lives only in memory. Run renews it at half its
// life and whenever the intermediate changes, so callers should fetch it
// per handshake:
//
//	tlsConfig.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
//		return m.ServerTLSCertificate()
//	}
//
// It fails with ErrNotInitialized before Init.
func (m *Manager) ServerTLSCertificate() (*tls.Certificate, error) {
	s := m.server.Load()
	if s == nil {
		return nil, ErrNotInitialized
	}
	return s.cert, nil
}

func (m *Manager) serverCertDue() bool {
	s := m.server.Load()
	if s == nil {
		return true
	}
	a := m.cfg.CA.X509Authority()
	return a == nil || a.ID != s.authorityID || shouldRotate(m.clock.Now(), s.cert.Leaf.NotBefore, s.cert.Leaf.NotAfter)
}

func (m *Manager) renewServerCert(ctx context.Context) error {
	key, err := keys.GenerateSigner(keys.KeyTypeECP256)
	if err != nil {
		return err
	}
	id := ServerID(m.cfg.TrustDomain)
	svid, err := m.cfg.CA.SignX509SVID(ctx, ca.X509SVIDParams{
		SPIFFEID:  id,
		PublicKey: key.Public(),
		TTL:       m.cfg.ServerSVIDTTL,
		DNSNames:  m.cfg.ServerDNSNames,
	})
	if err != nil {
		return wrapErr("signing server certificate: %w", err)
	}
	cert := &tls.Certificate{PrivateKey: key, Leaf: svid.Chain[0]}
	for _, c := range svid.Chain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	m.server.Store(&serverCert{cert: cert, authorityID: svid.AuthorityID})
	m.log.Info("server certificate renewed", logSPIFFEID, id.String(), logSerial, ca.FormatSerial(cert.Leaf.SerialNumber), logNotAfter, cert.Leaf.NotAfter)
	return nil
}
