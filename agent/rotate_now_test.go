package agent

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/signet-mesh/signet/agent/cache"
	"github.com/signet-mesh/signet/agent/client"
	"github.com/signet-mesh/signet/internal/clock"
)

// selfSignedSVID is enough of an SVID for the cache and the schedule: a
// certificate with id as URI SAN, valid from notBefore for ttl.
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

type rotateNowFixture struct {
	a     *Agent
	clock *clock.Fake
	node  *x509svid.SVID
}

func newRotateNowFixture(t *testing.T, dir string, clk *clock.Fake) *rotateNowFixture {
	t.Helper()
	td := spiffeid.RequireTrustDomainFromString("example.org")
	a, err := New(Config{ServerAddress: "127.0.0.1:1", TrustDomain: td, DataDir: dir, KeyPassphrase: []byte("test"), Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	now := clk.Now()
	node := selfSignedSVID(t, spiffeid.RequireFromPath(td, "/signet/agent/join_token/n"), now, time.Hour)
	a.src = client.NewSource(node, nil)
	for _, tc := range []struct {
		id  string
		ttl time.Duration
	}{{"short", 30 * time.Second}, {"long", time.Hour}} {
		e := cache.Entry{ID: tc.id, SPIFFEID: spiffeid.RequireFromPath(td, "/"+tc.id), X509TTL: tc.ttl}
		a.cache.ApplyEntries(false, []cache.Entry{e}, nil)
		leaf := selfSignedSVID(t, e.SPIFFEID, now, tc.ttl)
		if err := a.cache.SetSVID(tc.id, leaf); err != nil {
			t.Fatal(err)
		}
		a.scheduleRotation(tc.id, leaf.Certificates[0])
	}
	return &rotateNowFixture{a: a, clock: clk, node: node}
}

func (f *rotateNowFixture) rotateAt(id string) time.Time {
	f.a.rotateMu.Lock()
	defer f.a.rotateMu.Unlock()
	return f.a.rotateAt[id]
}

func TestRotateNow(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	clk := clock.NewFake(time.Now().Truncate(time.Second))
	f := newRotateNowFixture(t, dir, clk)
	now := clk.Now()
	normalNode := f.a.rotationTime(f.node.Certificates[0])

	// Generation 0 (no activation with --rotate-now yet) changes nothing.
	f.a.applyRotateGeneration(0)
	if at := f.rotateAt("long"); at.Sub(now) < 24*time.Minute {
		t.Fatalf("long SVID due at +%v before any rotate-now", at.Sub(now))
	}

	f.a.applyRotateGeneration(1)
	for _, tc := range []struct {
		id     string
		spread time.Duration
	}{{"short", 3 * time.Second}, {"long", RotateNowMaxSpread}} {
		if d := f.rotateAt(tc.id).Sub(now); d < 0 || d >= tc.spread {
			t.Errorf("%s: re-mint at +%v, want within [0, %v)", tc.id, d, tc.spread)
		}
	}
	if d := f.a.nodeRotateAt(f.node, normalNode).Sub(now); d < 0 || d >= RotateNowMaxSpread {
		t.Errorf("node SVID: renewal at +%v, want within [0, %v)", d, RotateNowMaxSpread)
	}
	// A renewed node SVID is back on its normal schedule.
	fresh := selfSignedSVID(t, f.node.ID, now.Add(time.Second), time.Hour)
	if got, want := f.a.nodeRotateAt(fresh, normalNode.Add(time.Second)), normalNode.Add(time.Second); !got.Equal(want) {
		t.Errorf("renewed node SVID due at %v, want %v", got, want)
	}
	data, err := os.ReadFile(filepath.Join(dir, rotateGenerationFile))
	if err != nil || strings.TrimSpace(string(data)) != "1" {
		t.Errorf("saved generation %q, %v; want 1", data, err)
	}

	// The same generation again (a reconnect's full message) is ignored.
	f.a.scheduleRotation("long", f.a.cache.SVID("long").Certificates[0])
	f.a.applyRotateGeneration(1)
	if at := f.rotateAt("long"); at.Sub(now) < 24*time.Minute {
		t.Errorf("generation 1 acted on twice")
	}

	// So it is after a restart, but a later generation is acted on.
	g := newRotateNowFixture(t, dir, clk)
	g.a.applyRotateGeneration(1)
	if at := g.rotateAt("long"); at.Sub(now) < 24*time.Minute {
		t.Errorf("generation 1 acted on again after a restart")
	}
	g.a.applyRotateGeneration(2)
	if at := g.rotateAt("long"); at.Sub(now) >= RotateNowMaxSpread {
		t.Errorf("generation 2 not acted on: long SVID due at +%v", at.Sub(now))
	}
}
