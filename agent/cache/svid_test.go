package cache_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"runtime"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/signet-mesh/signet/agent/cache"
)

// testCA issues real SVIDs under one intermediate, as the agent gets them.
type testCA struct {
	inter    *x509.Certificate
	interKey crypto.Signer
	serial   int64
}

func newTestCA(tb testing.TB) *testCA {
	tb.Helper()
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	root := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: start.Add(-time.Hour), NotAfter: start.Add(48 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, URIs: []*url.URL{td.ID().URL()}}
	interKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	interTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), NotBefore: start.Add(-time.Hour), NotAfter: start.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, URIs: []*url.URL{td.ID().URL()}}
	der, err := x509.CreateCertificate(rand.Reader, interTmpl, root, interKey.Public(), rootKey)
	if err != nil {
		tb.Fatal(err)
	}
	inter, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return &testCA{inter: inter, interKey: interKey, serial: 100}
}

// svid issues an SVID for id with a fresh P-256 key, parsed as
// agent/client hands it to the cache.
func (ca *testCA) svid(tb testing.TB, id spiffeid.ID, dnsNames ...string) *x509svid.SVID {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	ca.serial++
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(ca.serial), NotBefore: start.Add(-time.Minute), NotAfter: start.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs: []*url.URL{id.URL()}, DNSNames: dnsNames}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.inter, key.Public(), ca.interKey)
	if err != nil {
		tb.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return &x509svid.SVID{ID: id, Certificates: []*x509.Certificate{leaf, ca.inter}, PrivateKey: key}
}

// TestSVIDServesTheSame: the cache's compact SVID gives back exactly the
// bytes the Workload API and SDS served from a parsed x509svid.SVID
// before: the DER chain and PKCS #8 key, and x509svid.SVID.Marshal's PEM.
func TestSVIDServesTheSame(t *testing.T) {
	ca := newTestCA(t)
	id := spiffeid.RequireFromPath(td, "/web")
	orig := ca.svid(t, id, "web.example.org")
	s, err := cache.NewSVID(orig)
	if err != nil {
		t.Fatal(err)
	}
	if s.ID() != id || !s.NotBefore().Equal(orig.Certificates[0].NotBefore) || !s.NotAfter().Equal(orig.Certificates[0].NotAfter) {
		t.Errorf("ID, NotBefore, NotAfter = %v, %v, %v; want %v, %v, %v", s.ID(), s.NotBefore(), s.NotAfter(), id, orig.Certificates[0].NotBefore, orig.Certificates[0].NotAfter)
	}
	wantChain, wantKey, err := orig.MarshalRaw()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s.ChainDER(), wantChain) {
		t.Error("ChainDER differs from the concatenated DER chain")
	}
	if !bytes.Equal(s.PrivateKeyPKCS8(), wantKey) {
		t.Error("PrivateKeyPKCS8 differs from x509.MarshalPKCS8PrivateKey")
	}
	if !bytes.Equal(s.LeafDER(), orig.Certificates[0].Raw) {
		t.Error("LeafDER differs from the leaf's Raw")
	}
	wantCertsPEM, wantKeyPEM, err := orig.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	gotCertsPEM, gotKeyPEM, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(wantCertsPEM), string(gotCertsPEM)); diff != "" {
		t.Errorf("Marshal certificates (-x509svid +cache):\n%s", diff)
	}
	if diff := cmp.Diff(string(wantKeyPEM), string(gotKeyPEM)); diff != "" {
		t.Errorf("Marshal key (-x509svid +cache):\n%s", diff)
	}

	back, err := s.X509SVID()
	if err != nil {
		t.Fatal(err)
	}
	if back.ID != id || len(back.Certificates) != 2 || !back.Certificates[0].Equal(orig.Certificates[0]) || !back.Certificates[1].Equal(ca.inter) {
		t.Errorf("X509SVID() = %v with %d certificates, want the original chain", back.ID, len(back.Certificates))
	}
	if !orig.PrivateKey.(*ecdsa.PrivateKey).Equal(back.PrivateKey) {
		t.Error("X509SVID() key differs from the original")
	}
	inter, err := s.Intermediates()
	if err != nil {
		t.Fatal(err)
	}
	if len(inter) != 1 || !inter[0].Equal(ca.inter) {
		t.Errorf("Intermediates() = %d certificates, want the intermediate", len(inter))
	}

	// The leaf is the cache's own copy: whatever buffer it was parsed
	// from is not kept (nor changes it).
	raw := orig.Certificates[0].Raw
	saved := bytes.Clone(raw)
	raw[len(raw)-1] ^= 0xff
	if !bytes.Equal(s.LeafDER(), saved) {
		t.Error("LeafDER shares its bytes with the parsed certificate it came from")
	}
}

// TestSVIDSharesIntermediates: SVIDs signed under one intermediate hold
// one copy of it, and the parsed intermediates are shared too.
func TestSVIDSharesIntermediates(t *testing.T) {
	ca := newTestCA(t)
	a, err := cache.NewSVID(ca.svid(t, spiffeid.RequireFromPath(td, "/a")))
	if err != nil {
		t.Fatal(err)
	}
	b, err := cache.NewSVID(ca.svid(t, spiffeid.RequireFromPath(td, "/b")))
	if err != nil {
		t.Fatal(err)
	}
	if !cache.SameIntermediates(a, b) {
		t.Error("two SVIDs under one intermediate hold separate copies of it")
	}
	other, err := cache.NewSVID(newTestCA(t).svid(t, spiffeid.RequireFromPath(td, "/c")))
	if err != nil {
		t.Fatal(err)
	}
	if cache.SameIntermediates(a, other) {
		t.Error("SVIDs under different intermediates share them")
	}
	ia, _ := a.Intermediates()
	ib, _ := b.Intermediates()
	if len(ia) != 1 || len(ib) != 1 || ia[0] != ib[0] {
		t.Error("Intermediates of two SVIDs under one intermediate are parsed twice")
	}
}

// otherSigner is a crypto.Signer that x509 cannot encode.
type otherSigner struct{ crypto.Signer }

func TestNewSVIDInvalid(t *testing.T) {
	ca := newTestCA(t)
	id := spiffeid.RequireFromPath(td, "/web")
	tests := []struct {
		name    string
		svid    func() *x509svid.SVID
		wantErr string
	}{
		{name: "nil", svid: func() *x509svid.SVID { return nil }, wantErr: "invalid SVID"},
		{name: "no certificates", svid: func() *x509svid.SVID { s := ca.svid(t, id); s.Certificates = nil; return s }, wantErr: "invalid SVID"},
		{name: "nil intermediate", svid: func() *x509svid.SVID { s := ca.svid(t, id); s.Certificates[1] = nil; return s }, wantErr: "invalid SVID"},
		{name: "no key", svid: func() *x509svid.SVID { s := ca.svid(t, id); s.PrivateKey = nil; return s }, wantErr: "invalid SVID"},
		{name: "key x509 cannot encode", svid: func() *x509svid.SVID {
			s := ca.svid(t, id)
			s.PrivateKey = otherSigner{s.PrivateKey}
			return s
		}, wantErr: "encoding private key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := cache.NewSVID(tt.svid())
			if !errors.Is(err, cache.ErrInvalidSVID) {
				t.Errorf("NewSVID error = %v, want ErrInvalidSVID", err)
			}
			if err == nil || !bytes.Contains([]byte(err.Error()), []byte(tt.wantErr)) {
				t.Errorf("NewSVID error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

// heapPerSVID fills a cache with n entries (one selector each, as
// BenchmarkAgent50000Entries registers them) and an SVID for each, issued
// by a real CA, and returns the heap they hold, in bytes per SVID, after
// a GC: the cost the agent pays for each SVID it holds (issue 16).
func heapPerSVID(tb testing.TB, n int) float64 {
	tb.Helper()
	ca := newTestCA(tb)
	entries := make([]cache.Entry, n)
	svids := make([]cache.EntrySVID, n)
	for i := range n {
		entries[i] = cache.Entry{ID: fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i), SPIFFEID: spiffeid.RequireFromPath(td, fmt.Sprintf("/large/w%05d", i)),
			Selectors: []string{fmt.Sprintf("unix:uid:%d", 4000000+i)}, X509TTL: time.Hour}
		svids[i] = cache.EntrySVID{EntryID: entries[i].ID, SVID: ca.svid(tb, entries[i].SPIFFEID)}
	}
	// The entries and SVIDs arrive from the network: the cache must not
	// keep what they were decoded into.
	entries = cloneEntries(entries)
	held := func() int64 {
		c, _ := newCache(tb)
		c.ApplyEntries(true, entries, nil)
		for i := 0; i < n; i += 100 {
			for _, err := range c.SetSVIDs(svids[i:min(i+100, n)]) {
				if err != nil {
					tb.Fatal(err)
				}
			}
		}
		entries, svids = nil, nil
		with := heapInUse()
		if got, _ := c.Stats(); got != n {
			tb.Fatalf("cache holds %d SVIDs, want %d", got, n)
		}
		return with
	}()
	// Everything but the cache is garbage both times.
	without := heapInUse()
	return float64(held-without) / float64(n)
}

func cloneEntries(in []cache.Entry) []cache.Entry {
	out := make([]cache.Entry, len(in))
	for i, e := range in {
		e.ID = string([]byte(e.ID))
		e.SPIFFEID = spiffeid.RequireFromString(string([]byte(e.SPIFFEID.String())))
		e.Selectors = []string{string([]byte(e.Selectors[0]))}
		out[i] = e
	}
	return out
}

func heapInUse() int64 {
	var m runtime.MemStats
	for range 2 {
		runtime.GC()
	}
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// maxHeapPerSVID bounds what the cache holds per SVID and entry: the
// leaf's DER (about 550 bytes for a P-256 SVID with one URI), the PKCS #8
// key (about 140), the entry, and the indexes. A parsed x509.Certificate
// alone takes over 1.5 KB.
const maxHeapPerSVID = 1300

// TestHeapPerSVID keeps the agent's memory per SVID in check: an agent
// with 50,000 entries must stay under 150 MB (issue 16).
func TestHeapPerSVID(t *testing.T) {
	if testing.Short() {
		t.Skip("issues 10,000 certificates")
	}
	if got := heapPerSVID(t, 10000); got > maxHeapPerSVID {
		t.Errorf("the cache holds %.0f bytes per SVID, want at most %d", got, maxHeapPerSVID)
	} else {
		t.Logf("%.0f bytes per SVID", got)
	}
}

// BenchmarkHeapPerSVID reports the heap the cache holds per SVID
// (bytes/svid), 10,000 SVIDs per iteration:
//
//	go test -run '^$' -bench HeapPerSVID -benchtime 1x ./agent/cache/
func BenchmarkHeapPerSVID(b *testing.B) {
	var sum float64
	for range b.N {
		sum += heapPerSVID(b, 10000)
	}
	b.ReportMetric(sum/float64(b.N), "bytes/svid")
}
