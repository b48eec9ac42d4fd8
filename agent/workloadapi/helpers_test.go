package workloadapi_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	spiffewl "github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/signet-mesh/signet/agent/attestor"
	"github.com/signet-mesh/signet/agent/cache"
	"github.com/signet-mesh/signet/agent/workloadapi"
	"github.com/signet-mesh/signet/internal/peercred"
)

var (
	td = spiffeid.RequireTrustDomainFromString("example.org")
	// self is the selector the real attestor finds for this test process.
	self = fmt.Sprintf("unix:uid:%d", os.Getuid())
	// stranger matches no process of this test.
	stranger = fmt.Sprintf("unix:uid:%d", os.Getuid()+4242)
)

// testCA is a throwaway root that signs X509-SVIDs as the CA would.
type testCA struct {
	root   *x509.Certificate
	key    crypto.Signer
	mu     sync.Mutex
	serial int64
}

func newCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test root"},
		URIs:                  []*url.URL{td.ID().URL()},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	root, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{root: root, key: key, serial: 100}
}

// svid returns an X509-SVID for id valid from notBefore to notAfter, with
// a fresh P-256 key.
func (ca *testCA) svidAt(t testing.TB, id spiffeid.ID, notBefore, notAfter time.Time) *x509svid.SVID {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca.mu.Lock()
	ca.serial++
	serial := ca.serial
	ca.mu.Unlock()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		URIs:                  []*url.URL{id.URL()},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.root, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &x509svid.SVID{ID: id, Certificates: []*x509.Certificate{leaf}, PrivateKey: key}
}

func (ca *testCA) svid(t testing.TB, id spiffeid.ID) *x509svid.SVID {
	return ca.svidAt(t, id, time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
}

// fakeMinter signs JWT-SVIDs with a key whose public half is in the
// cache's JWT bundle under keyID, as the CA would.
type fakeMinter struct {
	key   *ecdsa.PrivateKey
	keyID string
	ids   map[string]spiffeid.ID // entry id -> SPIFFE ID

	mu    sync.Mutex
	calls []string // "entry-id aud1,aud2"
}

func newMinter(t testing.TB) *fakeMinter {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &fakeMinter{key: key, keyID: "k1", ids: map[string]spiffeid.ID{}}
}

func (m *fakeMinter) MintJWTSVID(_ context.Context, entryID string, audience []string) (string, error) {
	m.mu.Lock()
	m.calls = append(m.calls, fmt.Sprintf("%s %v", entryID, audience))
	id, ok := m.ids[entryID]
	m.mu.Unlock()
	if !ok {
		return "", errors.New("entry not found")
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: m.key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", m.keyID))
	if err != nil {
		return "", err
	}
	now := time.Now()
	return jwt.Signed(signer).Claims(jwt.Claims{
		Subject:  id.String(),
		Audience: audience,
		IssuedAt: jwt.NewNumericDate(now),
		Expiry:   jwt.NewNumericDate(now.Add(5 * time.Minute)),
	}).Serialize()
}

func (m *fakeMinter) jwtBundle() *jwtbundle.Bundle {
	return jwtbundle.FromJWTAuthorities(td, map[string]crypto.PublicKey{m.keyID: m.key.Public()})
}

// env is an agent's Workload API on a real Unix socket, with a real cache
// and (unless told otherwise) the real attestor.
type env struct {
	cache  *cache.Cache
	ca     *testCA
	minter *fakeMinter
	srv    *workloadapi.Server
	addr   string
}

type failingAttestor struct{}

func (failingAttestor) Attest(context.Context, peercred.Creds) ([]string, error) {
	return nil, errors.New("attestor: process exited or was replaced")
}

func newEnv(t testing.TB, att workloadapi.Attestor) *env {
	t.Helper()
	if att == nil {
		att = attestor.New(attestor.Config{})
	}
	e := &env{cache: cache.New(cache.Config{TrustDomain: td}), ca: newCA(t), minter: newMinter(t)}
	e.srv = workloadapi.New(workloadapi.Config{Cache: e.cache, Attestor: att, JWTMinter: e.minter})
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.Creds(peercred.TransportCredentials()))
	e.srv.Register(g)
	go g.Serve(ln)
	t.Cleanup(g.Stop)
	e.addr = "unix://" + sock
	return e
}

// ready sets the trust bundle: the agent is now serving.
func (e *env) ready(t testing.TB) {
	t.Helper()
	e.setBundle(t, 1, e.ca.root)
}

func (e *env) setBundle(t testing.TB, rev int64, roots ...*x509.Certificate) {
	t.Helper()
	if err := e.cache.SetBundle(x509bundle.FromX509Authorities(td, roots), e.minter.jwtBundle(), rev); err != nil {
		t.Fatal(err)
	}
}

// register adds an entry for path with selectors, and tells the minter its
// SPIFFE ID. It has no SVID until mint.
func (e *env) register(t testing.TB, id, path, hint string, selectors ...string) cache.Entry {
	t.Helper()
	en := cache.Entry{ID: id, SPIFFEID: spiffeid.RequireFromPath(td, path), Selectors: selectors, X509TTL: time.Hour, Hint: hint}
	e.cache.ApplyEntries(false, []cache.Entry{en}, nil)
	e.minter.mu.Lock()
	e.minter.ids[id] = en.SPIFFEID
	e.minter.mu.Unlock()
	return en
}

func (e *env) mint(t testing.TB, en cache.Entry) *x509svid.SVID {
	t.Helper()
	s := e.ca.svid(t, en.SPIFFEID)
	if err := e.cache.SetSVID(en.ID, s); err != nil {
		t.Fatal(err)
	}
	return s
}

// client is go-spiffe's Workload API client.
func (e *env) client(t testing.TB) *spiffewl.Client {
	t.Helper()
	c, err := spiffewl.New(context.Background(), spiffewl.WithAddr(e.addr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// raw is a bare gRPC client: it sends the security header only when the
// context carries it (see withHeader).
func (e *env) raw(t testing.TB) workload.SpiffeWorkloadAPIClient {
	t.Helper()
	cc, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return workload.NewSpiffeWorkloadAPIClient(cc)
}

func withHeader(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "workload.spiffe.io", "true")
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// recv receives from ch, failing the test after a deadline.
func recv[T any](t *testing.T, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(20 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// waitFor polls cond until it holds, failing the test after a deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// x509Watcher collects what go-spiffe's WatchX509Context sees.
type x509Watcher struct{ updates chan *spiffewl.X509Context }

func (w x509Watcher) OnX509ContextUpdate(c *spiffewl.X509Context) { w.updates <- c }
func (w x509Watcher) OnX509ContextWatchError(error)               {}
