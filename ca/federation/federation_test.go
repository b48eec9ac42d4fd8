package federation_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-mesh/signet/ca/audit"
	"github.com/signet-mesh/signet/ca/bundle"
	"github.com/signet-mesh/signet/ca/catest"
	"github.com/signet-mesh/signet/ca/federation"
	"github.com/signet-mesh/signet/ca/store"
	"github.com/signet-mesh/signet/internal/backoff"
	"github.com/signet-mesh/signet/internal/clock"
)

var (
	ownTD   = spiffeid.RequireTrustDomainFromString("example.org")
	otherTD = spiffeid.RequireTrustDomainFromString("other.org")
	thirdTD = spiffeid.RequireTrustDomainFromString("third.org")
	// serverID is the SPIFFE ID other.org's bundle endpoint presents.
	serverID = spiffeid.RequireFromString("spiffe://other.org/signet/server")
)

func openStore(t *testing.T) store.Store {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "signet.db"), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// peer is other.org's bundle endpoint: a real HTTPS server on 127.0.0.1
// presenting an SVID of other.org, answering whatever body the test sets.
type peer struct {
	ca   *catest.CA
	srv  *httptest.Server
	body atomic.Value // []byte
}

func newPeer(t *testing.T, presents spiffeid.ID) *peer {
	t.Helper()
	p := &peer{ca: catest.NewCA(t, otherTD)}
	svid := p.ca.CreateX509SVID(t, presents)
	cert := tls.Certificate{PrivateKey: svid.PrivateKey}
	for _, c := range svid.Certificates {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	p.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Write(p.body.Load().([]byte))
	}))
	p.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	p.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are the point
	p.srv.StartTLS()
	t.Cleanup(p.srv.Close)
	p.serve(t, p.doc(t, 5, p.ca.Root))
	return p
}

func (p *peer) serve(t *testing.T, body []byte) { p.body.Store(body) }

// doc is a SPIFFE bundle document of other.org with sequence seq.
func (p *peer) doc(t *testing.T, seq uint64, roots ...*x509.Certificate) []byte {
	t.Helper()
	b := spiffebundle.FromX509Authorities(otherTD, roots)
	b.SetSequenceNumber(seq)
	b.SetRefreshHint(time.Minute)
	if err := b.AddJWTAuthority("k1", p.ca.JWTKey.Signer.Public()); err != nil {
		t.Fatal(err)
	}
	doc, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func rootPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func newManager(t *testing.T, st store.Store, cfg federation.Config) *federation.Manager {
	t.Helper()
	cfg.Store, cfg.TrustDomain = st, ownTD
	cfg.Backoff = backoff.Config{Initial: 10 * time.Millisecond, Max: 20 * time.Millisecond, Rand: backoff.NewRand(uint64(len(t.Name())))}
	m, err := federation.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func create(t *testing.T, m *federation.Manager, p *peer) {
	t.Helper()
	_, err := m.Create(context.Background(), "admin", federation.Params{
		TrustDomain: "other.org", BundleEndpointURL: p.srv.URL, EndpointSPIFFEID: serverID.String(),
		InitialBundle: rootPEM(p.ca.Root),
	})
	if err != nil {
		t.Fatal(err)
	}
}

func stored(t *testing.T, st store.Store) *federation.Relationship {
	t.Helper()
	var r *federation.Relationship
	if err := st.View(context.Background(), func(tx store.Tx) (err error) { r, err = federation.Get(tx, otherTD); return err }); err != nil {
		t.Fatal(err)
	}
	return r
}

// auditOf returns the audit records of type typ, oldest first.
func auditOf(t *testing.T, st store.Store, typ string) []*store.AuditRecord {
	t.Helper()
	var out []*store.AuditRecord
	err := st.View(context.Background(), func(tx store.Tx) error {
		return tx.ForEachAudit(0, func(r *store.AuditRecord) error {
			if r.Type == typ {
				out = append(out, r)
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func seqOf(t *testing.T, b *spiffebundle.Bundle) uint64 {
	t.Helper()
	s, ok := b.SequenceNumber()
	if !ok {
		t.Fatal("bundle has no sequence number")
	}
	return s
}

// TestRefreshStoresBundle: a good bundle from the https_spiffe endpoint
// is stored with its audit record and a new store revision; the same
// bundle again changes nothing.
func TestRefreshStoresBundle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := openStore(t)
	p := newPeer(t, serverID)
	m := newManager(t, st, federation.Config{})
	create(t, m, p)
	before := stored(t, st).Revision

	updated, err := m.Refresh(ctx, otherTD)
	if err != nil || !updated {
		t.Fatalf("Refresh = %v, %v; want updated", updated, err)
	}
	r := stored(t, st)
	if got := seqOf(t, r.Bundle); got != 5 {
		t.Errorf("stored sequence %d, want 5", got)
	}
	if r.Revision <= before {
		t.Errorf("revision %d after the update, want above %d (agents must see the change)", r.Revision, before)
	}
	recs := auditOf(t, st, audit.TypeFederationBundleUpdated)
	if len(recs) != 2 { // the initial bundle, then the fetched one
		t.Fatalf("%d bundle_updated records, want 2", len(recs))
	}
	if d := recs[1].Details; d[audit.DetailSequence] != "5" || d[audit.DetailTrustDomain] != "other.org" || recs[1].Outcome != audit.OutcomeSuccess {
		t.Errorf("audit record %v %v, want success for other.org sequence 5", recs[1].Outcome, d)
	}
	if updated, err := m.Refresh(ctx, otherTD); err != nil || updated {
		t.Errorf("same bundle again: Refresh = %v, %v; want not updated", updated, err)
	}
	if n := len(auditOf(t, st, audit.TypeFederationBundleUpdated)); n != 2 {
		t.Errorf("%d bundle_updated records after an unchanged fetch, want 2", n)
	}
}

// TestRefusals: each bad answer is refused with its sentinel, audited as
// a failure (an unreachable endpoint only logged), and the last good
// bundle is kept.
func TestRefusals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// presents is the SPIFFE ID the endpoint presents.
		presents spiffeid.ID
		// answer sets what the endpoint answers after the good bundle.
		answer  func(t *testing.T, p *peer)
		wantErr error
		// reason is the audited refusal reason; "" means not audited.
		reason string
	}{
		{
			name:     "wrong endpoint SPIFFE ID",
			presents: spiffeid.RequireFromString("spiffe://other.org/not-the-server"),
			wantErr:  federation.ErrWrongEndpointID,
			reason:   federation.ReasonWrongEndpointID,
		},
		{
			name: "bundle for another trust domain",
			answer: func(t *testing.T, p *peer) {
				p.serve(t, p.doc(t, 9, catest.NewCA(t, thirdTD).Root))
			},
			wantErr: federation.ErrWrongTrustDomain,
			reason:  federation.ReasonWrongTrustDomain,
		},
		{
			name:    "sequence goes backwards",
			answer:  func(t *testing.T, p *peer) { p.serve(t, p.doc(t, 4, p.ca.Root, catest.NewCA(t, otherTD).Root)) },
			wantErr: federation.ErrSequenceBackwards,
			reason:  federation.ReasonSequenceBackward,
		},
		{
			name:    "garbage",
			answer:  func(t *testing.T, p *peer) { p.serve(t, []byte("<html>maintenance</html>")) },
			wantErr: federation.ErrMalformedBundle,
			reason:  federation.ReasonMalformed,
		},
		{
			name:    "no X.509 authorities",
			answer:  func(t *testing.T, p *peer) { p.serve(t, []byte(`{"keys":[],"spiffe_sequence":10}`)) },
			wantErr: federation.ErrMalformedBundle,
			reason:  federation.ReasonMalformed,
		},
		{
			name:    "endpoint down",
			answer:  func(t *testing.T, p *peer) { p.srv.Close() },
			wantErr: &federation.FetchError{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			st := openStore(t)
			presents := serverID
			if !tt.presents.IsZero() {
				presents = tt.presents
			}
			p := newPeer(t, presents)
			m := newManager(t, st, federation.Config{})
			create(t, m, p)
			var good *spiffebundle.Bundle
			if tt.answer != nil {
				if _, err := m.Refresh(ctx, otherTD); err != nil {
					t.Fatalf("first refresh: %v", err)
				}
				good = stored(t, st).Bundle
				tt.answer(t, p)
			} else {
				good = stored(t, st).Bundle // the initial one
			}
			_, err := m.Refresh(ctx, otherTD)
			var fe *federation.FetchError
			switch want := tt.wantErr.(type) {
			case *federation.FetchError:
				if !errors.As(err, &fe) || federation.IsRefusal(err) {
					t.Fatalf("Refresh err = %v, want a FetchError", err)
				}
			default:
				if !errors.Is(err, want) {
					t.Fatalf("Refresh err = %v, want %v", err, want)
				}
			}
			if got := stored(t, st).Bundle; !got.Equal(good) {
				t.Error("the last good bundle was not kept")
			}
			var reasons []string
			for _, r := range auditOf(t, st, audit.TypeFederationBundleUpdated) {
				if r.Outcome == audit.OutcomeFailure {
					reasons = append(reasons, r.Details[audit.DetailReason])
				}
			}
			var want []string
			if tt.reason != "" {
				want = []string{tt.reason}
			}
			if diff := cmp.Diff(want, reasons); diff != "" {
				t.Errorf("refusal audit reasons (-want +got):\n%s", diff)
			}
			status, err2 := m.Get(ctx, otherTD)
			if err2 != nil || status.LastError == "" || status.NextRefresh.IsZero() {
				t.Errorf("status after a failure: %+v, %v; want the error and a retry time", status, err2)
			}
		})
	}
}

// TestValidate: bad relationships are refused naming the field.
func TestValidate(t *testing.T) {
	t.Parallel()
	root := rootPEM(catest.NewCA(t, otherTD).Root)
	tests := []struct {
		name    string
		p       federation.Params
		wantErr string
	}{
		{"ok spiffe", federation.Params{TrustDomain: "other.org", BundleEndpointURL: "https://b.other.org", EndpointSPIFFEID: "spiffe://other.org/signet/server", InitialBundle: root}, ""},
		{"ok web", federation.Params{TrustDomain: "other.org", BundleEndpointURL: "https://b.other.org/bundle", Profile: "https_web"}, ""},
		{"own trust domain", federation.Params{TrustDomain: "example.org", BundleEndpointURL: "https://x", Profile: "https_web"}, "own trust domain"},
		{"bad trust domain", federation.Params{TrustDomain: "Other.ORG!", BundleEndpointURL: "https://x", Profile: "https_web"}, "trust_domain"},
		{"id with path", federation.Params{TrustDomain: "spiffe://other.org/x", BundleEndpointURL: "https://x", Profile: "https_web"}, "trust_domain"},
		{"http url", federation.Params{TrustDomain: "other.org", BundleEndpointURL: "http://b.other.org", Profile: "https_web"}, "bundle_endpoint_url"},
		{"no url", federation.Params{TrustDomain: "other.org", Profile: "https_web"}, "bundle_endpoint_url"},
		{"unknown profile", federation.Params{TrustDomain: "other.org", BundleEndpointURL: "https://x", Profile: "http"}, "profile"},
		{"spiffe without id", federation.Params{TrustDomain: "other.org", BundleEndpointURL: "https://x", InitialBundle: root}, "endpoint_spiffe_id"},
		{"web with id", federation.Params{TrustDomain: "other.org", BundleEndpointURL: "https://x", Profile: "https_web", EndpointSPIFFEID: "spiffe://other.org/s"}, "only for the https_spiffe"},
		{"spiffe without bundle", federation.Params{TrustDomain: "other.org", BundleEndpointURL: "https://x", EndpointSPIFFEID: "spiffe://other.org/signet/server"}, "initial bundle"},
		{"garbage bundle", federation.Params{TrustDomain: "other.org", BundleEndpointURL: "https://x", Profile: "https_web", InitialBundle: []byte("nope")}, "bundle"},
		{"bundle of another domain", federation.Params{TrustDomain: "other.org", BundleEndpointURL: "https://x", Profile: "https_web", InitialBundle: rootPEM(catest.NewCA(t, thirdTD).Root)}, "for third.org"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.p.Validate(ownTD)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr) || !federation.IsInvalid(err)):
				t.Fatalf("Validate err = %v, want an input error containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestCreateDelete: create and delete are audited, a second create is
// refused, and the bundles agents get follow.
func TestCreateDelete(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := openStore(t)
	p := newPeer(t, serverID)
	m := newManager(t, st, federation.Config{})
	create(t, m, p)
	if _, err := m.Create(ctx, "admin", federation.Params{TrustDomain: "other.org", BundleEndpointURL: "https://x", Profile: "https_web"}); !errors.Is(err, federation.ErrAlreadyExists) {
		t.Errorf("second create: err = %v, want ErrAlreadyExists", err)
	}
	bundles := func() ([]*spiffebundle.Bundle, string) {
		var bs []*spiffebundle.Bundle
		var v string
		if err := st.View(ctx, func(tx store.Tx) (err error) { bs, v, err = federation.Bundles(tx); return err }); err != nil {
			t.Fatal(err)
		}
		return bs, v
	}
	bs, v1 := bundles()
	if len(bs) != 1 || bs[0].TrustDomain() != otherTD {
		t.Fatalf("bundles after create: %d, want other.org's", len(bs))
	}
	// An endpoint in a third domain needs that domain's roots first.
	_, err := m.Create(ctx, "admin", federation.Params{TrustDomain: "fourth.org", BundleEndpointURL: "https://x", EndpointSPIFFEID: "spiffe://third.org/bundle"})
	if !federation.IsInvalid(err) || !strings.Contains(err.Error(), "federate with third.org first") {
		t.Errorf("endpoint in an unknown domain: err = %v, want an input error", err)
	}
	if _, err := m.Create(ctx, "admin", federation.Params{TrustDomain: "fourth.org", BundleEndpointURL: "https://x", EndpointSPIFFEID: "spiffe://other.org/bundle"}); err != nil {
		t.Errorf("endpoint in a federated domain: %v", err)
	}
	if err := m.Delete(ctx, "admin", spiffeid.RequireTrustDomainFromString("fourth.org")); err != nil {
		t.Fatal(err)
	}
	if err := m.Delete(ctx, "admin", otherTD); err != nil {
		t.Fatal(err)
	}
	if bs, v2 := bundles(); len(bs) != 0 || v2 == v1 {
		t.Errorf("bundles after delete: %d (version %q, was %q), want none and a new version", len(bs), v2, v1)
	}
	if err := m.Delete(ctx, "admin", otherTD); !errors.Is(err, federation.ErrNotFound) {
		t.Errorf("second delete: err = %v, want ErrNotFound", err)
	}
	if c, d := len(auditOf(t, st, audit.TypeFederationCreated)), len(auditOf(t, st, audit.TypeFederationDeleted)); c != 2 || d != 2 {
		t.Errorf("%d created and %d deleted records, want 2 and 2 (other.org, fourth.org)", c, d)
	}
	if rels, err := m.List(ctx); err != nil || len(rels) != 0 {
		t.Errorf("List = %d, %v; want none", len(rels), err)
	}
}

// putRoot adds a root authority to st and takes a bundle revision, as a
// root prepare does.
func putRoot(t *testing.T, st store.Store, c *catest.CA, id string) {
	t.Helper()
	err := st.Update(context.Background(), func(tx store.Tx) error {
		if err := tx.PutAuthority(&store.Authority{ID: id, Kind: store.KindRoot, State: store.StateActive, CertDER: c.Root.Raw, CreatedAt: time.Now()}); err != nil {
			return err
		}
		_, err := bundle.BumpRevision(tx)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// webCertFiles writes a self-signed Web PKI certificate for 127.0.0.1 and
// its key, and returns their paths and a pool trusting it.
func webCertFiles(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bundle.other.test"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "web.crt"), filepath.Join(dir, "web.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// serveEndpoint serves st's bundle (of otherTD) with ServeEndpoint on
// 127.0.0.1 and returns its URL.
func serveEndpoint(t *testing.T, st store.Store, getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- federation.ServeEndpoint(ctx, ln, federation.EndpointConfig{Store: st, TrustDomain: otherTD, RefreshHint: 2 * time.Second, GetCertificate: getCert})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeEndpoint: %v", err)
		}
	})
	return "https://" + ln.Addr().String() + "/bundle"
}

// TestWebEndpointFromFiles: other.org serves its bundle with
// ServeEndpoint over https_web, with a certificate from files; this side
// fetches it with the Web PKI roots, and a root rotation there is a new,
// higher spiffe_sequence here.
func TestWebEndpointFromFiles(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	theirs, ours := openStore(t), openStore(t)
	first := catest.NewCA(t, otherTD)
	putRoot(t, theirs, first, "r1")
	certFile, keyFile, pool := webCertFiles(t)
	getCert, err := federation.WebCertificate(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	url := serveEndpoint(t, theirs, getCert)

	m := newManager(t, ours, federation.Config{WebRoots: pool})
	if _, err := m.Create(ctx, "admin", federation.Params{TrustDomain: "other.org", BundleEndpointURL: url, Profile: "https_web"}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Refresh(ctx, otherTD); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	b1 := stored(t, ours).Bundle
	if len(b1.X509Authorities()) != 1 || !b1.X509Authorities()[0].Equal(first.Root) {
		t.Fatalf("fetched %d roots, want other.org's one", len(b1.X509Authorities()))
	}
	if h, ok := b1.RefreshHint(); !ok || h != 2*time.Second {
		t.Errorf("refresh hint %v (%v), want the served 2s", h, ok)
	}

	putRoot(t, theirs, catest.NewCA(t, otherTD), "r2") // root prepare there
	if updated, err := m.Refresh(ctx, otherTD); err != nil || !updated {
		t.Fatalf("Refresh after the rotation = %v, %v; want updated", updated, err)
	}
	b2 := stored(t, ours).Bundle
	if len(b2.X509Authorities()) != 2 || seqOf(t, b2) <= seqOf(t, b1) {
		t.Errorf("after the rotation: %d roots, sequence %d (was %d); want 2 roots and a higher sequence", len(b2.X509Authorities()), seqOf(t, b2), seqOf(t, b1))
	}

	// A client without the Web PKI root refuses the endpoint.
	other := openStore(t)
	m2 := newManager(t, other, federation.Config{WebRoots: x509.NewCertPool()})
	if _, err := m2.Create(ctx, "admin", federation.Params{TrustDomain: "other.org", BundleEndpointURL: url, Profile: "https_web"}); err != nil {
		t.Fatal(err)
	}
	var fe *federation.FetchError
	if _, err := m2.Refresh(ctx, otherTD); !errors.As(err, &fe) {
		t.Errorf("untrusted Web PKI certificate: err = %v, want a FetchError", err)
	}
}

// TestServedDocument checks the served bundle against the SPIFFE Trust
// Domain and Bundle standard (section 4): a JWKS whose X.509 authorities
// have use "x509-svid" and exactly one certificate in x5c, whose JWT
// authorities have use "jwt-svid" and a kid, with spiffe_sequence and
// spiffe_refresh_hint, as SPIRE's https_spiffe federation reads it.
func TestServedDocument(t *testing.T) {
	t.Parallel()
	st := openStore(t)
	c := catest.NewCA(t, otherTD)
	putRoot(t, st, c, "r1")
	jwtPub, err := x509.MarshalPKIXPublicKey(c.JWTKey.Signer.Public())
	if err != nil {
		t.Fatal(err)
	}
	err = st.Update(context.Background(), func(tx store.Tx) error {
		if err := tx.PutAuthority(&store.Authority{ID: "jwt-1", Kind: store.KindJWT, State: store.StateActive, CertDER: jwtPub, CreatedAt: time.Now()}); err != nil {
			return err
		}
		_, err := bundle.BumpRevision(tx)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	h := federation.NewHandler(federation.EndpointConfig{Store: st, TrustDomain: otherTD})
	get := func() map[string]any {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
		if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
			t.Fatalf("GET: %d %q", rec.Code, rec.Header().Get("Content-Type"))
		}
		var doc map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
			t.Fatal(err)
		}
		return doc
	}
	doc := get()
	seq1, ok := doc["spiffe_sequence"].(float64)
	if !ok || seq1 <= 0 {
		t.Errorf("spiffe_sequence = %v, want a positive number", doc["spiffe_sequence"])
	}
	if hint, ok := doc["spiffe_refresh_hint"].(float64); !ok || hint != federation.DefaultRefreshHint.Seconds() {
		t.Errorf("spiffe_refresh_hint = %v, want %v seconds", doc["spiffe_refresh_hint"], federation.DefaultRefreshHint.Seconds())
	}
	keys, _ := doc["keys"].([]any)
	uses := map[string]int{}
	for _, k := range keys {
		key := k.(map[string]any)
		use, _ := key["use"].(string)
		uses[use]++
		switch use {
		case "x509-svid":
			x5c, _ := key["x5c"].([]any)
			if len(x5c) != 1 {
				t.Errorf("x509-svid key with %d x5c certificates, want 1", len(x5c))
			}
		case "jwt-svid":
			if kid, _ := key["kid"].(string); kid != "jwt-1" {
				t.Errorf("jwt-svid key kid %q, want jwt-1", kid)
			}
		default:
			t.Errorf("key with use %q, want x509-svid or jwt-svid", use)
		}
		if key["kty"] == nil {
			t.Error("key without kty")
		}
	}
	if diff := cmp.Diff(map[string]int{"x509-svid": 1, "jwt-svid": 1}, uses); diff != "" {
		t.Errorf("key uses (-want +got):\n%s", diff)
	}
	putRoot(t, st, catest.NewCA(t, otherTD), "r2")
	if seq2 := get()["spiffe_sequence"].(float64); seq2 <= seq1 {
		t.Errorf("spiffe_sequence after a root prepare = %v, want above %v", seq2, seq1)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d, want 405", rec.Code)
	}
}

// TestRunRefreshesOnHint: the refresher fetches a new relationship at
// once, again when the refresh hint has passed, and keeps the last good
// bundle (retrying with backoff) while the endpoint is down.
func TestRunRefreshesOnHint(t *testing.T) {
	t.Parallel()
	st := openStore(t)
	p := newPeer(t, serverID)
	clk := clock.NewFake(time.Now())
	m := newManager(t, st, federation.Config{Clock: clk})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	create(t, m, p)
	waitFor(t, "the first fetch", func() bool { s, _ := stored(t, st).Bundle.SequenceNumber(); return s == 5 })

	p.serve(t, p.doc(t, 6, p.ca.Root, catest.NewCA(t, otherTD).Root))
	waitFor(t, "the refresher to wait for the hint", func() bool { return clk.Waiters() > 0 })
	clk.Advance(time.Minute) // the served refresh hint
	waitFor(t, "the fetch on the refresh hint", func() bool { s, _ := stored(t, st).Bundle.SequenceNumber(); return s == 6 })

	p.srv.Close()
	good := stored(t, st).Bundle
	for range 3 {
		waitFor(t, "the refresher to wait", func() bool { return clk.Waiters() > 0 })
		clk.Advance(time.Minute)
	}
	waitFor(t, "the failure to be recorded", func() bool {
		s, err := m.Get(context.Background(), otherTD)
		return err == nil && s.LastError != ""
	})
	if !stored(t, st).Bundle.Equal(good) {
		t.Error("the last good bundle was not kept while the endpoint is down")
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
