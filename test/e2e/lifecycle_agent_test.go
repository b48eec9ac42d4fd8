package e2e

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/signet-mesh/signet/internal/testdir"
)

// End-to-end tests of the node identity's lifecycle and of the agent's
// socket (issue #12), through real processes and the CLI.

// newToken creates a join token for nodeName with the CLI.
func newToken(t *testing.T, s *testServer, nodeName string) string {
	t.Helper()
	var tok struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal([]byte(s.cli(t, "token", "create", "--node-name", nodeName, "-o", "json")), &tok); err != nil {
		t.Fatal(err)
	}
	return tok.Token
}

// healthcheck runs `signet healthcheck --socket` against a.
func healthcheck(t *testing.T, a *testAgent) result {
	t.Helper()
	return runCLI(t, nil, "healthcheck", "--socket", a.socket, "--timeout", "5s")
}

// logLines returns the lines of p's output that contain all of subs.
func logLines(p *proc, subs ...string) []string {
	var out []string
	for _, l := range strings.Split(p.out.String(), "\n") {
		ok := true
		for _, s := range subs {
			ok = ok && strings.Contains(l, s)
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}

// TestEvictedAgentSaysSo: an agent whose node is evicted while it runs
// says so in one ERROR line with what to do, stops retrying, reports not
// ready, and keeps serving its cached SVIDs.
func TestEvictedAgentSaysSo(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	a := startAgent(t, s, "evicted")
	a.entryFor(t, "spiffe://example.org/evicted/web")
	fetchUntil(t, a, 30*time.Second, hasOnly("spiffe://example.org/evicted/web"))
	waitFor(t, 30*time.Second, "agent ready", func() bool { return healthcheck(t, a).code == 0 })

	s.cli(t, "node", "evict", a.nodeID)
	waitFor(t, 30*time.Second, "the agent's ERROR line", func() bool { return len(logLines(a.proc, "level=ERROR")) > 0 })
	errs := logLines(a.proc, "level=ERROR")
	if len(errs) != 1 || !strings.Contains(errs[0], "node identity "+a.nodeID) || !strings.Contains(errs[0], "signet token create --node-name evicted") || !strings.Contains(errs[0], "--join-token") {
		t.Fatalf("ERROR lines after eviction: %q; want one naming the node and saying to create a token and restart with --join-token", errs)
	}
	waitFor(t, 10*time.Second, "healthcheck to say not ready", func() bool {
		r := healthcheck(t, a)
		return r.code != 0 && strings.Contains(r.stderr, "not ready")
	})

	// No retry loop: nothing retries, however long it waits (the default
	// backoff would have retried several times in this window).
	retries := len(logLines(a.proc, "retrying"))
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		x := fetchUntil(t, a, 5*time.Second, func(x *workloadapi.X509Context) bool { return len(x.SVIDs) == 1 })
		if time.Now().After(x.SVIDs[0].Certificates[0].NotAfter) {
			t.Fatal("served an expired SVID")
		}
	}
	if n := len(logLines(a.proc, "retrying")); n != retries {
		t.Errorf("%d retry lines after the rejection: %q", n-retries, logLines(a.proc, "retrying")[retries:])
	}
	if n := len(logLines(a.proc, "level=ERROR")); n != 1 {
		t.Errorf("%d ERROR lines, want 1", n)
	}
	if a.exited() {
		t.Fatalf("the agent exited: %v; want it to keep serving its cache", a.err)
	}
}

// TestReattestAfterEvict: an agent evicted while it was down finds out
// at its next start (one ERROR line, not ready, no retries); restarted with
// a new join token and the same data dir, it attests with that token.
func TestReattestAfterEvict(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	a := startAgent(t, s, "reborn")
	a.entryFor(t, "spiffe://example.org/reborn/web")
	fetchUntil(t, a, 30*time.Second, hasOnly("spiffe://example.org/reborn/web"))
	a.stop()

	s.cli(t, "node", "evict", a.nodeID)
	a.run(t) // no token: the stored identity, which the CA now refuses
	waitFor(t, 30*time.Second, "the agent's ERROR line", func() bool { return len(logLines(a.proc, "level=ERROR")) > 0 })
	if errs := logLines(a.proc, "level=ERROR"); len(errs) != 1 || !strings.Contains(errs[0], "signet token create --node-name reborn") {
		t.Fatalf("ERROR lines of the evicted agent: %q; want one saying what to do", errs)
	}
	waitFor(t, 10*time.Second, "healthcheck to say not ready", func() bool { return healthcheck(t, a).code != 0 })
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if a.exited() {
			t.Fatalf("the evicted agent exited: %v", a.err)
		}
	}
	if retries := logLines(a.proc, "retrying"); len(retries) != 0 {
		t.Errorf("the evicted agent retries: %q", retries)
	}
	a.stop()

	tok := newToken(t, s, "reborn")
	a.run(t, "--join-token", tok)
	fetchUntil(t, a, 30*time.Second, hasOnly("spiffe://example.org/reborn/web"))
	waitFor(t, 30*time.Second, "agent ready", func() bool { return healthcheck(t, a).code == 0 })
	if len(logLines(a.proc, "node attested")) != 1 {
		t.Errorf("the restarted agent did not attest with the new token:\n%s", a.out)
	}
	if errs := logLines(a.proc, "level=ERROR"); len(errs) != 0 {
		t.Errorf("ERROR lines: %q", errs)
	}
	// The node is attested again: listed, with the new attestation.
	if out := s.cli(t, "node", "list", "-o", "json"); !strings.Contains(out, a.nodeID) {
		t.Errorf("node list after re-attesting: %s; want %s", out, a.nodeID)
	}
}

// TestTwoAgentsOneSocket: a second agent on a socket a live agent serves
// exits non-zero with one line saying so; the first keeps serving.
func TestTwoAgentsOneSocket(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	a := startAgent(t, s, "first")
	a.entryFor(t, "spiffe://example.org/first/web")
	fetchUntil(t, a, 30*time.Second, hasOnly("spiffe://example.org/first/web"))
	waitFor(t, 30*time.Second, "agent ready", func() bool { return healthcheck(t, a).code == 0 })
	if ready := logLines(a.proc, `msg=ready`, "socket="+a.socket); len(ready) != 1 {
		t.Errorf("ready lines naming the socket: %q, want one", ready)
	}

	dir := testdir.Short(t)
	second := start(t, "second agent", s.env, "agent", "--server-address", s.addr, "--trust-domain", s.td,
		"--trust-bundle", s.bundleFile(t), "--join-token", newToken(t, s, "second"),
		"--socket", a.socket, "--data-dir", filepath.Join(dir, "data"))
	select {
	case <-second.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the second agent did not exit")
	}
	if second.err == nil {
		t.Fatal("the second agent exited 0")
	}
	out := strings.TrimSpace(second.out.String())
	if strings.Count(out, "\n") != 0 || !strings.Contains(out, a.socket) || !strings.Contains(out, "another agent running") {
		t.Errorf("second agent said:\n%s\nwant one line naming the socket and the other agent", out)
	}
	fetchUntil(t, a, 10*time.Second, hasOnly("spiffe://example.org/first/web"))
	// Its readiness checks its socket each second: it stays its own.
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if r := healthcheck(t, a); r.code != 0 {
			t.Fatalf("the first agent after the second was refused: healthcheck exit %d: %s", r.code, r.stderr)
		}
	}
}
