package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	workloadpb "github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

// Agent performance, measured on real processes:
//
//	go test -run '^$' -bench 'Agent' -benchtime 1x ./test/e2e/
//
// BenchmarkAgentSync1000 times one `entry create --file` of 1000 entries
// for one node until a Workload API stream holds all 1000 SVIDs (target:
// under 2 s). BenchmarkAgentRSS reports the agent's resident memory with
// 1000 cached SVIDs and 200 open Workload API streams (target: under 40 MB).

func writeEntries(t testing.TB, path, parent string, n int, selector func(i int) string) {
	t.Helper()
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "- spiffe_id: spiffe://example.org/bench/w%d\n  parent_id: %s\n  selectors: [%s]\n", i, parent, selector(i))
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// openStream opens a FetchX509SVID stream on the agent socket and returns
// a function that blocks for the next response's SVID count.
func openStream(tb testing.TB, ctx context.Context, conn *grpc.ClientConn) func() (int, error) {
	tb.Helper()
	ctx = metadata.AppendToOutgoingContext(ctx, "workload.spiffe.io", "true")
	stream, err := workloadpb.NewSpiffeWorkloadAPIClient(conn).FetchX509SVID(ctx, &workloadpb.X509SVIDRequest{})
	if err != nil {
		tb.Fatal(err)
	}
	return func() (int, error) {
		resp, err := stream.Recv()
		if err != nil {
			return 0, err
		}
		return len(resp.Svids), nil
	}
}

func dialAgent(tb testing.TB, a *testAgent) *grpc.ClientConn {
	tb.Helper()
	conn, err := grpc.NewClient(a.addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return conn
}

func BenchmarkAgentSync1000(b *testing.B) {
	uid := strconv.Itoa(os.Getuid())
	var total time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		s := startServer(b)
		a := startAgentTB(b, s, fmt.Sprintf("bench%d", i))
		file := filepath.Join(s.dir, "entries.yaml")
		writeEntries(b, file, a.nodeID, 1000, func(int) string { return "unix:uid:" + uid })
		// A workload is already connected (it has one entry), as a proxy
		// would be when a deployment scales up.
		a.entryForTB(b, "spiffe://example.org/bench/first")
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		conn := dialAgent(b, a)
		var next func() (int, error)
		waitFor(b, 30*time.Second, "the first SVID", func() bool {
			next = openStream(b, ctx, conn)
			n, err := next()
			return err == nil && n == 1
		})
		b.StartTimer()
		begin := time.Now()
		s.cli(b, "entry", "create", "--file", file)
		for {
			n, err := next()
			if err != nil {
				b.Fatal(err)
			}
			if n == 1001 {
				break
			}
		}
		total += time.Since(begin)
		b.StopTimer()
		cancel()
		a.stop()
		s.stop()
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/1000-entries")
}

func BenchmarkAgentRSS(b *testing.B) {
	uid := os.Getuid()
	for i := 0; i < b.N; i++ {
		s := startServer(b)
		a := startAgentTB(b, s, fmt.Sprintf("rss%d", i))
		file := filepath.Join(s.dir, "entries.yaml")
		// 5 entries for this process, 995 for other uids: the agent mints
		// and caches all 1000, and each stream carries this process's 5.
		writeEntries(b, file, a.nodeID, 1000, func(i int) string {
			if i < 5 {
				return "unix:uid:" + strconv.Itoa(uid)
			}
			return "unix:uid:" + strconv.Itoa(10000+i)
		})
		s.cli(b, "entry", "create", "--file", file)
		conn := dialAgent(b, a)
		ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
		waitFor(b, 60*time.Second, "1000 SVIDs issued", func() bool {
			return strings.Count(s.cli(b, "svid", "list", "--valid", "-o", "json"), `"entry_id"`) >= 1000
		})
		for range 200 {
			next := openStream(b, ctx, conn)
			if n, err := next(); err != nil || n != 5 {
				b.Fatalf("stream: %d SVIDs, %v", n, err)
			}
		}
		rss := vmRSS(b, a.cmd.Process.Pid)
		b.Logf("status:\n%s", procStatus(b, a.cmd.Process.Pid))
		b.ReportMetric(float64(rss)/(1<<20), "MB-RSS")
		cancel()
		a.stop()
		s.stop()
	}
}

// vmRSS reads a process's resident set size in bytes.
func vmRSS(tb testing.TB, pid int) int64 {
	tb.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				tb.Fatal(err)
			}
			return kb << 10
		}
	}
	tb.Fatal("no VmRSS")
	return 0
}

func procStatus(tb testing.TB, pid int) string {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "Rss") || strings.HasPrefix(l, "VmRSS") || strings.HasPrefix(l, "VmHWM") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
