package main

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/signet-mesh/signet/ca/federation"
	"github.com/signet-mesh/signet/ca/server"
	"github.com/signet-mesh/signet/cmd/internal/cli"
)

// checkFederation validates the bundle endpoint keys, naming the key.
func (c serverConfig) checkFederation() error {
	if c.FederationListen == "" {
		for key, v := range map[string]string{"federation_profile": c.FederationProfile, "federation_cert_file": c.FederationCertFile, "federation_key_file": c.FederationKeyFile} {
			if v != "" {
				return fmt.Errorf("%s is set but federation_listen is not: give --federation-listen ADDR to serve the bundle endpoint", key)
			}
		}
		return nil
	}
	if _, _, err := net.SplitHostPort(c.FederationListen); err != nil {
		return fmt.Errorf("federation_listen %q: must be host:port", c.FederationListen)
	}
	if c.FederationRefreshHint < 0 || (c.FederationRefreshHint > 0 && time.Duration(c.FederationRefreshHint) < federation.MinRefreshInterval) {
		return fmt.Errorf("federation_refresh_hint %s: must be at least %s", cli.DurationOf(c.FederationRefreshHint), federation.MinRefreshInterval)
	}
	switch federation.Profile(c.FederationProfile) {
	case "", federation.ProfileHTTPSSPIFFE:
		if c.FederationCertFile != "" || c.FederationKeyFile != "" {
			return fmt.Errorf("federation_cert_file and federation_key_file are for federation_profile https_web; https_spiffe serves the server's own SVID")
		}
	case federation.ProfileHTTPSWeb:
		if c.FederationCertFile == "" || c.FederationKeyFile == "" {
			return fmt.Errorf("federation_profile https_web needs federation_cert_file and federation_key_file (a Web PKI certificate for the endpoint's host name)")
		}
		for key, path := range map[string]string{"federation_cert_file": c.FederationCertFile, "federation_key_file": c.FederationKeyFile} {
			if _, err := os.Stat(path); err != nil {
				return fmt.Errorf("%s: %v", key, err)
			}
		}
	default:
		return fmt.Errorf("federation_profile %q: want https_spiffe or https_web", c.FederationProfile)
	}
	return nil
}

// serveFederation opens the bundle endpoint's listener, if configured,
// and hands it to the server, which serves it with the node API.
func (c serverConfig) serveFederation(srv *server.Server, logger *slog.Logger) error {
	if c.FederationListen == "" {
		return nil
	}
	ln, err := net.Listen("tcp", c.FederationListen)
	if err != nil {
		return fmt.Errorf("federation_listen %s: %w", c.FederationListen, err)
	}
	ep := server.FederationEndpoint{
		Profile:  federation.Profile(c.FederationProfile),
		CertFile: c.FederationCertFile, KeyFile: c.FederationKeyFile,
		RefreshHint: cli.DurationOf(c.FederationRefreshHint),
	}
	if err := srv.ServeFederationEndpoint(ln, ep); err != nil {
		ln.Close()
		return err
	}
	logger.Info("bundle endpoint", logFederationListen, ln.Addr().String(), logFederationProfile, string(ep.Profile))
	return nil
}
