package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestServerCLI drives a real `signet server` through the CLI: tokens,
// entries (one and from a file), validation errors that change nothing,
// lists in JSON, the bundle, flags after positional arguments, and a
// restart that keeps every record.
func TestServerCLI(t *testing.T) {
	t.Parallel()
	s := startServer(t)

	// token create -o json prints the contract shape.
	var tok struct {
		Token     string `json:"token"`
		SPIFFEID  string `json:"spiffe_id"`
		ExpiresAt string `json:"expires_at"`
	}
	if err := json.Unmarshal([]byte(s.cli(t, "token", "create", "--ttl", "10m", "--node-name", "node1", "-o", "json")), &tok); err != nil {
		t.Fatal(err)
	}
	if tok.Token == "" || tok.SPIFFEID != "spiffe://example.org/signet/agent/join_token/node1" {
		t.Fatalf("token create -o json = %+v", tok)
	}
	if exp, err := time.Parse(time.RFC3339, tok.ExpiresAt); err != nil || time.Until(exp) < 9*time.Minute || time.Until(exp) > 11*time.Minute {
		t.Errorf("expires_at %q is not about 10 minutes from now (%v)", tok.ExpiresAt, err)
	}
	parent := tok.SPIFFEID

	// entry create prints the id and nothing else.
	out := s.cli(t, "entry", "create", "--spiffe-id", "spiffe://example.org/web", "--parent-id", parent,
		"--selector", "unix:uid:1000", "--x509-ttl", "30m", "--dns", "web.internal")
	id := strings.TrimSpace(out)
	if id == "" || strings.ContainsAny(id, " \n\t") {
		t.Fatalf("entry create printed %q, want only an id", out)
	}

	// Flags after the positional argument.
	var shown map[string]any
	if err := json.Unmarshal([]byte(s.cli(t, "entry", "show", id, "-o", "json")), &shown); err != nil {
		t.Fatal(err)
	}
	if shown["spiffe_id"] != "spiffe://example.org/web" || shown["x509_ttl"] != "30m0s" {
		t.Errorf("entry show = %v", shown)
	}

	// Bad input: a clear error, exit 1, and nothing stored.
	bad := []struct {
		name string
		args []string
		want string
	}{
		{"malformed id", []string{"--spiffe-id", "not-a-spiffe-id"}, "must start with spiffe://"},
		{"foreign trust domain", []string{"--spiffe-id", "spiffe://other.org/web"}, "not this server's trust domain"},
		{"dot segment", []string{"--spiffe-id", "spiffe://example.org/a/../b"}, "dot segment"},
		{"empty segment", []string{"--spiffe-id", "spiffe://example.org/a//b"}, "empty segment"},
		{"percent encoding", []string{"--spiffe-id", "spiffe://example.org/a%2Fb"}, "percent-encoding"},
		{"root path", []string{"--spiffe-id", "spiffe://example.org"}, "needs a path"},
		{"ttl above max", []string{"--spiffe-id", "spiffe://example.org/x", "--x509-ttl", "9000h"}, "above the maximum"},
		{"unknown selector", []string{"--spiffe-id", "spiffe://example.org/x", "--selector", "docker:label:app"}, "unknown selector type"},
		{"duplicate", []string{"--spiffe-id", "spiffe://example.org/web"}, "already exists"},
		{"missing parent", []string{"--spiffe-id", "spiffe://example.org/x", "--parent-id", "spiffe://example.org/signet/agent/join_token/nope"}, "no such agent"},
	}
	for _, tt := range bad {
		args := []string{"entry", "create"}
		args = append(args, tt.args...)
		if !contains(tt.args, "--parent-id") {
			args = append(args, "--parent-id", parent)
		}
		if !contains(tt.args, "--selector") {
			args = append(args, "--selector", "unix:uid:1000")
		}
		r := s.run(t, args...)
		if r.code != 1 || !strings.Contains(r.stderr, tt.want) || r.stdout != "" {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 1 and stderr containing %q", tt.name, r.code, r.stdout, r.stderr, tt.want)
		}
	}

	// A file with one bad entry creates nothing; a good file creates all.
	dir := t.TempDir()
	badFile := filepath.Join(dir, "bad.yaml")
	os.WriteFile(badFile, []byte(`
- spiffe_id: spiffe://example.org/a
  parent_id: `+parent+`
  selectors: [unix:uid:1]
- spiffe_id: spiffe://example.org/b
  parent_id: `+parent+`
  selectors: [unix:uid:2]
  x509_ttl: 2h
  colour: blue
`), 0o644)
	if r := s.run(t, "entry", "create", "--file", badFile); r.code != 1 || !strings.Contains(r.stderr, `unknown field "colour"`) {
		t.Errorf("bad file: exit %d stderr %q", r.code, r.stderr)
	}
	badFile2 := filepath.Join(dir, "bad2.yaml")
	os.WriteFile(badFile2, []byte(`
- spiffe_id: spiffe://example.org/a
  parent_id: `+parent+`
  selectors: [unix:uid:1]
- spiffe_id: spiffe://example.org/b/../c
  parent_id: `+parent+`
  selectors: [unix:uid:2]
`), 0o644)
	if r := s.run(t, "entry", "create", "--file", badFile2); r.code != 1 || !strings.Contains(r.stderr, "entry 2") {
		t.Errorf("bad file 2: exit %d stderr %q", r.code, r.stderr)
	}
	if n := len(listEntries(t, s)); n != 1 {
		t.Fatalf("after rejected input: %d entries, want 1", n)
	}
	goodFile := filepath.Join(dir, "good.json")
	os.WriteFile(goodFile, []byte(`[{"spiffe_id":"spiffe://example.org/a","parent_id":"`+parent+`","selectors":["unix:uid:1"],"x509_ttl":"2h","dns_names":["a.internal"]},
{"spiffe_id":"spiffe://example.org/b","parent_id":"`+parent+`","selectors":["unix:uid:2","unix:gid:2"]}]`), 0o644)
	// --admin-socket after the subcommand name, before the flags.
	if ids := strings.Fields(s.cli(t, "entry", "create", "--admin-socket", s.admin, "--file", goodFile)); len(ids) != 2 {
		t.Errorf("entry create --file printed %d ids, want 2", len(ids))
	}
	if n := len(listEntries(t, s)); n != 3 {
		t.Fatalf("after file: %d entries, want 3", n)
	}

	// delete, then show is NotFound with exit 1.
	s.cli(t, "entry", "delete", id)
	if r := s.run(t, "entry", "show", id); r.code != 1 || !strings.Contains(r.stderr, "not found") {
		t.Errorf("show deleted entry: exit %d stderr %q", r.code, r.stderr)
	}

	// Lists print JSON arrays, even when empty.
	for _, args := range [][]string{{"node", "list", "-o", "json"}, {"svid", "list", "-o", "json"}, {"entry", "list", "-o", "json"}} {
		var arr []json.RawMessage
		if err := json.Unmarshal([]byte(s.cli(t, args...)), &arr); err != nil {
			t.Errorf("%v: not a JSON array: %v", args, err)
		}
	}

	// bundle show: PEM root that is a CA for the trust domain.
	roots := parsePEMCerts(t, s.cli(t, "bundle", "show"))
	if len(roots) != 1 || !roots[0].IsCA || roots[0].URIs[0].String() != "spiffe://example.org" {
		t.Fatalf("bundle show: %d roots, first %+v", len(roots), roots)
	}
	var jwks struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal([]byte(s.cli(t, "bundle", "show", "--format", "spiffe")), &jwks); err != nil || len(jwks.Keys) < 2 {
		t.Errorf("bundle show --format spiffe: %v, %d keys", err, len(jwks.Keys))
	}

	// A restart keeps the CA's root and every entry.
	s.stop()
	s.restart(t)
	if again := parsePEMCerts(t, s.cli(t, "bundle", "show")); !again[0].Equal(roots[0]) {
		t.Error("root changed across a restart")
	}
	if n := len(listEntries(t, s)); n != 2 {
		t.Errorf("after restart: %d entries, want 2", n)
	}
}

// TestServerConfig checks that a config file is validated and a bad key is
// named.
func TestServerConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "server.yaml")
	os.WriteFile(cfg, []byte("trust_domain: example.org\ndata_dir: "+dir+"\nlisten: 127.0.0.1:0\nlisen_typo: x\n"), 0o644)
	r := runCLI(t, []string{"SIGNET_KEY_PASSPHRASE=x"}, "server", "--config", cfg, "--check-config")
	if r.code != 1 || !strings.Contains(r.stderr, "lisen_typo") {
		t.Errorf("unknown key: exit %d stderr %q", r.code, r.stderr)
	}
	os.WriteFile(cfg, []byte("trust_domain: Bad_Domain\ndata_dir: "+dir+"\n"), 0o644)
	if r := runCLI(t, []string{"SIGNET_KEY_PASSPHRASE=x"}, "server", "--config", cfg, "--check-config"); r.code != 1 || !strings.Contains(r.stderr, "trust_domain") {
		t.Errorf("bad trust domain: exit %d stderr %q", r.code, r.stderr)
	}
	os.WriteFile(cfg, []byte("trust_domain: example.org\ndata_dir: "+dir+"\n"), 0o644)
	if r := runCLI(t, []string{"SIGNET_KEY_PASSPHRASE=x"}, "server", "--config", cfg, "--check-config"); r.code != 0 {
		t.Errorf("valid config: exit %d stderr %q", r.code, r.stderr)
	}
	if r := runCLI(t, []string{"SIGNET_KEY_PASSPHRASE="}, "server", "--config", cfg, "--check-config"); r.code != 1 || !strings.Contains(r.stderr, "passphrase") {
		t.Errorf("no passphrase: exit %d stderr %q", r.code, r.stderr)
	}
}

func listEntries(t *testing.T, s *testServer) []map[string]any {
	t.Helper()
	var out []map[string]any
	if err := json.Unmarshal([]byte(s.cli(t, "entry", "list", "-o", "json")), &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func parsePEMCerts(t testing.TB, s string) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	rest := []byte(s)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return out
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// TestServerImportRoot: an organisation's own root, imported on first
// start, is the bundle, and the server keeps using it after a restart.
func TestServerImportRoot(t *testing.T) {
	t.Parallel()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(42),
		Subject:               pkix.Name{Organization: []string{"Example Corp"}, CommonName: "Example Corp Root"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(2 * 365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		URIs:                  []*url.URL{{Scheme: "spiffe", Host: "example.org"}},
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
	certFile, keyFile := filepath.Join(dir, "root.pem"), filepath.Join(dir, "root.key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)

	s := startServer(t, "--import-root-cert", certFile, "--import-root-key", keyFile)
	roots := parsePEMCerts(t, s.cli(t, "bundle", "show"))
	if len(roots) != 1 || roots[0].SerialNumber.Int64() != 42 {
		t.Fatalf("bundle after import: %v", roots)
	}
	s.stop()
	s.restart(t)
	if again := parsePEMCerts(t, s.cli(t, "bundle", "show")); len(again) != 1 || !again[0].Equal(roots[0]) {
		t.Fatal("imported root not kept across a restart")
	}
}
