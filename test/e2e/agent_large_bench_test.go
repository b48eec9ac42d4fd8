package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

// BenchmarkAgent50000Entries: one agent with 50,000 entries syncs and
// holds an SVID for each, then again after a kill -9 and restart, and its
// resident memory stays under 150 MB (issue 16). It reports the agent's
// VmRSS after each sync (rss-kb, restart-rss-kb) and the time to sync
// after the restart:
//
//	go test -run '^$' -bench Agent50000 -benchtime 1x ./test/e2e/
func BenchmarkAgent50000Entries(b *testing.B) {
	const entries, perCall, maxRSS = 50000, 10000, 150 << 20
	for i := 0; i < b.N; i++ {
		s := startServer(b)
		metrics := freeAddr(b)
		a := startAgentTB(b, s, fmt.Sprintf("large%d", i), "--metrics-listen", metrics, "--log-level", "info")
		admin := adminClient(b, s)
		for n := 0; n < entries; n += perCall {
			req := &adminv1.CreateEntriesRequest{}
			for j := n; j < n+perCall; j++ {
				// A uid no process of the test has: the agent mints
				// the SVIDs, nothing fetches them.
				req.Entries = append(req.Entries, &adminv1.Entry{SpiffeId: fmt.Sprintf("spiffe://example.org/large/w%05d", j), ParentId: a.nodeID,
					Selectors: []string{fmt.Sprintf("unix:uid:%d", 4000000+j)}})
			}
			if _, err := admin.CreateEntries(rpcCtx(b), req); err != nil {
				b.Fatalf("creating entries: %v", err)
			}
		}
		svids := func() float64 { return agentMetric(metrics, "signet_agent_svids") }
		begin := time.Now()
		waitFor(b, 10*time.Minute, "the agent to hold an SVID for every entry", func() bool { return svids() == entries })
		b.Logf("first sync and mint of %d SVIDs: %v", entries, time.Since(begin).Round(time.Millisecond))
		rss := vmRSS(b, a.cmd.Process.Pid)
		_, split := smaps(b, a.cmd.Process.Pid)
		b.Logf("after the first sync:\n%s", split)

		a.kill()
		begin = time.Now()
		a.run(b, "--metrics-listen", metrics, "--log-level", "info")
		waitFor(b, 10*time.Minute, "the restarted agent to hold an SVID for every entry", func() bool { return svids() == entries })
		restart := time.Since(begin)
		restartRSS := vmRSS(b, a.cmd.Process.Pid)
		_, split = smaps(b, a.cmd.Process.Pid)
		b.Logf("after the restart (%v):\n%s", restart.Round(time.Millisecond), split)
		b.ReportMetric(float64(rss>>10), "rss-kb")
		b.ReportMetric(float64(restartRSS>>10), "restart-rss-kb")
		b.ReportMetric(restart.Seconds(), "restart-sync-s")
		if rss > maxRSS || restartRSS > maxRSS {
			b.Errorf("agent VmRSS %d MB, %d MB after the restart; want under %d MB", rss>>20, restartRSS>>20, maxRSS>>20)
		}
		a.stop()
		s.stop()
	}
}

// agentMetric is a gauge of the agent's metrics at addr, -1 while they
// are not served (the agent is restarting).
func agentMetric(addr, name string) float64 {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for line := range strings.Lines(string(body)) {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}
