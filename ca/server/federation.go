package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/signet-mesh/signet/ca/api"
	"github.com/signet-mesh/signet/ca/federation"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

// FederationEndpoint configures the bundle endpoint, served when the
// caller gives a listener (ServeFederationEndpoint).
type FederationEndpoint struct {
	// Profile is federation.ProfileHTTPSSPIFFE (empty: the default), the
	// endpoint presenting the server's own SVID, or
	// federation.ProfileHTTPSWeb with CertFile and KeyFile.
	Profile           federation.Profile
	CertFile, KeyFile string
	// RefreshHint is the spiffe_refresh_hint served; zero means
	// federation.DefaultRefreshHint.
	RefreshHint time.Duration
}

// newFederation builds the federation manager: relationships with other
// trust domains and the refresher of their bundles.
func (s *Server) newFederation() error {
	m, err := federation.New(federation.Config{
		Store: s.sst, TrustDomain: s.cfg.TrustDomain, Clock: s.cfg.Clock, Logger: s.cfg.Logger,
	})
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	s.fed = m
	return nil
}

// ServeFederationEndpoint makes the next Serve also serve the trust
// domain's bundle endpoint on ln (signet server --federation-listen). A
// certificate file that cannot be loaded fails here.
func (s *Server) ServeFederationEndpoint(ln net.Listener, ep FederationEndpoint) error {
	var getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	switch ep.Profile {
	case "", federation.ProfileHTTPSSPIFFE:
		getCert = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.cert.Certificate() }
	case federation.ProfileHTTPSWeb:
		var err error
		if getCert, err = federation.WebCertificate(ep.CertFile, ep.KeyFile); err != nil {
			return err
		}
	default:
		return fmt.Errorf("server: federation profile %q: want https_spiffe or https_web", ep.Profile)
	}
	s.fedLn, s.fedEndpoint = ln, federation.EndpointConfig{
		Store: s.sst, TrustDomain: s.cfg.TrustDomain, RefreshHint: ep.RefreshHint,
		GetCertificate: getCert, Logger: s.cfg.Logger,
	}
	return nil
}

// registerFederation registers the federation admin API.
func (s *Server) registerFederation(adminSrv *grpc.Server) {
	adminv1.RegisterFederationServiceServer(adminSrv, api.NewFederationService(s.fed, s.cfg.TrustDomain, s.cfg.Logger))
}

// runFederation runs the bundle refresher and, if configured, the bundle
// endpoint.
func (s *Server) runFederation(ctx context.Context, g *errgroup.Group) {
	g.Go(func() error { return s.fed.Run(ctx) })
	if s.fedLn != nil {
		g.Go(func() error { return federation.ServeEndpoint(ctx, s.fedLn, s.fedEndpoint) })
		s.log.Info("serving the bundle endpoint", logAddress, s.fedLn.Addr().String())
	}
}

// Federation returns the federation manager (for in-process callers).
func (s *Server) Federation() *federation.Manager { return s.fed }
