package nodesvid

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

var nodeID = spiffeid.RequireFromString("spiffe://example.org/signet/agent/join_token/node1")

func testSVID(t *testing.T) *x509svid.SVID {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(nodeID.String())
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), URIs: []*url.URL{u}, NotBefore: now, NotAfter: now.Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &x509svid.SVID{ID: nodeID, Certificates: []*x509.Certificate{cert}, PrivateKey: key}
}

func TestNodeSVIDFile(t *testing.T) {
	dir := t.TempDir()
	svid := testSVID(t)
	if _, err := loadNodeSVID(dir, []byte("pass")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("load from an empty dir = %v, want os.ErrNotExist", err)
	}
	if err := saveNodeSVID(dir, []byte("pass"), 0, svid); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, NodeSVIDFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("node SVID file %v, %v; want mode 0600", fi, err)
	}
	data, _ := os.ReadFile(filepath.Join(dir, NodeSVIDFile))
	if !strings.Contains(string(data), "ENCRYPTED PRIVATE KEY") || strings.Contains(string(data), "BEGIN PRIVATE KEY") {
		t.Fatal("the node key is not encrypted at rest")
	}
	got, err := loadNodeSVID(dir, []byte("pass"))
	if err != nil || got.ID != nodeID || !got.Certificates[0].Equal(svid.Certificates[0]) {
		t.Fatalf("load = %v, %v; want the saved SVID", got, err)
	}
	if _, err := loadNodeSVID(dir, []byte("wrong")); err == nil || !strings.Contains(err.Error(), "wrong passphrase") {
		t.Errorf("load with a wrong passphrase = %v, want a passphrase error", err)
	}
	if err := os.WriteFile(filepath.Join(dir, NodeSVIDFile), []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadNodeSVID(dir, []byte("pass")); err == nil || !strings.Contains(err.Error(), "incomplete") {
		t.Errorf("load of a junk file = %v, want an incomplete error", err)
	}
}

func TestTokenOrigin(t *testing.T) {
	tests := []struct {
		name       string
		recorded   string // "" for no hash file
		configured string
		wantSame   bool
		wantKnown  bool
	}{
		{name: "no hash recorded", configured: "tok-a"},
		{name: "same token", recorded: "tok-a", configured: "tok-a", wantSame: true, wantKnown: true},
		{name: "new token", recorded: "tok-a", configured: "tok-b", wantKnown: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.recorded != "" {
				if err := saveTokenHash(dir, tt.recorded); err != nil {
					t.Fatal(err)
				}
				data, _ := os.ReadFile(filepath.Join(dir, JoinTokenHashFile))
				if strings.Contains(string(data), tt.recorded) {
					t.Fatal("the join token itself is stored")
				}
			}
			same, known, err := tokenOrigin(dir, tt.configured)
			if err != nil || same != tt.wantSame || known != tt.wantKnown {
				t.Errorf("tokenOrigin = %v, %v, %v; want %v, %v, nil", same, known, err, tt.wantSame, tt.wantKnown)
			}
		})
	}
}

// TestSetAside: a rejected identity moves aside with its token hash, and
// is never loaded again; its SPIFFE ID can still be read for the message.
func TestSetAside(t *testing.T) {
	dir := t.TempDir()
	if err := saveNodeSVID(dir, []byte("pass"), testKDFIterations, testSVID(t)); err != nil {
		t.Fatal(err)
	}
	if err := saveTokenHash(dir, "tok"); err != nil {
		t.Fatal(err)
	}
	if err := setAside(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := loadNodeSVID(dir, []byte("pass")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("load after setAside = %v, want os.ErrNotExist", err)
	}
	if _, known, _ := tokenOrigin(dir, "tok"); known {
		t.Error("the token hash of the rejected identity is still recorded")
	}
	n := New(Config{DataDir: dir, KeyPassphrase: []byte("pass"), KeyKDFIterations: testKDFIterations})
	if id, ok := n.rejectedID(); !ok || id != nodeID {
		t.Errorf("rejectedID = %v, %v; want %v", id, ok, nodeID)
	}
	if err := setAside(dir); err != nil {
		t.Errorf("setAside with nothing to move: %v", err)
	}
}

func TestWhatToDo(t *testing.T) {
	if got := whatToDo(nodeID); !strings.Contains(got, "signet token create --node-name node1") {
		t.Errorf("whatToDo(%s) = %q, want the token command for node1", nodeID, got)
	}
	other := spiffeid.RequireFromString("spiffe://example.org/signet/agent/k8s_psat/c1/uid")
	if got := whatToDo(other); strings.Contains(got, "--node-name") || !strings.Contains(got, "restart the agent pod") {
		t.Errorf("whatToDo(%s) = %q, want no node name and a pod restart (k8s_psat attests again by itself)", other, got)
	}
}

// TestMemoryOnly: with MemoryOnly nothing is read from or written to the
// node SVID file, whatever the data dir holds.
func TestMemoryOnly(t *testing.T) {
	dir := t.TempDir()
	n := New(Config{DataDir: dir, KeyPassphrase: []byte("pass"), KeyKDFIterations: testKDFIterations, MemoryOnly: true})
	if err := n.save(dir, testSVID(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, NodeSVIDFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("node SVID file after a memory-only save: %v, want none", err)
	}
	if err := saveNodeSVID(dir, []byte("pass"), testKDFIterations, testSVID(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := n.load(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("memory-only load of a stored identity = %v, want os.ErrNotExist", err)
	}
	stored := New(Config{DataDir: dir, KeyPassphrase: []byte("pass"), KeyKDFIterations: testKDFIterations})
	if _, err := stored.load(dir); err != nil {
		t.Fatalf("a real agent's load = %v", err)
	}
}

// TestSaveBundleWritesChangesOnly: SetBundle writes nothing; SaveBundle
// rewrites bundle.pem with the last bundle set when its roots changed,
// and leaves it alone when the CA sent the roots it already holds (on
// every reconnect), including after a restart that read it.
func TestSaveBundleWritesChangesOnly(t *testing.T) {
	dir := t.TempDir()
	td := nodeID.TrustDomain()
	rootA, rootB := testSVID(t).Certificates[0], testSVID(t).Certificates[0]
	if err := saveNodeSVID(dir, []byte("pass"), testKDFIterations, testSVID(t)); err != nil {
		t.Fatal(err)
	}
	if err := saveBundle(dir, []*x509.Certificate{rootA}); err != nil {
		t.Fatal(err)
	}
	n := New(Config{TrustDomain: td, DataDir: dir, KeyPassphrase: []byte("pass"), KeyKDFIterations: testKDFIterations})
	if _, err := n.Obtain(context.Background()); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, BundleFile)
	stat := func() os.FileInfo {
		t.Helper()
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi
	}
	steps := []struct {
		name      string
		roots     []*x509.Certificate
		rewritten bool
	}{
		{name: "the stored roots again (a reconnect after a restart)", roots: []*x509.Certificate{rootA}},
		{name: "a new root", roots: []*x509.Certificate{rootA, rootB}, rewritten: true},
		{name: "the same roots again", roots: []*x509.Certificate{rootA, rootB}},
		{name: "a root removed", roots: []*x509.Certificate{rootB}, rewritten: true},
	}
	for _, s := range steps {
		before := stat()
		n.SetBundle(x509bundle.FromX509Authorities(td, s.roots))
		if !os.SameFile(before, stat()) {
			t.Errorf("%s: SetBundle rewrote the bundle file", s.name)
		}
		if err := n.SaveBundle(); err != nil {
			t.Fatalf("%s: SaveBundle: %v", s.name, err)
		}
		if rewritten := !os.SameFile(before, stat()); rewritten != s.rewritten {
			t.Errorf("%s: bundle file rewritten = %v, want %v", s.name, rewritten, s.rewritten)
		}
		stored, err := LoadBundleFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.EqualFunc(stored, s.roots, (*x509.Certificate).Equal) {
			t.Errorf("%s: bundle file holds %d roots, not the ones set (%d)", s.name, len(stored), len(s.roots))
		}
	}
}

// testKDFIterations is the PBKDF2 iteration count of the node keys these
// tests store: the default (600,000) is most of a second of CPU per save
// under the race detector. One test above saves at the default.
const testKDFIterations = 1000
