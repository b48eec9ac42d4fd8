package mint

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"math/big"
	"net/url"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/signet-mesh/signet/agent/cache"
	"github.com/signet-mesh/signet/internal/backoff"
	"github.com/signet-mesh/signet/internal/clock"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

// selfSignedSVID is enough of an SVID for the cache: a certificate with id
// as URI SAN, valid from notBefore for ttl.
func selfSignedSVID(t *testing.T, id spiffeid.ID, notBefore time.Time, ttl time.Duration) *x509svid.SVID {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(id.String())
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(notBefore.UnixNano()), URIs: []*url.URL{u}, NotBefore: notBefore, NotAfter: notBefore.Add(ttl)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &x509svid.SVID{ID: id, Certificates: []*x509.Certificate{cert}, PrivateKey: key}
}

// newTestMinter returns a Minter whose cache holds a 30 s SVID ("short")
// and an hour-long one ("long"), both minted at clk's time.
func newTestMinter(t *testing.T, clk *clock.Fake) *Minter {
	t.Helper()
	c := cache.New(cache.Config{TrustDomain: td, Clock: clk})
	for _, tc := range []struct {
		id  string
		ttl time.Duration
	}{{"short", 30 * time.Second}, {"long", time.Hour}} {
		e := cache.Entry{ID: tc.id, SPIFFEID: spiffeid.RequireFromPath(td, "/"+tc.id), X509TTL: tc.ttl}
		c.ApplyEntries(false, []cache.Entry{e}, nil)
		if err := c.SetSVID(tc.id, selfSignedSVID(t, e.SPIFFEID, clk.Now(), tc.ttl)); err != nil {
			t.Fatal(err)
		}
	}
	return New(Config{Cache: c, Clock: clk})
}

// TestRetryDelay: a failed mint of an SVID close to expiry is retried
// within a quarter of its remaining life, however far the backoff has
// grown; a long-lived SVID keeps the backoff's delay.
func TestRetryDelay(t *testing.T) {
	clk := clock.NewFake(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
	m := newTestMinter(t, clk)
	grown := func() *backoff.Backoff {
		return backoff.New(backoff.Config{Initial: 20 * time.Second, Max: 20 * time.Second, Rand: func() float64 { return 0.99 }})
	}
	// "short" has 30 s of life: 24 s left after 6 s.
	clk.Advance(6 * time.Second)
	if d := m.retryDelay(grown(), nil, []string{"short", "long"}); d > 6*time.Second {
		t.Errorf("retry delay with 24 s of SVID life left: %v, want at most 6 s", d)
	}
	if d := m.retryDelay(grown(), nil, []string{"long"}); d < 19*time.Second {
		t.Errorf("retry delay for an hour-long SVID: %v, want the backoff's ~20 s", d)
	}
	if d := m.retryDelay(grown(), nil, []string{"new-entry"}); d < 19*time.Second {
		t.Errorf("retry delay for an entry without an SVID: %v, want the backoff's ~20 s", d)
	}
}

// TestRetryWokenByReconnect: when the CA is reachable again (the entry
// sync stream reconnected), a mint retry waiting out its backoff goes at
// once.
func TestRetryWokenByReconnect(t *testing.T) {
	clk := clock.NewFake(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
	m := newTestMinter(t, clk)
	b := backoff.New(backoff.Config{})
	b.Next()
	b.Next()
	done := make(chan bool, 1)
	go func() { done <- m.waitRetry(context.Background(), b, time.Hour) }()
	m.CAReachable()
	select {
	case ok := <-done:
		if !ok {
			t.Error("waitRetry reported a cancelled context")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a reconnection did not end the wait")
	}
	if d := b.Next(); d > backoff.DefaultInitial {
		t.Errorf("after the reconnection the backoff was not reset: next delay %v", d)
	}
}
