package ca_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha1" //nolint:gosec // RFC 5280 method 1 key identifier
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/signet-mesh/signet/ca"
	"github.com/signet-mesh/signet/ca/catest"
	"github.com/signet-mesh/signet/internal/clock"
)

var (
	td         = spiffeid.RequireTrustDomainFromString("example.org")
	workloadID = spiffeid.RequireFromPath(td, "/ns/prod/sa/web")
)

// newFakeCA returns a test CA on a fake clock set to the wall clock's
// current second, so that tools that check validity against the real time
// (openssl, go-spiffe) agree with it.
func newFakeCA(t testing.TB, opts ...catest.Option) (*catest.CA, *clock.Fake) {
	t.Helper()
	clk := clock.NewFake(time.Now().Truncate(time.Second))
	return catest.NewCA(t, td, append([]catest.Option{catest.WithClock(clk)}, opts...)...), clk
}

func mint(t *testing.T, c *catest.CA, p ca.X509SVIDParams) (*ca.X509SVID, crypto.Signer) {
	t.Helper()
	var key crypto.Signer
	if p.PublicKey == nil {
		key = catest.NewKey(t)
		p.PublicKey = key.Public()
	}
	svid, err := c.CA.SignX509SVID(context.Background(), p)
	if err != nil {
		t.Fatalf("SignX509SVID: %v", err)
	}
	return svid, key
}

var (
	oidKeyUsage         = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}
)

func extension(c *x509.Certificate, oid asn1.ObjectIdentifier) (pkix.Extension, bool) {
	for _, e := range c.Extensions {
		if e.Id.Equal(oid) {
			return e, true
		}
	}
	return pkix.Extension{}, false
}

// TestX509SVIDStandard checks a minted SVID against the SPIFFE X509-SVID
// standard, one property per case.
func TestX509SVIDStandard(t *testing.T) {
	c, clk := newFakeCA(t)
	now := clk.Now()
	dns := []string{"web.example.org", "web"}
	svid, key := mint(t, c, ca.X509SVIDParams{SPIFFEID: workloadID, TTL: 30 * time.Minute, DNSNames: dns})
	leaf := svid.Chain[0]

	tests := []struct {
		name  string
		check func() string // "" when fine, else what is wrong
	}{
		{"exactly one URI SAN, the SPIFFE ID", func() string {
			if len(leaf.URIs) != 1 || leaf.URIs[0].String() != workloadID.String() {
				return "URIs = " + cmp.Diff([]string{workloadID.String()}, urls(leaf))
			}
			return ""
		}},
		{"DNS SANs as requested", func() string { return cmp.Diff(dns, leaf.DNSNames) }},
		{"no other SANs", func() string {
			if len(leaf.EmailAddresses)+len(leaf.IPAddresses) != 0 {
				return "unexpected email or IP SANs"
			}
			return ""
		}},
		{"basicConstraints present with cA false", func() string {
			if _, ok := extension(leaf, oidBasicConstraints); !ok || !leaf.BasicConstraintsValid || leaf.IsCA {
				return "want basicConstraints cA:false"
			}
			return ""
		}},
		{"keyUsage digitalSignature only", func() string {
			if leaf.KeyUsage != x509.KeyUsageDigitalSignature {
				return "key usage is not digitalSignature alone"
			}
			return ""
		}},
		{"keyUsage critical", func() string {
			if e, ok := extension(leaf, oidKeyUsage); !ok || !e.Critical {
				return "keyUsage missing or not critical"
			}
			return ""
		}},
		{"extKeyUsage serverAuth and clientAuth", func() string {
			return cmp.Diff([]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, leaf.ExtKeyUsage)
		}},
		{"subjectKeyId is SHA-1 of the public key", func() string {
			if !bytes.Equal(leaf.SubjectKeyId, ski(t, key.Public())) {
				return "SKI mismatch"
			}
			return ""
		}},
		{"authorityKeyId is the issuer's SKI", func() string {
			if len(leaf.AuthorityKeyId) == 0 || !bytes.Equal(leaf.AuthorityKeyId, c.Intermediate.SubjectKeyId) {
				return "AKI mismatch"
			}
			return ""
		}},
		{"serial positive and at most 128 bits", func() string {
			if leaf.SerialNumber.Sign() <= 0 || leaf.SerialNumber.BitLen() > 128 {
				return "serial " + leaf.SerialNumber.String()
			}
			return ""
		}},
		{"NotBefore backdated by 10s", func() string {
			if !leaf.NotBefore.Equal(now.Add(-ca.Backdate)) || ca.Backdate != 10*time.Second {
				return "NotBefore " + leaf.NotBefore.String()
			}
			return ""
		}},
		{"NotAfter is now plus TTL", func() string {
			if !leaf.NotAfter.Equal(now.Add(30 * time.Minute)) {
				return "NotAfter " + leaf.NotAfter.String()
			}
			return ""
		}},
		{"public key is the requested one", func() string {
			if !leaf.PublicKey.(*ecdsa.PublicKey).Equal(key.Public()) {
				return "public key differs"
			}
			return ""
		}},
		{"subject O=SPIFFE", func() string { return cmp.Diff([]string{"SPIFFE"}, leaf.Subject.Organization) }},
		{"no node incarnation unless asked", func() string { return cmp.Diff("", ca.NodeIncarnation(leaf)) }},
		{"chain is leaf then intermediate, no root", func() string {
			if len(svid.Chain) != 2 || svid.Chain[1] != c.Intermediate {
				return "chain length " + big.NewInt(int64(len(svid.Chain))).String()
			}
			return ""
		}},
		{"authority ID reported", func() string { return cmp.Diff("catest-intermediate", svid.AuthorityID) }},
		{"signed by the intermediate", func() string {
			if err := leaf.CheckSignatureFrom(c.Intermediate); err != nil {
				return err.Error()
			}
			return ""
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := tt.check(); diff != "" {
				t.Error(diff)
			}
		})
	}
}

func urls(c *x509.Certificate) []string {
	var out []string
	for _, u := range c.URIs {
		out = append(out, u.String())
	}
	return out
}

func ski(t *testing.T, pub crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	var spki struct {
		Algorithm        pkix.AlgorithmIdentifier
		SubjectPublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		t.Fatal(err)
	}
	sum := sha1.Sum(spki.SubjectPublicKey.Bytes) //nolint:gosec // RFC 5280 method 1
	return sum[:]
}

// TestGoSPIFFEAccepts checks that go-spiffe, the reference SPIFFE library,
// parses and verifies what the CA mints.
func TestGoSPIFFEAccepts(t *testing.T) {
	c, _ := newFakeCA(t)
	svid, key := mint(t, c, ca.X509SVIDParams{SPIFFEID: workloadID})

	var certsDER, certsPEM []byte
	for _, cert := range svid.Chain {
		certsDER = append(certsDER, cert.Raw...)
		certsPEM = append(certsPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})...)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})

	t.Run("ParseRaw", func(t *testing.T) {
		s, err := x509svid.ParseRaw(certsDER, keyDER)
		if err != nil {
			t.Fatal(err)
		}
		if s.ID != workloadID {
			t.Errorf("ID = %s, want %s", s.ID, workloadID)
		}
	})
	t.Run("Parse", func(t *testing.T) {
		s, err := x509svid.Parse(certsPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		if s.ID != workloadID {
			t.Errorf("ID = %s, want %s", s.ID, workloadID)
		}
	})
	t.Run("Verify", func(t *testing.T) {
		id, chains, err := x509svid.Verify(svid.Chain, c.X509Bundle())
		if err != nil {
			t.Fatal(err)
		}
		if id != workloadID || len(chains) == 0 || chains[0][len(chains[0])-1] != c.Root {
			t.Errorf("Verify = %s, %d chains", id, len(chains))
		}
	})
	t.Run("Verify refuses another trust domain's bundle", func(t *testing.T) {
		other := catest.NewCA(t, spiffeid.RequireTrustDomainFromString("other.org"))
		if _, _, err := x509svid.Verify(svid.Chain, other.X509Bundle()); err == nil {
			t.Error("verified against a foreign bundle")
		}
	})
}

// TestOpenSSLVerifies runs the real openssl verifier over root, untrusted
// intermediate and leaf, for both TLS purposes.
func TestOpenSSLVerifies(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not on PATH")
	}
	c, _ := newFakeCA(t)
	svid, _ := mint(t, c, ca.X509SVIDParams{SPIFFEID: workloadID, DNSNames: []string{"web.example.org"}})
	dir := t.TempDir()
	write := func(name string, cert *x509.Certificate) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	root, inter, leaf := write("root.pem", c.Root), write("inter.pem", svid.Chain[1]), write("leaf.pem", svid.Chain[0])
	for _, purpose := range []string{"", "sslserver", "sslclient"} {
		args := []string{"verify", "-CAfile", root, "-untrusted", inter}
		if purpose != "" {
			args = append(args, "-purpose", purpose)
		}
		out, err := exec.Command(openssl, append(args, leaf)...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), ": OK") {
			t.Errorf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// And it is not fooled: without the intermediate the leaf does not
	// verify.
	if out, err := exec.Command(openssl, "verify", "-CAfile", root, leaf).CombinedOutput(); err == nil {
		t.Errorf("openssl verified the leaf without its intermediate:\n%s", out)
	}
}

func TestTTL(t *testing.T) {
	c, clk := newFakeCA(t, catest.WithIntermediateTTL(2*time.Hour))
	now := clk.Now()
	tests := []struct {
		name string
		ttl  time.Duration
		want time.Time
	}{
		{"default", 0, now.Add(ca.DefaultX509SVIDTTL)},
		{"requested", 10 * time.Minute, now.Add(10 * time.Minute)},
		{"capped at intermediate expiry", 24 * time.Hour, c.Intermediate.NotAfter},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svid, _ := mint(t, c, ca.X509SVIDParams{SPIFFEID: workloadID, TTL: tt.ttl})
			if got := svid.Chain[0].NotAfter; !got.Equal(tt.want) {
				t.Errorf("NotAfter = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSerialsUniqueAnd128Bit(t *testing.T) {
	c, _ := newFakeCA(t)
	key := catest.NewKey(t)
	seen := make(map[string]bool)
	long := 0
	for range 200 {
		svid, _ := mint(t, c, ca.X509SVIDParams{SPIFFEID: workloadID, PublicKey: key.Public()})
		s := svid.Chain[0].SerialNumber
		if s.Sign() <= 0 || s.BitLen() > 128 {
			t.Fatalf("serial %x is not a positive 128-bit number", s)
		}
		if s.BitLen() > 120 {
			long++
		}
		hex := ca.FormatSerial(s)
		if len(hex) != 32 {
			t.Errorf("FormatSerial = %q, want 32 digits", hex)
		}
		if seen[hex] {
			t.Fatalf("serial %s issued twice", hex)
		}
		seen[hex] = true
	}
	// With 128 random bits, a serial below 2^120 has odds 1/256; nearly
	// all must be long, or the entropy is not there.
	if long < 190 {
		t.Errorf("only %d of 200 serials use more than 120 bits", long)
	}
}

// TestNodeIncarnation: a node SVID carries the incarnation it was signed
// for in its subject, and go-spiffe still accepts it.
func TestNodeIncarnation(t *testing.T) {
	t.Parallel()
	c, _ := newFakeCA(t)
	id := spiffeid.RequireFromPath(td, "/signet/agent/join_token/n1")
	svid, _ := mint(t, c, ca.X509SVIDParams{SPIFFEID: id, NodeIncarnation: "0123456789abcdef"})
	if got := ca.NodeIncarnation(svid.Chain[0]); got != "0123456789abcdef" {
		t.Errorf("NodeIncarnation = %q, want the one signed for", got)
	}
	if got, err := x509svid.IDFromCert(svid.Chain[0]); err != nil || got != id {
		t.Errorf("x509svid.IDFromCert = %v, %v; want %s", got, err, id)
	}
}

func TestSignX509SVIDErrors(t *testing.T) {
	c, clk := newFakeCA(t, catest.WithIntermediateTTL(time.Hour))
	key := catest.NewKey(t)
	other := catest.NewCA(t, spiffeid.RequireTrustDomainFromString("other.org"))
	ctx := context.Background()

	tests := []struct {
		name string
		ca   *ca.CA
		p    ca.X509SVIDParams
		want error
	}{
		{"foreign trust domain", c.CA, ca.X509SVIDParams{SPIFFEID: spiffeid.RequireFromString("spiffe://other.org/web"), PublicKey: key.Public()}, ca.ErrForeignTrustDomain},
		{"empty ID", c.CA, ca.X509SVIDParams{PublicKey: key.Public()}, ca.ErrInvalidParams},
		{"no public key", c.CA, ca.X509SVIDParams{SPIFFEID: workloadID}, ca.ErrInvalidParams},
		{"negative TTL", c.CA, ca.X509SVIDParams{SPIFFEID: workloadID, PublicKey: key.Public(), TTL: -time.Second}, ca.ErrInvalidParams},
		{"empty DNS name", c.CA, ca.X509SVIDParams{SPIFFEID: workloadID, PublicKey: key.Public(), DNSNames: []string{""}}, ca.ErrInvalidParams},
		{"no authority", ca.New(ca.Config{TrustDomain: td}), ca.X509SVIDParams{SPIFFEID: workloadID, PublicKey: key.Public()}, ca.ErrNoAuthority},
		{"chain does not reach the roots", func() *ca.CA {
			bad := ca.New(ca.Config{TrustDomain: td, Clock: clk})
			bad.SetX509Authority(&ca.X509Authority{ID: "x", Certificate: c.Intermediate, Signer: c.IntermediateKey, Roots: []*x509.Certificate{other.Root}})
			return bad
		}(), ca.X509SVIDParams{SPIFFEID: workloadID, PublicKey: key.Public()}, ca.ErrCheckFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.ca.SignX509SVID(ctx, tt.p)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "ca: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}

	t.Run("intermediate expired", func(t *testing.T) {
		clk.Advance(2 * time.Hour)
		_, err := c.CA.SignX509SVID(ctx, ca.X509SVIDParams{SPIFFEID: workloadID, PublicKey: key.Public()})
		if !errors.Is(err, ca.ErrAuthorityExpired) {
			t.Fatalf("err = %v, want ErrAuthorityExpired", err)
		}
	})
}

// TestAuthoritySwap signs while the authority changes underneath; run with
// -race.
func TestAuthoritySwap(t *testing.T) {
	a, _ := newFakeCA(t)
	b := catest.NewCA(t, td)
	bAuth := b.CA.X509Authority()
	aAuth := a.CA.X509Authority()
	key := catest.NewKey(t)
	// Both authorities' roots are trusted, so each SVID verifies whichever
	// authority signed it.
	roots := []*x509.Certificate{a.Root, b.Root}
	auths := []*ca.X509Authority{
		{ID: "a", Certificate: aAuth.Certificate, Signer: aAuth.Signer, Roots: roots},
		{ID: "b", Certificate: bAuth.Certificate, Signer: bAuth.Signer, Roots: roots},
	}
	a.CA.SetX509Authority(auths[0])
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 200 {
			a.CA.SetX509Authority(auths[i%2])
		}
	})
	for range 4 {
		wg.Go(func() {
			for range 50 {
				svid, err := a.CA.SignX509SVID(context.Background(), ca.X509SVIDParams{SPIFFEID: workloadID, PublicKey: key.Public()})
				if err != nil {
					t.Error(err)
					return
				}
				want := map[string]*x509.Certificate{"a": aAuth.Certificate, "b": bAuth.Certificate}[svid.AuthorityID]
				if svid.Chain[1] != want {
					t.Errorf("authority %s reported with another's certificate", svid.AuthorityID)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestTemplates(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	rootKey, interKey := catest.NewKey(t), catest.NewKey(t)
	tmpl, err := ca.NewRootTemplate(td, rootKey.Public(), now, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	root, err := ca.CreateCertificate(tmpl, tmpl, rootKey.Public(), rootKey)
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err = ca.NewIntermediateTemplate(td, interKey.Public(), now, 48*time.Hour, root)
	if err != nil {
		t.Fatal(err)
	}
	inter, err := ca.CreateCertificate(tmpl, root, interKey.Public(), rootKey)
	if err != nil {
		t.Fatal(err)
	}

	for _, c := range []*x509.Certificate{root, inter} {
		if !c.IsCA || !c.BasicConstraintsValid {
			t.Errorf("%s: not CA", c.Subject)
		}
		if want := x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature; c.KeyUsage != want {
			t.Errorf("%s: key usage %v, want %v", c.Subject, c.KeyUsage, want)
		}
		if diff := cmp.Diff([]string{"spiffe://example.org"}, urls(c)); diff != "" {
			t.Errorf("%s: URI SANs (-want +got):\n%s", c.Subject, diff)
		}
		if !c.NotBefore.Equal(now.Add(-ca.Backdate)) {
			t.Errorf("%s: NotBefore %v", c.Subject, c.NotBefore)
		}
	}
	if root.MaxPathLen != 1 {
		t.Errorf("root MaxPathLen = %d, want 1", root.MaxPathLen)
	}
	if inter.MaxPathLen != 0 || !inter.MaxPathLenZero {
		t.Errorf("intermediate MaxPathLen = %d (zero %v), want 0", inter.MaxPathLen, inter.MaxPathLenZero)
	}
	if !inter.NotAfter.Equal(root.NotAfter) {
		t.Errorf("intermediate NotAfter %v not capped at root's %v", inter.NotAfter, root.NotAfter)
	}
	if !bytes.Equal(inter.AuthorityKeyId, root.SubjectKeyId) {
		t.Errorf("intermediate AKI is not the root's SKI")
	}
	if root.Subject.String() == inter.Subject.String() {
		t.Errorf("root and intermediate share the subject %s", root.Subject)
	}
	if _, err := ca.NewIntermediateTemplate(td, interKey.Public(), root.NotAfter, time.Hour, root); !errors.Is(err, ca.ErrAuthorityExpired) {
		t.Errorf("intermediate under an expired root: err = %v, want ErrAuthorityExpired", err)
	}
	if _, err := ca.NewRootTemplate(td, rootKey.Public(), now, 0); !errors.Is(err, ca.ErrInvalidParams) {
		t.Errorf("zero root TTL: err = %v, want ErrInvalidParams", err)
	}
}

// corruptSigner signs with its key and then flips a bit of the signature:
// a faulty HSM or key plugin.
type corruptSigner struct{ crypto.Signer }

func (s corruptSigner) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	sig, err := s.Signer.Sign(rand, digest, opts)
	if err == nil {
		sig[len(sig)/2] ^= 1
	}
	return sig, err
}

// TestSignX509SVIDBadSigner: a leaf the authority's key did not sign never
// leaves the CA. SignX509SVID relies on x509.CreateCertificate for this
// (it refuses a signer whose key is not the issuer's and verifies the
// signature it made) instead of verifying each leaf's signature a second
// time: this test fails if that guarantee goes.
func TestSignX509SVIDBadSigner(t *testing.T) {
	c, clk := newFakeCA(t)
	key := catest.NewKey(t)
	tests := []struct {
		name    string
		signer  crypto.Signer
		wantErr string
	}{
		{"signer is not the authority's key", catest.NewKey(t), "doesn't match parent's PublicKey"},
		{"signer returns a bad signature", corruptSigner{c.IntermediateKey}, "signature returned by signer is invalid"},
	}
	t.Run("authority is not a CA", func(t *testing.T) {
		// A leaf chains to the roots but may not sign certificates: Go
		// signs under it, the check refuses.
		leaf, leafKey := mint(t, c, ca.X509SVIDParams{SPIFFEID: workloadID})
		bad := ca.New(ca.Config{TrustDomain: td, Clock: clk})
		bad.SetX509Authority(&ca.X509Authority{ID: "x", Certificate: leaf.Chain[0], Signer: leafKey, UpstreamChain: []*x509.Certificate{c.Intermediate}, Roots: []*x509.Certificate{c.Root}})
		_, err := bad.SignX509SVID(context.Background(), ca.X509SVIDParams{SPIFFEID: workloadID, PublicKey: key.Public()})
		if !errors.Is(err, ca.ErrCheckFailed) || !strings.Contains(err.Error(), "may not sign certificates") {
			t.Fatalf("err = %v, want ErrCheckFailed: the authority may not sign certificates", err)
		}
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad := ca.New(ca.Config{TrustDomain: td, Clock: clk})
			bad.SetX509Authority(&ca.X509Authority{ID: "x", Certificate: c.Intermediate, Signer: tt.signer, Roots: []*x509.Certificate{c.Root}})
			svid, err := bad.SignX509SVID(context.Background(), ca.X509SVIDParams{SPIFFEID: workloadID, PublicKey: key.Public()})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("SignX509SVID = %v, %v; want an error containing %q", svid, err, tt.wantErr)
			}
		})
	}
}
