package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"sync"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/signet-mesh/signet/sds/client"
	"github.com/signet-mesh/signet/sds/server"
)

// SDSCredentials reads the proxy's credentials from an SDS client that
// follows the secrets named id (the certificate) and server.RootCAName (the
// bundle of id's trust domain). Each call returns what the client last
// accepted, so rotations apply to the next handshake.
func SDSCredentials(c *client.Client, id spiffeid.ID) Credentials {
	return sdsCredentials{c: c, id: id}
}

type sdsCredentials struct {
	c  *client.Client
	id spiffeid.ID
}

func (s sdsCredentials) Certificate() (*tls.Certificate, error) {
	sec, ok := s.c.Secret(s.id.String())
	if !ok || sec.Certificate == nil {
		return nil, fmt.Errorf("proxy: no certificate for %s from SDS yet", s.id)
	}
	return sec.Certificate, nil
}

func (s sdsCredentials) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	if td != s.id.TrustDomain() {
		return nil, fmt.Errorf("proxy: no bundle for trust domain %q", td.Name())
	}
	sec, ok := s.c.Secret(server.RootCAName)
	if !ok || len(sec.Authorities) == 0 {
		return nil, errors.New("proxy: no trust bundle from SDS yet")
	}
	return x509bundle.FromX509Authorities(td, sec.Authorities), nil
}

// StaticCredentials are credentials held in memory and replaced with Set:
// for tests and benchmarks.
type StaticCredentials struct {
	mu     sync.Mutex
	cert   *tls.Certificate
	bundle *x509bundle.Bundle
}

// NewStaticCredentials returns credentials holding svid and bundle.
func NewStaticCredentials(svid *x509svid.SVID, bundle *x509bundle.Bundle) *StaticCredentials {
	s := &StaticCredentials{}
	s.Set(svid, bundle)
	return s
}

// Set replaces the certificate and bundle.
func (s *StaticCredentials) Set(svid *x509svid.SVID, bundle *x509bundle.Bundle) {
	cert := &tls.Certificate{PrivateKey: svid.PrivateKey, Leaf: svid.Certificates[0]}
	for _, c := range svid.Certificates {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cert, s.bundle = cert, bundle
}

// Certificate implements Credentials.
func (s *StaticCredentials) Certificate() (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cert, nil
}

// GetX509BundleForTrustDomain implements x509bundle.Source.
func (s *StaticCredentials) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bundle.GetX509BundleForTrustDomain(td)
}
