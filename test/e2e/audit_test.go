package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAuditCLI: the audit trail of a real server exports, verifies offline
// against the PEM bundle and live, and a tampered copy fails naming the
// first bad record.
func TestAuditCLI(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	s.cli(t, "token", "create", "--node-name", "audited")
	s.cli(t, "token", "create", "--node-name", "audited2")

	dir := t.TempDir()
	exp := filepath.Join(dir, "audit.jsonl")
	s.cli(t, "audit", "export", "--out", exp)
	bundle := s.bundleFile(t)
	if out := s.cli(t, "audit", "verify", "--file", exp, "--bundle", bundle); !strings.HasPrefix(out, "OK:") {
		t.Fatalf("verify of an untouched export: %q", out)
	}
	if out := s.cli(t, "audit", "verify"); !strings.HasPrefix(out, "OK:") {
		t.Fatalf("live verify: %q", out)
	}
	csv := s.cli(t, "audit", "export", "--format", "csv", "--type", "token.created")
	if lines := strings.Split(strings.TrimSpace(csv), "\n"); len(lines) != 4 || !strings.HasPrefix(lines[0], "seq,time,type") {
		t.Errorf("csv export of token.created: %d lines (want header, 2 records and the checkpoint):\n%s", len(lines), csv)
	}

	data, err := os.ReadFile(exp)
	if err != nil {
		t.Fatal(err)
	}
	tampered := filepath.Join(dir, "tampered.jsonl")
	os.WriteFile(tampered, []byte(strings.Replace(string(data), "audited2", "auditedX", 1)), 0o600)
	r := s.run(t, "audit", "verify", "--file", tampered, "--bundle", bundle)
	if r.code != 1 || !strings.Contains(r.stderr, "record seq 2") {
		t.Errorf("verify of an edited export: exit %d, stderr %q; want exit 1 naming seq 2", r.code, r.stderr)
	}
	if r := s.run(t, "audit", "verify", "--file", exp); r.code != 1 || !strings.Contains(r.stderr, "--bundle") {
		t.Errorf("verify without a bundle: exit %d, stderr %q", r.code, r.stderr)
	}
}
