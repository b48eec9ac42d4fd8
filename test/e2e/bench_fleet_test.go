package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBenchFleet runs `signet bench fleet` as CI does (issue 16): a real
// server and 200 simulated agents through every phase; no error, no SVID
// expired. Timings are the bench's to report, not this test's to judge.
func TestBenchFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a fleet")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	profiles := t.TempDir()
	cmd := exec.CommandContext(ctx, signetBinary(t), "bench", "fleet", "--agents", "200", "--workloads", "5", "--duration", "10s", "-o", "json", "--profile-dir", profiles)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("signet bench fleet: %v\nstderr:\n%s", err, stderr.String())
	}
	var res map[string]float64
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("output is not one JSON object of figures: %v\n%s", err, stdout.String())
	}
	for _, key := range []string{"agents", "workloads", "svids", "attest_seconds", "sync_p99_ms", "fanout_p99_ms", "mint_p50_ms", "mint_p99_ms",
		"server_rss_mb", "server_idle_cpu_percent", "reconnect_seconds", "rotate_now_seconds", "expired_svids", "errors",
		"server_rss_anon_mb", "server_rss_file_mb", "fanout_call_p99_ms", "rotate_now_window_seconds", "rotate_now_refused_mints", "rotate_now_refused_in_flight"} {
		if _, ok := res[key]; !ok {
			t.Errorf("figure %q missing from %s", key, stdout.String())
		}
	}
	if res["agents"] != 200 || res["workloads"] != 5 || res["svids"] != 1000 {
		t.Errorf("agents %v, workloads %v, svids %v; want 200, 5, 1000", res["agents"], res["workloads"], res["svids"])
	}
	// The split of the RSS: the server has memory of its own, and neither
	// part is more than the whole.
	if anon, file, rss := res["server_rss_anon_mb"], res["server_rss_file_mb"], res["server_rss_mb"]; anon <= 0 || anon > rss || file > rss {
		t.Errorf("server_rss_anon_mb %v, server_rss_file_mb %v; want 0 < each <= server_rss_mb %v", anon, file, rss)
	}
	// The window the CA took for the rotate-now, read from its metrics:
	// the server signed 1,000 SVIDs before, so it was measured, and no
	// rotation ends before its window has been spread.
	if w := res["rotate_now_window_seconds"]; w <= 0 || w > res["rotate_now_seconds"] {
		t.Errorf("rotate_now_window_seconds %v, want 0 < it <= rotate_now_seconds %v", w, res["rotate_now_seconds"])
	}
	if res["errors"] != 0 || res["expired_svids"] != 0 {
		t.Errorf("errors %v, expired_svids %v; want 0 and 0\nstderr:\n%s", res["errors"], res["expired_svids"], stderr.String())
	}
	// --profile-dir: the server's profiles and memory at each sample.
	for _, phase := range []string{"idle", "steady", "rotated"} {
		for _, f := range []struct{ name, starts string }{
			{phase + ".heap.pb.gz", "\x1f\x8b"}, {phase + ".goroutine.pb.gz", "\x1f\x8b"},
			{phase + ".heap.txt", "heap profile:"}, {phase + ".status", "Name:"},
		} {
			data, err := os.ReadFile(filepath.Join(profiles, f.name))
			if err != nil {
				t.Errorf("--profile-dir: %v", err)
				continue
			}
			if !bytes.HasPrefix(data, []byte(f.starts)) {
				t.Errorf("--profile-dir: %s starts %q, want %q", f.name, data[:min(len(data), 20)], f.starts)
			}
		}
		// The smaps show the store file's mapping and what of it is
		// resident.
		smaps, err := os.ReadFile(filepath.Join(profiles, phase+".smaps"))
		if err != nil {
			t.Errorf("--profile-dir: %v", err)
		} else if !bytes.Contains(smaps, []byte("signet.db")) || !bytes.Contains(smaps, []byte("\nRss:")) {
			t.Errorf("--profile-dir: %s.smaps has no signet.db mapping with its Rss", phase)
		}
	}
	t.Logf("%s", stdout.String())
}

// TestBenchFleetProfileDirNeedsOwnServer: --profile-dir takes the profiles
// of the server the bench starts; with --server-address it is refused at
// once with what to do instead.
func TestBenchFleetProfileDirNeedsOwnServer(t *testing.T) {
	out, err := exec.Command(signetBinary(t), "bench", "fleet", "--server-address", "127.0.0.1:1", "--admin-socket", filepath.Join(t.TempDir(), "admin.sock"),
		"--profile-dir", t.TempDir()).CombinedOutput()
	if err == nil {
		t.Fatalf("bench fleet --profile-dir with --server-address succeeded; want refused\n%s", out)
	}
	if want := "--profile-dir needs the server the bench starts"; !strings.Contains(string(out), want) {
		t.Errorf("output %q; want it to contain %q", out, want)
	}
}
