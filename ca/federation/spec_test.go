package federation_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-mesh/signet/ca/federation"
)

// specRoot is a CA certificate as the SPIFFE Trust Domain and Bundle
// standard's Appendix A shows it: RSA, O = example.com, CA:TRUE, key usage
// Certificate Sign only, URI SAN spiffe://example.com/ (with the
// trailing slash).
func specRoot(t *testing.T, serial int64) (*x509.Certificate, *rsa.PrivateKey) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{Organization: []string{"example.com"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(90 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
		URIs: []*url.URL{{Scheme: "spiffe", Host: "example.com", Path: "/"}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

// specKey is one "x509-svid" key of the standard's example, written out
// by hand as the appendix does: kty, use, x5c, n, e.
func specKey(c *x509.Certificate, key *rsa.PrivateKey) string {
	b64u := base64.RawURLEncoding.EncodeToString
	return fmt.Sprintf(`{"kty": "RSA", "use": "x509-svid", "x5c": [%q], "n": %q, "e": "AQAB"}`,
		base64.StdEncoding.EncodeToString(c.Raw), b64u(key.N.Bytes()))
}

// TestStandardExample fetches the bundles of the standard's Appendix A
// from an https_spiffe endpoint: trust bundle #1 (one root), then #2
// (spiffe_sequence 2, the replacement root added), and refuses #1 served
// again (the sequence would go back). The 28-day refresh hint is honoured
// up to MaxRefreshInterval.
func TestStandardExample(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	td := spiffeid.RequireTrustDomainFromString("example.com")
	c1, k1 := specRoot(t, 1)
	c2, k2 := specRoot(t, 2)
	bundle1 := fmt.Sprintf(`{
	"spiffe_sequence": 1,
	"spiffe_refresh_hint": 2419200,
	"keys": [%s]
}`, specKey(c1, k1))
	bundle2 := fmt.Sprintf(`{
	"spiffe_sequence": 2,
	"spiffe_refresh_hint": 2419200,
	"keys": [%s, %s]
}`, specKey(c1, k1), specKey(c2, k2))

	// The initial bundle, given out of band, is bundle #1 itself.
	initial, err := federation.ParseBundle(td, []byte(bundle1))
	if err != nil {
		t.Fatalf("ParseBundle of the standard's bundle #1: %v", err)
	}
	if seq, _ := initial.SequenceNumber(); seq != 1 || len(initial.X509Authorities()) != 1 {
		t.Fatalf("bundle #1: sequence %d, %d roots; want 1 and 1", seq, len(initial.X509Authorities()))
	}
	if h, _ := initial.RefreshHint(); h != 28*24*time.Hour {
		t.Errorf("bundle #1 refresh hint %v, want 28 days", h)
	}

	p := newPeer(t, serverID)
	p.serve(t, []byte(bundle2))
	st := openStore(t)
	m := newManager(t, st, federation.Config{})
	// other.org's endpoint serves example.com's bundle: its SVID is
	// verified with the bundle of other.org, a relationship of its own.
	create(t, m, p)
	if _, err := m.Create(ctx, "admin", federation.Params{
		TrustDomain: "example.com", BundleEndpointURL: p.srv.URL, EndpointSPIFFEID: serverID.String(), InitialBundle: []byte(bundle1),
	}); err != nil {
		t.Fatalf("Create with the standard's bundle #1: %v", err)
	}
	if updated, err := m.Refresh(ctx, td); err != nil || !updated {
		t.Fatalf("Refresh to bundle #2 = %v, %v; want updated", updated, err)
	}
	s, err := m.Get(ctx, td)
	if err != nil {
		t.Fatal(err)
	}
	if seq, _ := s.Bundle.SequenceNumber(); seq != 2 || len(s.Bundle.X509Authorities()) != 2 {
		t.Errorf("after bundle #2: sequence %d, %d roots; want 2 and 2", seq, len(s.Bundle.X509Authorities()))
	}
	if d := s.NextRefresh.Sub(s.LastRefresh); d != federation.MaxRefreshInterval {
		t.Errorf("next refresh in %v, want the 28-day hint capped at %v", d, federation.MaxRefreshInterval)
	}
	p.serve(t, []byte(bundle1))
	if _, err := m.Refresh(ctx, td); !errors.Is(err, federation.ErrSequenceBackwards) {
		t.Errorf("bundle #1 after #2: err = %v, want ErrSequenceBackwards", err)
	}
}
