package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/signet-mesh/signet/internal/testdir"
)

// sample is one series of a Prometheus text exposition.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

var labelPair = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)

// scrape GETs http://addr/metrics and parses the text format.
func scrape(t testing.TB, addr string) []sample {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scraping %s: %v", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scraping %s: %s", addr, resp.Status)
	}
	var out []sample
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			t.Fatalf("bad exposition line %q", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad value in %q: %v", line, err)
		}
		s := sample{name: line[:i], labels: map[string]string{}, value: v}
		if j := strings.IndexByte(s.name, '{'); j >= 0 {
			for _, m := range labelPair.FindAllStringSubmatch(s.name[j:], -1) {
				s.labels[m[1]] = m[2]
			}
			s.name = s.name[:j]
		}
		out = append(out, s)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// metric sums the series of name whose labels include want; ok reports
// whether there was any.
func metric(samples []sample, name string, want map[string]string) (sum float64, ok bool) {
	for _, s := range samples {
		if s.name != name {
			continue
		}
		match := true
		for k, v := range want {
			if s.labels[k] != v {
				match = false
			}
		}
		if match {
			sum += s.value
			ok = true
		}
	}
	return sum, ok
}

// readyz GETs http://addr/readyz and returns the status code and body; 0
// when the endpoint does not answer.
func readyz(addr string) (int, string) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestMetricsAndReadiness runs a CA and an agent with metrics_listen and
// JSON logs. The agent starts while the CA is down: not ready, and says
// why. Once the CA is back it attests and becomes ready. An entry with a
// 10s TTL is issued and rotated, and the counters on both sides move
// accordingly. No log line carries key material.
func TestMetricsAndReadiness(t *testing.T) {
	serverMetrics := freeAddr(t)
	serverArgs := []string{"--metrics-listen", serverMetrics, "--log-format", "json"}
	s := startServer(t, serverArgs...)

	waitFor(t, 30*time.Second, "server /readyz 200", func() bool {
		code, _ := readyz(serverMetrics)
		return code == http.StatusOK
	})
	if r := s.run(t, "healthcheck", "--admin-socket", s.admin); r.code != 0 || strings.TrimSpace(r.stdout) != "ready" {
		t.Errorf("healthcheck --admin-socket: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	if r := s.run(t, "healthcheck", "--url", "http://"+serverMetrics+"/readyz"); r.code != 0 {
		t.Errorf("healthcheck --url: exit %d, %q", r.code, r.stderr)
	}

	// An agent whose CA is down.
	var tok struct {
		Token    string `json:"token"`
		SPIFFEID string `json:"spiffe_id"`
	}
	if err := json.Unmarshal([]byte(s.cli(t, "token", "create", "--node-name", "metrics", "-o", "json")), &tok); err != nil {
		t.Fatal(err)
	}
	bundle := s.bundleFile(t)
	s.stop()

	dir := testdir.Short(t)
	os.Chmod(dir, 0o755)
	a := &testAgent{name: "metrics", dir: dir, socket: filepath.Join(dir, "agent.sock"), server: s, nodeID: tok.SPIFFEID}
	agentMetrics := freeAddr(t)
	a.proc = start(t, "agent metrics", s.env, "agent", "--server-address", s.addr, "--trust-domain", s.td,
		"--trust-bundle", bundle, "--socket", a.socket, "--data-dir", filepath.Join(dir, "data"),
		"--join-token", tok.Token, "--metrics-listen", agentMetrics, "--log-level", "debug", "--log-format", "json")
	var code int
	var body string
	waitFor(t, 30*time.Second, "agent /readyz to answer", func() bool {
		if a.proc.exited() {
			t.Fatalf("agent exited: %v", a.proc.err)
		}
		code, body = readyz(agentMetrics)
		return code != 0
	})
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "node identity") {
		t.Errorf("agent /readyz with the CA down = %d %q, want 503 naming the missing node identity", code, body)
	}
	if code, body := getPath(agentMetrics, "/healthz"); code != http.StatusOK {
		t.Errorf("agent /healthz with the CA down = %d %q, want 200 (alive, just not ready)", code, body)
	}
	waitFor(t, 10*time.Second, "agent socket", func() bool { _, err := os.Stat(a.socket); return err == nil })
	if r := runCLI(t, nil, "healthcheck", "--socket", a.socket); r.code == 0 || !strings.Contains(r.stderr, "not ready") {
		t.Errorf("healthcheck --socket with the CA down: exit %d, %q; want 1 and not ready", r.code, r.stderr)
	}
	m := scrape(t, agentMetrics)
	if v, _ := metric(m, "signet_agent_ca_retry_backoff_seconds", map[string]string{"op": "attest"}); v <= 0 {
		t.Errorf("attest backoff while the CA is down = %v, want > 0", v)
	}
	if v, ok := metric(m, "signet_agent_ca_connected", nil); !ok || v != 0 {
		t.Errorf("signet_agent_ca_connected with the CA down = %v (present %v), want 0", v, ok)
	}

	// The CA comes back: the agent attests and becomes ready.
	s.restart(t, serverArgs...)
	waitFor(t, 90*time.Second, "agent /readyz 200", func() bool {
		code, body = readyz(agentMetrics)
		return code == http.StatusOK
	})
	waitFor(t, 10*time.Second, "healthcheck --socket to pass", func() bool {
		return runCLI(t, nil, "healthcheck", "--socket", a.socket).code == 0
	})

	// Issuance.
	a.entryFor(t, "spiffe://example.org/metrics", "--x509-ttl", "10s")
	waitFor(t, 30*time.Second, "a cached SVID", func() bool {
		v, _ := metric(scrape(t, agentMetrics), "signet_agent_svids", nil)
		return v >= 1
	})
	sm := scrape(t, serverMetrics)
	issued, _ := metric(sm, "signet_svids_issued_total", map[string]string{"kind": "workload", "outcome": "success"})
	for _, c := range []struct {
		name   string
		labels map[string]string
		min    float64
	}{
		{"signet_svids_issued_total", map[string]string{"kind": "workload", "outcome": "success"}, 1},
		{"signet_svids_issued_total", map[string]string{"kind": "node", "outcome": "success"}, 1},
		{"signet_node_attestations_total", map[string]string{"result": "success"}, 1},
		{"signet_registration_entries", nil, 1},
		{"signet_connected_agents", nil, 1},
		{"signet_bundle_revision", nil, 1},
		{"signet_authority_time_to_expiry_seconds", map[string]string{"kind": "root", "state": "active"}, 1},
		{"signet_svid_mint_duration_seconds_count", map[string]string{"kind": "workload"}, 1},
		{"signet_store_commit_duration_seconds_count", map[string]string{"op": "batch"}, 1},
	} {
		if v, ok := metric(sm, c.name, c.labels); !ok || v < c.min {
			t.Errorf("server %s%v = %v (present %v), want at least %v", c.name, c.labels, v, ok, c.min)
		}
	}
	if v, _ := metric(sm, "signet_svids_issued_total", map[string]string{"outcome": "error"}); v != 0 {
		t.Errorf("server reports %v failed issuances, want 0", v)
	}

	// Rotation: at half of the 10s lifetime, with jitter.
	waitFor(t, 30*time.Second, "a workload SVID rotation", func() bool {
		v, _ := metric(scrape(t, agentMetrics), "signet_agent_svid_rotations_total", map[string]string{"kind": "workload"})
		return v >= 1
	})
	am := scrape(t, agentMetrics)
	if v, _ := metric(am, "signet_agent_svid_rotation_failures_total", nil); v != 0 {
		t.Errorf("rotation failures = %v, want 0", v)
	}
	if v, ok := metric(am, "signet_agent_svid_min_time_to_expiry_seconds", nil); !ok || v <= 0 || v > 10 {
		t.Errorf("earliest SVID expiry in %v s (present %v), want within the 10s TTL", v, ok)
	}
	if v, ok := metric(am, "signet_agent_node_svid_time_to_expiry_seconds", nil); !ok || v <= 0 || v > 3600 {
		t.Errorf("node SVID expiry in %v s (present %v), want within its hour", v, ok)
	}
	if v, _ := metric(am, "signet_agent_ca_connected", nil); v != 1 {
		t.Errorf("signet_agent_ca_connected = %v, want 1", v)
	}
	for _, op := range []string{"attest", "sync", "mint"} {
		if v, _ := metric(am, "signet_agent_ca_retry_backoff_seconds", map[string]string{"op": op}); v != 0 {
			t.Errorf("backoff{op=%s} once connected = %v, want 0", op, v)
		}
	}
	sm = scrape(t, serverMetrics)
	if v, _ := metric(sm, "signet_svids_issued_total", map[string]string{"kind": "workload", "outcome": "success"}); v <= issued {
		t.Errorf("server workload issuances after a rotation = %v, want more than %v", v, issued)
	}

	// An open Workload API stream is counted while it is open.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	src, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr(a.addr())))
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := metric(scrape(t, agentMetrics), "signet_agent_open_streams", map[string]string{"api": "workload"}); v < 1 {
		t.Errorf("open workload streams with an X509Source = %v, want at least 1", v)
	}
	src.Close()
	waitFor(t, 10*time.Second, "open workload streams back to 0", func() bool {
		v, _ := metric(scrape(t, agentMetrics), "signet_agent_open_streams", map[string]string{"api": "workload"})
		return v == 0
	})

	// Logs: JSON, one object a line; SPIFFE ID, serial and not_after on
	// issuance; never key material.
	a.stop()
	s.stop()
	for _, p := range []*proc{s.proc, a.proc} {
		out := p.out.String()
		if strings.Contains(out, "PRIVATE KEY") || strings.Contains(out, "BEGIN ") {
			t.Errorf("%s logged PEM material", p.name)
		}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var rec map[string]any
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Errorf("%s: log line is not JSON: %q", p.name, line)
				break
			}
		}
	}
	if !logHas(t, s.proc.out.String(), "node attested", "spiffe_id", "serial", "not_after") {
		t.Error(`server log has no "node attested" record with spiffe_id, serial and not_after`)
	}
	if !logHas(t, a.proc.out.String(), "node attested", "spiffe_id", "serial", "not_after") {
		t.Error(`agent log has no "node attested" record with spiffe_id, serial and not_after`)
	}
	if !logHas(t, a.proc.out.String(), "SVID minted", "spiffe_id", "serial", "not_after") {
		t.Error(`agent log has no "SVID minted" record with spiffe_id, serial and not_after`)
	}
}

// getPath GETs http://addr+path.
func getPath(addr, path string) (int, string) {
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// logHas reports whether a JSON log has a record with message msg and
// every key in keys.
func logHas(t *testing.T, out, msg string, keys ...string) bool {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil || rec["msg"] != msg {
			continue
		}
		all := true
		for _, k := range keys {
			if v, ok := rec[k]; !ok || fmt.Sprint(v) == "" {
				all = false
			}
		}
		if all {
			return true
		}
	}
	return false
}
