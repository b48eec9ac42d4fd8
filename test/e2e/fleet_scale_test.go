package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

// TestLargeRegistry: an agent whose entries add up to more than 16 MiB
// (SPIFFE IDs near their 2048-byte limit) syncs them all, and again after
// a kill -9 and restart; the CLI lists them all through its pages and
// deletes them all from that listing in one bulk delete (issue 16).
func TestLargeRegistry(t *testing.T) {
	if testing.Short() {
		t.Skip("16 MiB of entries")
	}
	s := startServer(t)
	metrics := freeAddr(t)
	a := startAgentTB(t, s, "big", "--metrics-listen", metrics)

	const entries, perCall = 8400, 1200
	long := strings.Repeat("a", 1990)
	total := 0
	admin := adminClient(t, s)
	for n := 0; n < entries; n += perCall {
		req := &adminv1.CreateEntriesRequest{}
		for i := n; i < n+perCall; i++ {
			id := fmt.Sprintf("spiffe://example.org/w%05d/%s", i, long)
			total += len(id)
			// A uid no process of the test has: the agent mints the
			// SVIDs, nothing fetches them.
			req.Entries = append(req.Entries, &adminv1.Entry{SpiffeId: id, ParentId: a.nodeID, Selectors: []string{fmt.Sprintf("unix:uid:%d", 4000000+i)}})
		}
		if _, err := admin.CreateEntries(rpcCtx(t), req); err != nil {
			t.Fatalf("creating entries: %v", err)
		}
	}
	if total <= 16<<20 {
		t.Fatalf("%d bytes of SPIFFE IDs, want over 16 MiB", total)
	}
	// svids is the agent's signet_agent_svids, -1 while its metrics are
	// not served (it is restarting).
	svids := func() float64 {
		resp, err := http.Get("http://" + metrics + "/metrics")
		if err != nil {
			return -1
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		for line := range strings.Lines(string(body)) {
			if v, ok := strings.CutPrefix(line, "signet_agent_svids "); ok {
				f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
				if err == nil {
					return f
				}
			}
		}
		return -1
	}
	waitFor(t, 3*time.Minute, "the agent to hold an SVID for every entry", func() bool { return svids() == entries })

	a.kill()
	a.run(t, "--metrics-listen", metrics)
	waitFor(t, 3*time.Minute, "the restarted agent to hold an SVID for every entry", func() bool {
		return svids() == entries
	})

	listed := s.cli(t, "entry", "list", "-o", "json", "--page-size", "700")
	var got []struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(listed), &got); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, e := range got {
		seen[e.ID] = true
	}
	if len(got) != entries || len(seen) != entries {
		t.Fatalf("entry list printed %d entries (%d distinct), want %d", len(got), len(seen), entries)
	}

	file := filepath.Join(s.dir, "all.json")
	if err := os.WriteFile(file, []byte(listed), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := s.run(t, "entry", "delete", "--file", file); r.code != 0 || !strings.Contains(r.stderr, fmt.Sprintf("deleted %d entries", entries)) {
		t.Fatalf("entry delete --file: exit %d\n%s", r.code, r.stderr)
	}
	if left := strings.TrimSpace(s.cli(t, "entry", "list", "-o", "json")); left != "[]" {
		t.Fatalf("entries left after the bulk delete: %.200s", left)
	}
	waitFor(t, time.Minute, "the agent to drop every SVID", func() bool { return svids() == 0 })
}
