package agent_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signet-mesh/signet/agent"
	"github.com/signet-mesh/signet/internal/backoff"
	"github.com/signet-mesh/signet/test/testserver"
)

// TestAdmissionControl: a fleet that arrives together drives the CA past
// its bound of concurrent attestations and mint batches; the refused
// agents wait at least as long as the CA's retry hint says, then
// attest and get every SVID (issue 16).
func TestAdmissionControl(t *testing.T) {
	const hint = 300 * time.Millisecond
	s := testserver.StartWith(t, testserver.Options{MaxAttestations: 1, MaxMintBatches: 1, RetryAfter: hint})
	const agents = 8
	type started struct {
		a    *agent.Agent
		logs *logBuffer
		id   string
	}
	var fleet []started
	for i := range agents {
		tok := s.JoinToken(t, fmt.Sprintf("node%d", i))
		id := fmt.Sprintf("spiffe://example.org/w%d", i)
		s.Entry(t, tok.GetSpiffeId(), id, "unix:uid:1000")
		s.Entry(t, tok.GetSpiffeId(), id+"/b", "unix:uid:1001")
		logs := &logBuffer{}
		a, err := agent.New(agent.Config{
			ServerAddress: s.Addr, TrustDomain: testserver.TrustDomain, TrustBundle: s.Roots(t),
			JoinToken: tok.GetToken(), DataDir: t.TempDir(), KeyPassphrase: []byte("test"), KeyKDFIterations: testKDFIterations,
			// A cap well above the hint: the hint, not the cap, sets the wait.
			Backoff: backoff.Config{Initial: 10 * time.Millisecond, Max: 10 * time.Second},
			Rand:    backoff.NewRand(uint64(i)),
			Logger:  slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		})
		if err != nil {
			t.Fatal(err)
		}
		fleet = append(fleet, started{a: a, logs: logs, id: id})
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	for _, f := range fleet {
		wg.Go(func() { f.a.Run(ctx) }) //nolint:errcheck // ends with ctx
	}
	t.Cleanup(func() {
		if t.Failed() {
			for i, f := range fleet {
				f.logs.mu.Lock()
				t.Logf("agent %d log:\n%s", i, f.logs.b.String())
				f.logs.mu.Unlock()
			}
		}
	})
	for _, f := range fleet {
		waitFor(t, "every agent's SVIDs", func() bool {
			return serves(f.a, "unix:uid:1000", f.id) && serves(f.a, "unix:uid:1001", f.id+"/b")
		})
	}

	refused := 0
	for i, f := range fleet {
		for _, l := range f.logs.lines("WARN") {
			errText, _ := l["error"].(string)
			if !strings.Contains(errText, "the CA is at its limit") {
				continue
			}
			refused++
			wait, _ := l["retry_in"].(float64) // nanoseconds
			if time.Duration(wait) < hint {
				t.Errorf("agent %d retried %s after a refusal with a %s hint: %s", i, time.Duration(wait), hint, errText)
			}
		}
	}
	if refused == 0 {
		t.Fatal("no agent was refused: the CA was not driven past its bound, the test proves nothing")
	}
	t.Logf("%d refusals, every one waited out", refused)
}
