// Package sdstest holds the fakes and the tiny test CA shared by the tests of
// sds/server and sds/client: a Source whose snapshots the test sets by hand,
// an Attestor with fixed selectors, a log recorder, and a helper that serves
// a server.Server on a Unix socket with peer-credential transport
// credentials, as the agent does.
//
//	ca := sdstest.NewCA(t, "example.org")
//	src := sdstest.NewSource()
//	src.Set(&server.Snapshot{
//		Identities: []server.Identity{{SVID: server.FromX509SVID(ca.SVID(t, "/web"))}},
//		Bundle:     ca.Bundle(),
//	})
//	srv := server.New(server.Config{Source: src, Attestor: &sdstest.Attestor{Selectors: []string{"unix:uid:1000"}}})
//	path := filepath.Join(t.TempDir(), "agent.sock")
//	stop := sdstest.Serve(t, path, srv)
//
// It is internal to sds/ and not a product API; ca/catest will replace the CA.
package sdstest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"

	"github.com/signet-mesh/signet/internal/grpcserve"
	"github.com/signet-mesh/signet/internal/peercred"
	"github.com/signet-mesh/signet/sds/server"
)

// CA is a one-level certificate authority for one trust domain.
type CA struct {
	TD   spiffeid.TrustDomain
	Root *x509.Certificate
	key  crypto.Signer
}

// NewCA returns a CA with a fresh P-256 root for trust domain td.
func NewCA(tb testing.TB, td string) *CA {
	tb.Helper()
	trustDomain := spiffeid.RequireTrustDomainFromString(td)
	key := newKey(tb)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(tb),
		Subject:               pkix.Name{Organization: []string{"sdstest"}, CommonName: td + " root"},
		URIs:                  []*url.URL{trustDomain.ID().URL()},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	return &CA{TD: trustDomain, Root: sign(tb, tmpl, tmpl, key.Public(), key), key: key}
}

// Bundle returns a new bundle holding the CA's root.
func (ca *CA) Bundle() *x509bundle.Bundle {
	return x509bundle.FromX509Authorities(ca.TD, []*x509.Certificate{ca.Root})
}

// SVID returns an X509-SVID for path in the CA's trust domain with a fresh
// key: calling it again for the same path is a rotation.
func (ca *CA) SVID(tb testing.TB, path string) *x509svid.SVID {
	tb.Helper()
	id, err := spiffeid.FromPath(ca.TD, path)
	if err != nil {
		tb.Fatalf("sdstest: SPIFFE ID for %q: %v", path, err)
	}
	key := newKey(tb)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(tb),
		URIs:                  []*url.URL{id.URL()},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	leaf := sign(tb, tmpl, ca.Root, key.Public(), ca.key)
	return &x509svid.SVID{ID: id, Certificates: []*x509.Certificate{leaf}, PrivateKey: key}
}

// MismatchedSVID returns an SVID for path whose private key does not belong
// to its certificate: a secret every client must reject.
func (ca *CA) MismatchedSVID(tb testing.TB, path string) *x509svid.SVID {
	tb.Helper()
	svid := ca.SVID(tb, path)
	svid.PrivateKey = newKey(tb)
	return svid
}

func newKey(tb testing.TB) *ecdsa.PrivateKey {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatalf("sdstest: generating key: %v", err)
	}
	return key
}

func serial(tb testing.TB) *big.Int {
	tb.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		tb.Fatalf("sdstest: serial: %v", err)
	}
	return n
}

func sign(tb testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) *x509.Certificate {
	tb.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		tb.Fatalf("sdstest: signing certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatalf("sdstest: parsing certificate: %v", err)
	}
	return cert
}

// Source is a fake server.Source: every subscriber sees the snapshot last
// passed to Set, whatever its selectors.
type Source struct {
	mu        sync.Mutex
	snap      *server.Snapshot
	subs      map[*subscription]struct{}
	selectors [][]string
}

// NewSource returns a Source with no snapshot yet.
func NewSource() *Source {
	return &Source{subs: make(map[*subscription]struct{})}
}

// Set makes snap the current state and offers it to every subscriber.
func (s *Source) Set(snap *server.Snapshot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.snap = snap
	for sub := range s.subs {
		sub.notify(snap)
	}
}

// Current returns the snapshot last passed to Set.
func (s *Source) Current() *server.Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snap
}

// Subscribe implements server.Source.
func (s *Source) Subscribe(selectors []string, notify func(*server.Snapshot)) (cancel func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub := &subscription{notify: notify}
	s.subs[sub] = struct{}{}
	s.selectors = append(s.selectors, slices.Clone(selectors))
	if s.snap != nil {
		notify(s.snap)
	}
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.subs, sub)
	}
}

// Subscribers reports how many subscriptions are open.
func (s *Source) Subscribers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.subs)
}

// Selectors returns the selectors of every Subscribe call so far.
func (s *Source) Selectors() [][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.selectors)
}

// WaitSubscribers waits until n subscriptions are open.
func (s *Source) WaitSubscribers(tb testing.TB, n int) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.Subscribers() != n {
		if time.Now().After(deadline) {
			tb.Fatalf("sdstest: %d subscribers, want %d", s.Subscribers(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

type subscription struct {
	notify func(*server.Snapshot)
}

// Attestor is a fake server.Attestor that returns fixed selectors, or Err.
type Attestor struct {
	Selectors []string
	Err       error

	mu    sync.Mutex
	calls []peercred.Creds
}

// Attest implements server.Attestor.
func (a *Attestor) Attest(_ context.Context, c peercred.Creds) ([]string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, c)
	if a.Err != nil {
		return nil, a.Err
	}
	return slices.Clone(a.Selectors), nil
}

// Calls returns the credentials of every Attest call so far.
func (a *Attestor) Calls() []peercred.Creds {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.calls)
}

// Serve serves srv on a new Unix socket at path, as the agent does (gRPC with
// peercred transport credentials). A stale socket file at path is replaced,
// so a test can restart a server on the same path. The returned stop
// function, also run at cleanup, stops the server at once and is idempotent.
func Serve(tb testing.TB, path string, srv *server.Server) (stop func()) {
	tb.Helper()
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		tb.Fatalf("sdstest: removing stale socket: %v", err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		tb.Fatalf("sdstest: listening on %s: %v", path, err)
	}
	g := grpc.NewServer(grpcserve.LocalSocketOptions()...)
	srv.Register(g)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = g.Serve(ln)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			g.Stop()
			<-done
		})
	}
	tb.Cleanup(stop)
	return stop
}

// LogRecorder is a slog.Handler that keeps every record, for tests that
// check what was logged.
type LogRecorder struct {
	mu      sync.Mutex
	records []slog.Record
	attrs   []slog.Attr
	parent  *LogRecorder
}

// Logger returns a debug-level logger writing to r.
func (r *LogRecorder) Logger() *slog.Logger { return slog.New(r) }

func (r *LogRecorder) root() *LogRecorder {
	if r.parent != nil {
		return r.parent.root()
	}
	return r
}

// Enabled implements slog.Handler.
func (*LogRecorder) Enabled(context.Context, slog.Level) bool { return true }

// Handle implements slog.Handler.
func (r *LogRecorder) Handle(_ context.Context, rec slog.Record) error {
	rec = rec.Clone()
	rec.AddAttrs(r.attrs...)
	root := r.root()
	root.mu.Lock()
	defer root.mu.Unlock()
	root.records = append(root.records, rec)
	return nil
}

// WithAttrs implements slog.Handler.
func (r *LogRecorder) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &LogRecorder{parent: r, attrs: append(slices.Clone(r.attrs), attrs...)}
}

// WithGroup implements slog.Handler; groups are flattened.
func (r *LogRecorder) WithGroup(string) slog.Handler { return r }

// Find returns the attributes of the records with message msg, in order.
func (r *LogRecorder) Find(msg string) []map[string]string {
	root := r.root()
	root.mu.Lock()
	defer root.mu.Unlock()
	var out []map[string]string
	for _, rec := range root.records {
		if rec.Message != msg {
			continue
		}
		attrs := make(map[string]string)
		rec.Attrs(func(a slog.Attr) bool {
			attrs[a.Key] = a.Value.String()
			return true
		})
		out = append(out, attrs)
	}
	return out
}
