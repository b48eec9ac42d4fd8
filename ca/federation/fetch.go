package federation

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
)

// fetchParams is one fetch of a bundle endpoint.
type fetchParams struct {
	rel *Relationship
	// roots verify an https_spiffe endpoint's SVID: the bundles of this
	// trust domain and of the federated ones.
	roots x509bundle.Source
	// webRoots verify an https_web endpoint; nil means the system roots.
	webRoots *x509.CertPool
	timeout  time.Duration
}

// fetch GETs the relationship's bundle endpoint and parses what it
// answers, refusing (with this package's sentinels) an endpoint with the
// wrong SPIFFE ID, a malformed bundle and one for another trust domain.
// The sequence check needs the stored bundle and is done when storing.
func fetch(ctx context.Context, p fetchParams) (*spiffebundle.Bundle, error) {
	var tlsCfg *tls.Config
	switch p.rel.Profile {
	case ProfileHTTPSSPIFFE:
		want := p.rel.EndpointSPIFFEID
		tlsCfg = tlsconfig.TLSClientConfig(p.roots, func(got spiffeid.ID, _ [][]*x509.Certificate) error {
			if got != want {
				return fmt.Errorf("%w: %s, want %s", ErrWrongEndpointID, got, want)
			}
			return nil
		})
	case ProfileHTTPSWeb:
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: p.webRoots}
	default:
		return nil, fmt.Errorf("unknown profile %q", p.rel.Profile)
	}
	client := &http.Client{
		Timeout: p.timeout,
		Transport: &http.Transport{
			Proxy:             http.ProxyFromEnvironment,
			TLSClientConfig:   tlsCfg,
			DisableKeepAlives: true,
			ForceAttemptHTTP2: false,
		},
		// A redirect would leave the authenticated endpoint.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.rel.BundleEndpointURL, http.NoBody)
	if err != nil {
		return nil, fmt.Errorf("building the request: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(err, ErrWrongEndpointID) {
			return nil, fmt.Errorf("fetching %s: %w", p.rel.BundleEndpointURL, err)
		}
		return nil, &FetchError{URL: p.rel.BundleEndpointURL, Err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, &FetchError{URL: p.rel.BundleEndpointURL, Err: fmt.Errorf("the endpoint answered HTTP %d", resp.StatusCode)}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxBundleBytes+1))
	if err != nil {
		return nil, &FetchError{URL: p.rel.BundleEndpointURL, Err: fmt.Errorf("reading the bundle: %w", err)}
	}
	b, err := spiffebundle.Parse(p.rel.TrustDomain, body)
	if err != nil || len(body) > MaxBundleBytes {
		if err == nil {
			err = fmt.Errorf("over %d bytes", MaxBundleBytes)
		}
		return nil, fmt.Errorf("%w from %s: %v", ErrMalformedBundle, p.rel.BundleEndpointURL, err)
	}
	if err := CheckBundle(p.rel.TrustDomain, b); err != nil {
		return nil, err
	}
	return b, nil
}
