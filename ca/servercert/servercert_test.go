package servercert_test

import (
	"crypto/tls"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/signet-mesh/signet/ca"
	"github.com/signet-mesh/signet/ca/catest"
	"github.com/signet-mesh/signet/ca/servercert"
	"github.com/signet-mesh/signet/internal/clock"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

func newManager(t *testing.T, cfg servercert.Config) *servercert.Manager {
	t.Helper()
	m, err := servercert.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestCertificate(t *testing.T) {
	t.Parallel()
	clk := clock.NewFake(time.Now().Truncate(time.Second))
	c := catest.NewCA(t, td, catest.WithClock(clk))
	m := newManager(t, servercert.Config{CA: c.CA, DNSNames: []string{"ca.example.org"}, Clock: clk})
	cert, err := m.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	serverID := spiffeid.RequireFromPath(td, "/signet/server")
	if len(cert.Leaf.URIs) != 1 || cert.Leaf.URIs[0].String() != serverID.String() {
		t.Errorf("server URI SANs = %v, want [%s]", cert.Leaf.URIs, serverID)
	}
	if diff := cmp.Diff([]string{"ca.example.org"}, cert.Leaf.DNSNames); diff != "" {
		t.Errorf("server DNS SANs (-want +got):\n%s", diff)
	}
	if got := cert.Leaf.NotAfter.Sub(clk.Now()); got != servercert.DefaultTTL {
		t.Errorf("server certificate lives %v, want %v", got, servercert.DefaultTTL)
	}
	if again, _ := m.Certificate(); again != cert {
		t.Error("a second call renewed a certificate that was not due")
	}

	// A SPIFFE client that trusts the bundle and expects the server ID
	// completes a handshake.
	server := &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return m.Certificate() }}
	client := tlsconfig.TLSClientConfig(c.X509Bundle(), tlsconfig.AuthorizeID(serverID))
	handshake(t, server, client)
}

func TestCertificateBeforeAuthority(t *testing.T) {
	t.Parallel()
	m := newManager(t, servercert.Config{CA: ca.New(ca.Config{TrustDomain: td})})
	if _, err := m.Certificate(); !errors.Is(err, servercert.ErrNoAuthority) {
		t.Errorf("Certificate before the CA has an authority = %v, want ErrNoAuthority", err)
	}
}

func TestRenewedAtHalfLife(t *testing.T) {
	t.Parallel()
	clk := clock.NewFake(time.Now().Truncate(time.Second))
	c := catest.NewCA(t, td, catest.WithClock(clk))
	m := newManager(t, servercert.Config{CA: c.CA, TTL: 10 * time.Minute, Clock: clk})
	old, err := m.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(4 * time.Minute)
	if cur, _ := m.Certificate(); cur != old {
		t.Fatal("renewed before half of its life")
	}
	clk.Advance(time.Minute + ca.Backdate)
	cur, err := m.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	if cur == old || !cur.Leaf.NotAfter.After(old.Leaf.NotAfter) {
		t.Errorf("certificate at half of its life was not renewed")
	}
}

// TestFollowsIntermediate: once the CA signs with another intermediate, the
// next handshake gets a certificate from it, never one that chains to an
// intermediate the CA no longer uses.
func TestFollowsIntermediate(t *testing.T) {
	t.Parallel()
	c := catest.NewCA(t, td)
	m := newManager(t, servercert.Config{CA: c.CA})
	if _, err := m.Certificate(); err != nil {
		t.Fatal(err)
	}
	next := catest.NewCA(t, td)
	a := *next.CA.X509Authority()
	a.ID = "next" // catest names every intermediate alike
	c.CA.SetX509Authority(&a)
	cur, err := m.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	if err := cur.Leaf.CheckSignatureFrom(next.Intermediate); err != nil {
		t.Errorf("certificate not signed by the CA's new intermediate: %v", err)
	}
}

// TestKeepsServingWhileRenewalFails: a renewal that fails leaves the
// current, still valid certificate in use.
func TestKeepsServingWhileRenewalFails(t *testing.T) {
	t.Parallel()
	clk := clock.NewFake(time.Now().Truncate(time.Second))
	c := catest.NewCA(t, td, catest.WithClock(clk))
	m := newManager(t, servercert.Config{CA: c.CA, Clock: clk})
	old, err := m.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	// An intermediate that expired an hour ago: it cannot sign.
	past := clock.NewFake(clk.Now().Add(-3 * time.Hour))
	expired := catest.NewCA(t, td, catest.WithClock(past), catest.WithIntermediateTTL(2*time.Hour))
	a := *expired.CA.X509Authority()
	a.ID = "expired"
	c.CA.SetX509Authority(&a)
	cur, err := m.Certificate()
	if err != nil {
		t.Fatalf("Certificate while renewal fails = %v, want the current certificate", err)
	}
	if cur != old {
		t.Error("a failed renewal replaced the certificate")
	}
}

func handshake(t *testing.T, server, client *tls.Config) {
	t.Helper()
	sc, cc := net.Pipe()
	defer sc.Close()
	defer cc.Close()
	srv := tls.Server(sc, server)
	cli := tls.Client(cc, client)
	errc := make(chan error, 1)
	go func() { errc <- srv.Handshake() }()
	if err := cli.Handshake(); err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("server handshake: %v", err)
	}
}
