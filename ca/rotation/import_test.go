package rotation_test

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.step.sm/crypto/pemutil"

	"github.com/signet-mesh/signet/ca/catest"
	"github.com/signet-mesh/signet/ca/rotation"
	"github.com/signet-mesh/signet/ca/store"
)

// orgCert is a certificate of an organisation's own PKI, made without
// signet's templates: no SPIFFE URI SAN, its own subject.
type orgCert struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func newOrgCert(t *testing.T, cn string, parent *orgCert, now time.Time, mod func(*x509.Certificate)) *orgCert {
	t.Helper()
	key := catest.NewKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{Organization: []string{"Acme"}, CommonName: cn},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(5 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            -1,
	}
	if mod != nil {
		mod(tmpl)
	}
	parentCert, parentKey := tmpl, key
	if parent != nil {
		parentCert, parentKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parentCert, key.Public(), parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &orgCert{cert: cert, key: key}
}

func writeCerts(t *testing.T, dir, name string, certs ...*x509.Certificate) string {
	t.Helper()
	var data []byte
	for _, c := range certs {
		data = append(data, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func writeKey(t *testing.T, dir, name string, key crypto.Signer, pass []byte) string {
	t.Helper()
	var opts []pemutil.Options
	if pass != nil {
		opts = append(opts, pemutil.WithPassword(pass), pemutil.WithPKCS8(true))
	}
	block, err := pemutil.Serialize(key, opts...)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestImportRoot(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	org := newOrgCert(t, "Acme Root", nil, e.clock.Now(), nil)
	files := t.TempDir()
	orgPass := []byte("org secret")
	in := e.start(t, rotation.Config{ImportRoot: &rotation.Import{
		CertFile:      writeCerts(t, files, "root.pem", org.cert),
		KeyFile:       writeKey(t, files, "root.key", org.key, orgPass),
		KeyPassphrase: orgPass,
	}})

	root := find(authorities(t, in.store), store.KindRoot, store.StateActive)
	if root == nil || !org.cert.Equal(mustParse(t, root.CertDER)) || len(root.UpstreamChainDER) != 0 {
		t.Fatalf("active root is not the imported certificate")
	}
	if root.KeyType != "EC-P256" {
		t.Errorf("imported key type %q, want EC-P256", root.KeyType)
	}
	// The key was re-encrypted under signet's passphrase.
	stored, err := os.ReadFile(filepath.Join(e.dir, "keys", root.KeyRef))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pemutil.ParseKey(stored, pemutil.WithPassword(passphrase)); err != nil {
		t.Errorf("stored root key does not open with signet's passphrase: %v", err)
	}

	b := readBundle(t, in)
	if len(b.X509Authorities) != 1 || !b.X509Authorities[0].Equal(org.cert) {
		t.Errorf("bundle anchors are not the imported root")
	}
	svid := mint(t, in.ca)
	if err := verifyAt(svid.Chain, b, e.clock.Now()); err != nil {
		t.Errorf("SVID does not chain to the imported root: %v", err)
	}
	if len(svid.Chain) != 2 {
		t.Errorf("chain has %d certificates, want leaf and intermediate", len(svid.Chain))
	}

	// A restart with the same config keeps the same root instead of
	// importing it again.
	if err := in.store.Close(); err != nil {
		t.Fatal(err)
	}
	again := e.start(t, rotation.Config{ImportRoot: &rotation.Import{CertFile: filepath.Join(files, "root.pem"), KeyFile: filepath.Join(files, "root.key"), KeyPassphrase: orgPass}})
	if roots := countKind(authorities(t, again.store), store.KindRoot); roots != 1 {
		t.Errorf("%d roots after restart, want 1", roots)
	}
}

func TestImportIntermediate(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	now := e.clock.Now()
	orgRoot := newOrgCert(t, "Acme Root", nil, now, nil)
	orgIssuing := newOrgCert(t, "Acme Issuing", orgRoot, now, nil)
	signetCA := newOrgCert(t, "Acme signet CA", orgIssuing, now, func(c *x509.Certificate) { c.MaxPathLen = 1 })
	files := t.TempDir()
	in := e.start(t, rotation.Config{ImportIntermediate: &rotation.Import{
		CertFile:  writeCerts(t, files, "ca.pem", signetCA.cert),
		ChainFile: writeCerts(t, files, "chain.pem", orgIssuing.cert, orgRoot.cert),
		KeyFile:   writeKey(t, files, "ca.key", signetCA.key, nil),
	}})

	b := readBundle(t, in)
	if len(b.X509Authorities) != 1 || !b.X509Authorities[0].Equal(orgRoot.cert) {
		t.Fatalf("bundle anchors are not the organisation root")
	}
	xa := in.ca.X509Authority()
	if len(xa.UpstreamChain) != 2 || !xa.UpstreamChain[0].Equal(signetCA.cert) || !xa.UpstreamChain[1].Equal(orgIssuing.cert) {
		t.Errorf("upstream chain is not [signet CA, org issuing CA]")
	}
	svid := mint(t, in.ca)
	if len(svid.Chain) != 4 {
		t.Errorf("chain has %d certificates, want leaf, intermediate, signet CA, issuing CA", len(svid.Chain))
	}
	if err := verifyAt(svid.Chain, b, e.clock.Now()); err != nil {
		t.Errorf("SVID does not chain to the organisation root: %v", err)
	}
}

func TestImportErrors(t *testing.T) {
	t.Parallel()
	now := time.Now()
	root := newOrgCert(t, "Root", nil, now, nil)
	other := newOrgCert(t, "Other Root", nil, now, nil)
	sub := newOrgCert(t, "Sub", root, now, nil)
	leaf := newOrgCert(t, "Leaf", root, now, func(c *x509.Certificate) { c.IsCA = false; c.KeyUsage = x509.KeyUsageDigitalSignature })
	expired := newOrgCert(t, "Old", nil, now, func(c *x509.Certificate) { c.NotAfter = now.Add(-time.Minute) })
	noRoom := newOrgCert(t, "Tight", root, now, func(c *x509.Certificate) { c.MaxPathLen, c.MaxPathLenZero = 0, true })
	dir := t.TempDir()
	pass := []byte("pw")

	tests := []struct {
		name         string
		intermediate bool
		imp          rotation.Import
		wantErr      string
	}{
		{"key does not match", false, rotation.Import{CertFile: writeCerts(t, dir, "r1.pem", root.cert), KeyFile: writeKey(t, dir, "o1.key", other.key, nil)}, "does not match"},
		{"not a CA", true, rotation.Import{CertFile: writeCerts(t, dir, "l.pem", leaf.cert), ChainFile: writeCerts(t, dir, "c1.pem", root.cert), KeyFile: writeKey(t, dir, "l.key", leaf.key, nil)}, "not a CA"},
		{"root not self-signed", false, rotation.Import{CertFile: writeCerts(t, dir, "s1.pem", sub.cert), KeyFile: writeKey(t, dir, "s1.key", sub.key, nil)}, "not self-signed"},
		{"intermediate self-signed", true, rotation.Import{CertFile: writeCerts(t, dir, "r2.pem", root.cert), KeyFile: writeKey(t, dir, "r2.key", root.key, nil)}, "import it as a root"},
		{"chain misses the anchor", true, rotation.Import{CertFile: writeCerts(t, dir, "s2.pem", sub.cert), ChainFile: writeCerts(t, dir, "c2.pem", other.cert), KeyFile: writeKey(t, dir, "s2.key", sub.key, nil)}, "does not chain"},
		{"expired", false, rotation.Import{CertFile: writeCerts(t, dir, "e.pem", expired.cert), KeyFile: writeKey(t, dir, "e.key", expired.key, nil)}, "not valid now"},
		{"path length 0", true, rotation.Import{CertFile: writeCerts(t, dir, "t.pem", noRoom.cert), ChainFile: writeCerts(t, dir, "c3.pem", root.cert), KeyFile: writeKey(t, dir, "t.key", noRoom.key, nil)}, "path length"},
		{"encrypted key without passphrase", false, rotation.Import{CertFile: writeCerts(t, dir, "r3.pem", root.cert), KeyFile: writeKey(t, dir, "r3.key", root.key, pass)}, "no passphrase"},
		{"wrong passphrase", false, rotation.Import{CertFile: writeCerts(t, dir, "r4.pem", root.cert), KeyFile: writeKey(t, dir, "r4.key", root.key, pass), KeyPassphrase: []byte("nope")}, "invalid import"},
		{"missing cert file", false, rotation.Import{CertFile: filepath.Join(dir, "missing.pem"), KeyFile: writeKey(t, dir, "r5.key", root.key, nil)}, "reading"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			cfg := rotation.Config{ImportRoot: &tt.imp}
			if tt.intermediate {
				cfg = rotation.Config{ImportIntermediate: &tt.imp}
			}
			err := e.initErr(t, cfg)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Init err = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func mustParse(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func countKind(auths []*store.Authority, kind store.AuthorityKind) int {
	n := 0
	for _, a := range auths {
		if a.Kind == kind {
			n++
		}
	}
	return n
}
