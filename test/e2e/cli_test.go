package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/signet-mesh/signet/internal/testdir"
)

// The CLI as a user meets it (issue #12): help on stdout with exit 0,
// version, one-line errors, boolean flags that take no value, the sockets
// found through SIGNET_ADMIN_SOCKET and SPIFFE_ENDPOINT_SOCKET, and a
// server that will not start without a data directory.

// TestCLIHelpAndVersion needs no server.
func TestCLIHelpAndVersion(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"-h"}, {"--help"}, {"help", "entry"}, {"entry", "create", "-h"}, {"server", "--help"}} {
		r := runCLI(t, nil, args...)
		if r.code != 0 || r.stderr != "" || !strings.Contains(r.stdout, "Usage:") || !strings.Contains(r.stdout, "Examples:") {
			t.Errorf("signet %s: exit %d, stderr %q, stdout:\n%s\nwant help on stdout, exit 0", strings.Join(args, " "), r.code, r.stderr, r.stdout)
		}
	}
	if r := runCLI(t, nil, "help", "entry"); !strings.Contains(r.stdout, "signet entry [command]") || !strings.Contains(r.stdout, "update") {
		t.Errorf("signet help entry does not show entry's help:\n%s", r.stdout)
	}
	for _, args := range [][]string{{"version"}, {"--version"}} {
		r := runCLI(t, nil, args...)
		if r.code != 0 || !strings.HasPrefix(r.stdout, "signet ") || !strings.Contains(r.stdout, "\ncommit ") || !strings.Contains(r.stdout, "\ngo     "+runtime.Version()+"\n") {
			t.Errorf("signet %s: exit %d, stdout %q", strings.Join(args, " "), r.code, r.stdout)
		}
	}
	if r := runCLI(t, nil, "completion", "bash"); r.code != 0 || !strings.Contains(r.stdout, "__start_signet") {
		t.Errorf("completion bash: exit %d, %d bytes", r.code, len(r.stdout))
	}
	// A mistake: exit 1, one line on stderr naming it, nothing on stdout.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"entyr", "list"}, `did you mean "entry"?`},
		{[]string{"entry", "list", "--bogus"}, "unknown flag: --bogus"},
		{[]string{"entry", "show"}, "expected 1 argument(s): ID; got 0"},
		{[]string{"token", "create", "--ttl", "0"}, "--ttl 0s: must be positive"},
	} {
		r := runCLI(t, []string{"SIGNET_ADMIN_SOCKET=/nonexistent/admin.sock"}, tc.args...)
		if r.code != 1 || r.stdout != "" || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("signet %s: exit %d, stdout %q, stderr %q; want exit 1 and one line with %q", strings.Join(tc.args, " "), r.code, r.stdout, r.stderr, tc.want)
		}
	}
}

// TestCLIServerNeedsDataDir: no default data directory for a server.
func TestCLIServerNeedsDataDir(t *testing.T) {
	t.Parallel()
	dir := testdir.Short(t)
	cmd := []string{"server", "--listen", freeAddr(t), "--admin-socket", filepath.Join(dir, "admin.sock")}
	r := runCLI(t, []string{"SIGNET_KEY_PASSPHRASE=x", "SIGNET_DATA_DIR="}, cmd...)
	if r.code != 1 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, "give --data-dir DIR") {
		t.Errorf("server without --data-dir: exit %d, stderr %q", r.code, r.stderr)
	}
	if _, err := os.Stat("signet-data"); err == nil {
		t.Error("the server created ./signet-data")
	}
}

// TestCLIFlagsAndSockets runs a server and an agent: bare boolean flags,
// healthcheck through SIGNET_ADMIN_SOCKET and SPIFFE_ENDPOINT_SOCKET, and
// workload fetch through SPIFFE_ENDPOINT_SOCKET.
func TestCLIFlagsAndSockets(t *testing.T) {
	t.Parallel()
	s := startServer(t)

	// healthcheck finds the CA through SIGNET_ADMIN_SOCKET (s.env).
	if r := runCLI(t, append(s.env, "SPIFFE_ENDPOINT_SOCKET="), "healthcheck"); r.code != 0 || strings.TrimSpace(r.stdout) != "ready" {
		t.Errorf("SIGNET_ADMIN_SOCKET=... signet healthcheck: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}

	// Bare booleans, before and after other arguments.
	var tok struct {
		Token    string `json:"token"`
		SPIFFEID string `json:"spiffe_id"`
	}
	out := s.cli(t, "token", "create", "--node-name", "flags", "--force", "-o", "json")
	if err := json.Unmarshal([]byte(out), &tok); err != nil || tok.SPIFFEID != "spiffe://example.org/signet/agent/join_token/flags" {
		t.Fatalf("token create --force: %v\n%s", err, out)
	}
	if r := s.run(t, "svid", "list", "--valid", "-o", "csv"); r.code != 0 || !strings.HasPrefix(r.stdout, "serial,spiffe_id,") {
		t.Errorf("svid list --valid -o csv: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	s.cli(t, "mtls", "set", "--mode", "STRICT", "--shadow", "--force", "--spiffe-id", "spiffe://example.org/flags")
	var policies []struct {
		SPIFFEID string `json:"spiffe_id"`
		DryRun   bool   `json:"dry_run"`
	}
	if err := json.Unmarshal([]byte(s.cli(t, "mtls", "list", "-o", "json")), &policies); err != nil || len(policies) != 1 || !policies[0].DryRun {
		t.Errorf("mtls set --shadow --force: policies %+v, %v", policies, err)
	}
	cfg := filepath.Join(t.TempDir(), "agent.yaml")
	os.WriteFile(cfg, []byte("server_address: "+s.addr+"\ndata_dir: "+t.TempDir()+"\n"), 0o600)
	if r := runCLI(t, s.env, "agent", "--config", cfg, "--insecure-bootstrap", "--check-config"); r.code != 0 || !strings.Contains(r.stdout, "configuration is valid") {
		t.Errorf("agent --insecure-bootstrap --check-config: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}

	// An agent and an entry for this process.
	a := startAgent(t, s, "sockets")
	id := "spiffe://example.org/cli/sockets"
	a.entryFor(t, id)
	endpoint := []string{"SPIFFE_ENDPOINT_SOCKET=unix://" + a.socket, "SIGNET_ADMIN_SOCKET="}

	// healthcheck finds the agent through SPIFFE_ENDPOINT_SOCKET.
	waitFor(t, 30*time.Second, "SPIFFE_ENDPOINT_SOCKET=... signet healthcheck to pass", func() bool {
		return runCLI(t, endpoint, "healthcheck").code == 0
	})
	// Both variables set: which one is meant is not guessed.
	if r := runCLI(t, append(s.env, "SPIFFE_ENDPOINT_SOCKET=unix://"+a.socket), "healthcheck"); r.code != 1 || !strings.Contains(r.stderr, "both SIGNET_ADMIN_SOCKET and SPIFFE_ENDPOINT_SOCKET are set") {
		t.Errorf("healthcheck with both variables: exit %d, stderr %q", r.code, r.stderr)
	}

	// workload fetch finds the agent through SPIFFE_ENDPOINT_SOCKET.
	var svids []struct {
		SPIFFEID string `json:"spiffe_id"`
	}
	waitFor(t, 30*time.Second, "workload fetch through SPIFFE_ENDPOINT_SOCKET", func() bool {
		r := runCLI(t, endpoint, "workload", "fetch", "-o", "json", "--timeout", "5s")
		return r.code == 0 && json.Unmarshal([]byte(r.stdout), &svids) == nil && len(svids) == 1 && svids[0].SPIFFEID == id
	})
	// A malformed variable is a clear error, not a wait.
	if r := runCLI(t, []string{"SPIFFE_ENDPOINT_SOCKET=tcp://127.0.0.1:1"}, "workload", "fetch"); r.code != 1 || !strings.Contains(r.stderr, "SPIFFE_ENDPOINT_SOCKET") || !strings.Contains(r.stderr, "Unix socket only") {
		t.Errorf("workload fetch with a tcp:// endpoint: exit %d, stderr %q", r.code, r.stderr)
	}
}
