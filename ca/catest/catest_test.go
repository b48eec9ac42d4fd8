package catest_test

import (
	"crypto"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/signet-mesh/signet/ca"
	"github.com/signet-mesh/signet/ca/catest"
	"github.com/signet-mesh/signet/internal/clock"
)

func TestNewCA(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	id := spiffeid.RequireFromPath(td, "/web")
	c := catest.NewCA(t, td)

	svid := c.CreateX509SVID(t, id)
	if got, _, err := x509svid.Verify(svid.Certificates, c.X509Bundle()); err != nil || got != id {
		t.Fatalf("Verify = %s, %v", got, err)
	}
	der, key := catest.CreateCSR(t)
	csr, err := ca.ParseCSR(der)
	if err != nil {
		t.Fatalf("ParseCSR: %v", err)
	}
	if !csr.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(key.Public()) {
		t.Errorf("CSR key differs from the returned key")
	}
}

func TestWithClock(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	past := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	c := catest.NewCA(t, td, catest.WithClock(clock.NewFake(past)), catest.WithIntermediateTTL(time.Hour))
	if want := past.Add(time.Hour); !c.Intermediate.NotAfter.Equal(want) {
		t.Errorf("intermediate NotAfter = %v, want %v", c.Intermediate.NotAfter, want)
	}
	svid := c.CreateX509SVID(t, spiffeid.RequireFromPath(td, "/x"))
	if !svid.Certificates[0].NotBefore.Equal(past.Add(-ca.Backdate)) {
		t.Errorf("SVID NotBefore = %v, want the fake clock's time backdated", svid.Certificates[0].NotBefore)
	}
}
