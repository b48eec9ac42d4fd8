package e2e

import (
	"encoding/binary"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

// Issue 12 through the CLI commands that exist today (the lead adds the
// new commands' tests once the cobra CLI lands).

// TestTokenForLiveNodeRefusedCLI: `signet token create --node-name X` for
// the name of a live agent exits 1 naming the node and both ways out; once
// the node is evicted, the same command works.
func TestTokenForLiveNodeRefusedCLI(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	a := startAgent(t, s, "web-1")
	waitFor(t, 30*time.Second, "the agent to attest", func() bool {
		var nodes []struct {
			SPIFFEID string `json:"spiffe_id"`
		}
		_ = json.Unmarshal([]byte(s.cli(t, "node", "list", "-o", "json")), &nodes)
		return len(nodes) == 1 && nodes[0].SPIFFEID == a.nodeID
	})

	r := s.run(t, "token", "create", "--node-name", "web-1")
	if r.code != 1 {
		t.Fatalf("token create for a live node: exit %d, want 1\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{a.nodeID, "signet node evict " + a.nodeID, "--force"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr %q does not name %q", r.stderr, want)
		}
	}
	if r.stdout != "" {
		t.Errorf("a refused token create printed %q", r.stdout)
	}

	s.cli(t, "node", "evict", a.nodeID)
	if out := s.cli(t, "token", "create", "--node-name", "web-1"); strings.TrimSpace(out) == "" {
		t.Error("token create after the eviction printed no token")
	}
}

// TestAuditChainBrokenCLI: a server started on a store whose audit log
// lost a record logs an ERROR naming it, and `signet audit verify` (live)
// names the missing seq instead of reporting an internal error; an export
// of an unknown record type is refused listing the types.
func TestAuditChainBrokenCLI(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	for _, name := range []string{"a", "b", "c"} {
		s.cli(t, "token", "create", "--node-name", name)
	}
	r := s.run(t, "audit", "export", "--type", "token.create")
	if r.code != 1 || !strings.Contains(r.stderr, `--type "token.create": not a record type`) || !strings.Contains(r.stderr, "token.created") {
		t.Errorf("export of an unknown type: exit %d, stderr %q; want 1 naming it and listing the types", r.code, r.stderr)
	}
	s.stop()

	// Record 2 (a token creation) disappears from the file.
	db, err := bbolt.Open(filepath.Join(s.dir, "data", "signet.db"), 0o600, &bbolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket([]byte("audit")).Delete(binary.BigEndian.AppendUint64(nil, 2))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}

	s.restart(t)
	waitFor(t, 10*time.Second, "the server to log the broken chain", func() bool {
		return strings.Contains(s.out.String(), "audit chain is broken")
	})
	var line string
	for _, l := range strings.Split(s.out.String(), "\n") {
		if strings.Contains(l, "audit chain is broken") {
			line = l
		}
	}
	if !strings.Contains(line, "ERROR") || !strings.Contains(line, "seq=2") {
		t.Errorf("broken chain log line %q, want an ERROR naming seq 2", line)
	}

	r = s.run(t, "audit", "verify")
	if r.code == 0 || !strings.Contains(r.stderr, "record seq 2 is missing") || strings.Contains(r.stderr, "internal error") {
		t.Errorf("live verify of a log without record 2: exit %d, stderr %q; want a failure naming seq 2", r.code, r.stderr)
	}
}
