package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signet-mesh/signet/agent"
	"github.com/signet-mesh/signet/agent/nodesvid"
	"github.com/signet-mesh/signet/internal/backoff"
	"github.com/signet-mesh/signet/test/testserver"
)

// These tests run the agent against a real CA in-process
// (test/testserver).

// logBuffer collects an agent's log as JSON lines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// lines returns the logged records at level (all when empty).
func (l *logBuffer) lines(level string) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(l.b.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil {
			continue
		}
		if level == "" || rec["level"] == level {
			out = append(out, rec)
		}
	}
	return out
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// runningAgent is an agent whose Run goes on in the background.
type runningAgent struct {
	*agent.Agent
	log    *logBuffer
	cancel context.CancelFunc
	done   chan error
}

func newAgent(t *testing.T, s *testserver.Server, dataDir, token string) (*agent.Agent, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	a, err := agent.New(agent.Config{
		ServerAddress: s.Addr, TrustDomain: testserver.TrustDomain, TrustBundle: s.Roots(t),
		JoinToken: token, DataDir: dataDir, KeyPassphrase: []byte("test"), KeyKDFIterations: testKDFIterations,
		Backoff: backoff.Config{Initial: 10 * time.Millisecond, Max: 100 * time.Millisecond},
		Rand:    backoff.NewRand(1),
		Logger:  slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent log:\n%s", logs)
		}
	})
	return a, logs
}

func startAgent(t *testing.T, s *testserver.Server, dataDir, token string) *runningAgent {
	t.Helper()
	a, logs := newAgent(t, s, dataDir, token)
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningAgent{Agent: a, log: logs, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- a.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels Run and returns its result.
func (r *runningAgent) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok {
			close(r.done)
			return err
		}
		return nil
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after its context ended")
		return nil
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// serves reports whether the agent's cache serves the workload with uid
// an SVID for id.
func serves(a *agent.Agent, selector, id string) bool {
	for _, i := range a.Cache().Lookup([]string{selector}).Identities {
		if i.SVID.ID().String() == id {
			return true
		}
	}
	return false
}

// agentGoroutines returns the stacks of goroutines running the agent's
// code.
func agentGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "github.com/signet-mesh/signet/agent") && !strings.Contains(g, "agent_test.") {
			out = append(out, g)
		}
	}
	return out
}

// TestRun: the agent's tasks all run; its socket is its own; and every
// goroutine they started has returned once Run has.
func TestRun(t *testing.T) {
	s := testserver.Start(t)
	tok := s.JoinToken(t, "node1")
	s.Entry(t, tok.GetSpiffeId(), "spiffe://example.org/web", "unix:uid:1000")
	a := startAgent(t, s, t.TempDir(), tok.GetToken())
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := a.ListenSocket(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	waitFor(t, "the workload's SVID", func() bool { return serves(a.Agent, "unix:uid:1000", "spiffe://example.org/web") })
	waitFor(t, "ready", func() bool { return a.Ready(context.Background()) == nil })

	// A second agent on the same socket is refused, in one line.
	other, _ := newAgent(t, s, t.TempDir(), "")
	_, err = other.ListenSocket(sock)
	if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "is another agent running?") || !strings.Contains(err.Error(), sock) {
		t.Fatalf("second ListenSocket on %s = %v, want a one-line refusal naming the socket", sock, err)
	}
	if err := a.Ready(context.Background()); err != nil {
		t.Fatalf("the first agent is not ready after a second was refused: %v", err)
	}
	// Readiness checks the socket is still there.
	if err := os.Remove(sock); err != nil {
		t.Fatal(err)
	}
	if err := a.Ready(context.Background()); err == nil || !strings.Contains(err.Error(), "was removed") {
		t.Errorf("Ready with the socket removed = %v, want a removed error", err)
	}
	if len(agentGoroutines()) == 0 {
		t.Fatal("no agent goroutine while Run runs: the check below would prove nothing")
	}
	if err := a.stop(t); err != nil {
		t.Fatalf("Run = %v, want nil on cancellation", err)
	}
	var left []string
	deadline := time.Now().Add(10 * time.Second)
	for left = agentGoroutines(); len(left) > 0 && time.Now().Before(deadline); left = agentGoroutines() {
		time.Sleep(10 * time.Millisecond)
	}
	if len(left) > 0 {
		t.Fatalf("%d goroutines outlived Run:\n%s", len(left), strings.Join(left, "\n\n"))
	}
	if !strings.Contains(a.log.String(), `"msg":"agent stopped"`) {
		t.Error("the agent did not log its shutdown")
	}
}

// TestEvictedWhileRunning: when the CA refuses the node's identity for
// good, the agent says so in one ERROR line that says what to do, stops
// retrying, reports not ready, keeps serving the SVIDs it holds, and moves
// the identity aside so that no restart uses it.
func TestEvictedWhileRunning(t *testing.T) {
	s := testserver.Start(t)
	tok := s.JoinToken(t, "node1")
	s.Entry(t, tok.GetSpiffeId(), "spiffe://example.org/web", "unix:uid:1000")
	dir := t.TempDir()
	a := startAgent(t, s, dir, tok.GetToken())
	waitFor(t, "the workload's SVID", func() bool { return serves(a.Agent, "unix:uid:1000", "spiffe://example.org/web") })

	s.Evict(t, tok.GetSpiffeId())
	waitFor(t, "not ready", func() bool { return a.Ready(context.Background()) != nil })
	err := a.Ready(context.Background())
	if !strings.Contains(err.Error(), "rejected by the CA") || !strings.Contains(err.Error(), "signet token create --node-name node1") {
		t.Errorf("Ready = %v, want it to say the CA rejected the identity and what to do", err)
	}
	errorsLogged := a.log.lines("ERROR")
	if len(errorsLogged) != 1 {
		t.Fatalf("%d ERROR lines, want 1: %v", len(errorsLogged), errorsLogged)
	}
	msg, _ := errorsLogged[0]["msg"].(string)
	want := "node identity spiffe://example.org/signet/agent/join_token/node1 was evicted by the CA; create a new join token with `signet token create --node-name node1` and restart the agent with --join-token"
	if msg != want {
		t.Errorf("ERROR line:\n%s\nwant:\n%s", msg, want)
	}
	if _, err := os.Stat(filepath.Join(dir, nodesvid.NodeSVIDFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stored identity still in place after the rejection: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, nodesvid.RejectedSVIDFile)); err != nil {
		t.Errorf("rejected identity not kept aside: %v", err)
	}

	// No retry loop: nothing more is logged while time passes (the
	// backoff here is at most 100 ms), and the SVID is still served.
	before := len(a.log.lines(""))
	time.Sleep(time.Second)
	if after := a.log.lines(""); len(after) != before {
		t.Errorf("the agent went on logging after the rejection: %v", after[before:])
	}
	if !serves(a.Agent, "unix:uid:1000", "spiffe://example.org/web") {
		t.Error("the cached SVID is no longer served")
	}
	select {
	case err := <-a.done:
		t.Fatalf("Run returned %v after the rejection; want it to keep serving the cache", err)
	default:
	}
	if err := a.stop(t); err != nil {
		t.Errorf("Run = %v after cancellation", err)
	}

	// A restart without a token fails at once, saying the same.
	b, _ := newAgent(t, s, dir, "")
	err = b.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "rejected by the CA") || !strings.Contains(err.Error(), "signet token create --node-name node1") {
		t.Errorf("restart without a token: %v, want an error saying the identity was rejected and what to do", err)
	}

	// With a new token, the same data dir attests again.
	tok2 := s.JoinToken(t, "node1")
	c := startAgent(t, s, dir, tok2.GetToken())
	waitFor(t, "the workload's SVID after re-attesting", func() bool { return serves(c.Agent, "unix:uid:1000", "spiffe://example.org/web") })
	if _, err := os.Stat(filepath.Join(dir, nodesvid.RejectedSVIDFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the rejected identity is still kept after a new attestation: %v", err)
	}
}

// TestNewJoinToken: a restart with the token the stored identity came from
// (or none) keeps the identity; a different token attests again, as after
// `signet node evict`, even though the agent was down when it was evicted.
func TestNewJoinToken(t *testing.T) {
	s := testserver.Start(t)
	tok := s.JoinToken(t, "node1")
	dir := t.TempDir()
	serial := func(a *runningAgent) string {
		waitFor(t, "ready", func() bool { return a.Ready(context.Background()) == nil })
		return a.log.String()
	}
	a := startAgent(t, s, dir, tok.GetToken())
	serial(a)
	if !strings.Contains(a.log.String(), `"msg":"node attested"`) {
		t.Fatal("first start did not attest")
	}
	a.stop(t)

	for _, token := range []string{tok.GetToken(), ""} {
		b := startAgent(t, s, dir, token)
		out := serial(b)
		if strings.Contains(out, `"msg":"node attested"`) || !strings.Contains(out, `"msg":"using stored node identity"`) {
			t.Errorf("restart with token %q: want the stored identity, log:\n%s", token, out)
		}
		b.stop(t)
	}

	// Evicted while down: the new token attests at start.
	s.Evict(t, tok.GetSpiffeId())
	tok2 := s.JoinToken(t, "node1")
	c := startAgent(t, s, dir, tok2.GetToken())
	out := serial(c)
	if !strings.Contains(out, "not the one the stored node identity came from") || !strings.Contains(out, `"msg":"node attested"`) {
		t.Errorf("restart with a new token did not attest with it; log:\n%s", out)
	}
	if n := len(c.log.lines("ERROR")); n != 0 {
		t.Errorf("%d ERROR lines, want none", n)
	}
}

// TestCASync: the agent tells whether its entry sync stream is up and how
// many times it came up (what `signet bench fleet` waits on after a CA
// restart): once up, further updates do not count again, and a CA that
// stops serving takes it down.
func TestCASync(t *testing.T) {
	s := testserver.Start(t)
	tok := s.JoinToken(t, "node1")
	a := startAgent(t, s, t.TempDir(), tok.GetToken())
	waitFor(t, "the sync stream up", func() bool { up, _ := a.CASync(); return up })
	if _, times := a.CASync(); times != 1 {
		t.Fatalf("times = %d after the first sync, want 1", times)
	}
	s.Entry(t, tok.GetSpiffeId(), "spiffe://example.org/web", "unix:uid:1000")
	waitFor(t, "the new entry's SVID", func() bool { return serves(a.Agent, "unix:uid:1000", "spiffe://example.org/web") })
	if up, times := a.CASync(); !up || times != 1 {
		t.Fatalf("after an update on the same stream: up %v, times %d; want up, 1", up, times)
	}
	s.Stop(t)
	waitFor(t, "the sync stream down", func() bool { up, _ := a.CASync(); return !up })
	if _, times := a.CASync(); times != 1 {
		t.Errorf("times = %d after the CA stopped, want still 1", times)
	}
}
