package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	workloadpb "github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Agent performance, measured on real processes:
//
//	go test -run '^$' -bench 'Agent' -benchtime 1x ./test/e2e/
//
// BenchmarkAgentSync1000 times one `entry create --file` of 1000 entries
// for one node until a Workload API stream holds all 1000 SVIDs (target:
// under 2 s). The RSS benchmarks (issue 19) run signet and signet-agent as
// the container image builds them (useImageBinary), the agent's once per
// binary (binary=signet: `signet agent`; binary=signet-agent), and
// report resident memory in KiB
// (rss-kb, VmRSS once it holds still), split into anonymous pages
// (anon-kb) and the binary's file pages (bin-kb):
//
//	go test -run '^$' -bench 'RSS' -benchtime 1x -count 3 ./test/e2e/

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

// BenchmarkAgentRSS is the loaded agent of issue 19: 500 SVIDs cached,
// all of them served to this process on each of 10 open Workload API
// streams; rss-kb is the agent's VmRSS once it has settled (target: at
// most 24 MB), for `signet agent` and for signet-agent.
func BenchmarkAgentRSS(b *testing.B) { agentBinaries(b, benchAgentRSS) }

func benchAgentRSS(b *testing.B) {
	const entries, streams = 500, 10
	uid := strconv.Itoa(os.Getuid())
	var m rssSample
	for i := 0; i < b.N; i++ {
		s := startServer(b)
		a := startAgentTB(b, s, fmt.Sprintf("rss%d", i))
		file := filepath.Join(s.dir, "entries.yaml")
		writeEntries(b, file, a.nodeID, entries, func(int) string { return "unix:uid:" + uid })
		waitAgentReady(b, a)
		s.cli(b, "entry", "create", "--file", file)
		conn := dialAgent(b, a)
		ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
		for range streams {
			// Each stream holds the SVIDs it has been sent; the agent
			// sends more as the sync brings them.
			next := openStream(b, ctx, conn)
			waitFor(b, 60*time.Second, fmt.Sprintf("a stream with %d SVIDs", entries), func() bool {
				n, err := next()
				if status.Code(err) == codes.PermissionDenied {
					// The sync has not brought this process's first
					// entry yet ("no identity issued"): ask again.
					next = openStream(b, ctx, conn)
					return false
				}
				if err != nil {
					b.Fatalf("stream: %v", err)
				}
				return n == entries
			})
		}
		m.add(settledRSS(b, a.cmd.Process.Pid))
		cancel()
		a.stop()
		s.stop()
	}
	m.report(b)
}

// BenchmarkAgentIdleRSS reports an idle agent's settled VmRSS: attested,
// serving its socket (healthcheck ready), no entries (target: at most
// 16 MB), for `signet agent` and for signet-agent.
func BenchmarkAgentIdleRSS(b *testing.B) { agentBinaries(b, benchAgentIdleRSS) }

func benchAgentIdleRSS(b *testing.B) {
	var m rssSample
	for i := 0; i < b.N; i++ {
		s := startServer(b)
		a := startAgentTB(b, s, fmt.Sprintf("idle%d", i))
		waitAgentReady(b, a)
		m.add(settledRSS(b, a.cmd.Process.Pid))
		a.stop()
		s.stop()
	}
	m.report(b)
}

// BenchmarkServerIdleRSS reports an idle CA's settled VmRSS: serving its
// admin socket and node API, no agents (target: at most 20 MB).
func BenchmarkServerIdleRSS(b *testing.B) {
	useImageBinary(b)
	var m rssSample
	for i := 0; i < b.N; i++ {
		s := startServer(b)
		waitFor(b, 30*time.Second, "server ready", func() bool {
			return s.run(b, "healthcheck", "--admin-socket", s.admin).code == 0
		})
		m.add(settledRSS(b, s.cmd.Process.Pid))
		s.stop()
	}
	m.report(b)
}

// waitAgentReady waits until the agent has attested and serves its socket.
func waitAgentReady(tb testing.TB, a *testAgent) {
	tb.Helper()
	waitFor(tb, 30*time.Second, "agent "+a.name+" ready", func() bool {
		return runCLI(tb, nil, "healthcheck", "--socket", a.socket).code == 0
	})
}

var (
	imageOnce sync.Once
	imagePath string
	imageErr  error
)

// useImageBinary makes b's processes run signet (and signet-agent) built
// as the container image builds them (deploy/container/Containerfile:
// static, CGO_ENABLED=0, -trimpath, -tags "grpcnotrace nethttpomithttp2",
// -ldflags "-s -w",
// no test hooks), the binaries whose memory users see.
func useImageBinary(b *testing.B) {
	b.Helper()
	if testing.Short() {
		b.Skip("end-to-end benchmark: skipped with -short")
	}
	imageOnce.Do(func() {
		imageDir, imageErr = os.MkdirTemp("", "signet-e2e-image-")
		if imageErr != nil {
			return
		}
		os.Chmod(imageDir, 0o755)
		imagePath = filepath.Join(imageDir, "signet")
		for _, name := range []string{"signet", "signet-agent"} {
			cmd := exec.Command("go", "build", "-trimpath", "-tags", imageTags, "-ldflags", "-s -w", "-o", filepath.Join(imageDir, name), "github.com/signet-mesh/signet/cmd/"+name)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				imageErr = fmt.Errorf("building %s as the image does: %v\n%s", name, err, out)
				return
			}
		}
		imageErr = touchSources(filepath.Join("..", ".."))
	})
	if imageErr != nil {
		b.Fatal(imageErr)
	}
	imageBin, imageAgentBin = imagePath, filepath.Join(imageDir, "signet-agent")
	b.Cleanup(func() { imageBin, imageAgentBin = "", "" })
}

// agentBinaries runs bench once per agent binary users run: `signet
// agent` (binary=signet) and signet-agent (binary=signet-agent), both as
// the image builds them, so one run reports both.
func agentBinaries(b *testing.B, bench func(b *testing.B)) {
	for _, bin := range []string{"signet", "signet-agent"} {
		b.Run("binary="+bin, func(b *testing.B) {
			useImageBinary(b)
			useAgentBinary(b, bin)
			bench(b)
		})
	}
}

// rssSample sums memory readings over a benchmark's iterations.
type rssSample struct {
	n                  int
	rss, anon, binFile int64
}

func (m *rssSample) add(r memUse) {
	m.n++
	m.rss += r.rss
	m.anon += r.anon
	m.binFile += r.binFile
}

// report reports the means in KiB: rss-kb is VmRSS; anon-kb the anonymous
// part (heap, stacks, written data pages); bin-kb the binary's file pages.
func (m *rssSample) report(b *testing.B) {
	if m.n == 0 {
		return
	}
	n := int64(m.n) << 10
	b.ReportMetric(float64(m.rss/n), "rss-kb")
	b.ReportMetric(float64(m.anon/n), "anon-kb")
	b.ReportMetric(float64(m.binFile/n), "bin-kb")
}

// memUse is one process's resident memory, in bytes.
type memUse struct {
	rss, anon, binFile int64
}

// settledRSS waits until the process's VmRSS holds still (three equal
// readings half a second apart) and returns its memory then, with the
// smaps breakdown in the benchmark log.
func settledRSS(tb testing.TB, pid int) memUse {
	tb.Helper()
	var last []int64
	waitFor(tb, 60*time.Second, "RSS to settle", func() bool {
		last = append(last, vmRSS(tb, pid))
		if n := len(last); n >= 3 && last[n-1] == last[n-2] && last[n-2] == last[n-3] {
			return true
		}
		time.Sleep(480 * time.Millisecond)
		return false
	})
	u, detail := smaps(tb, pid)
	u.rss = vmRSS(tb, pid)
	tb.Logf("pid %d settled after %d readings: %s", pid, len(last), detail)
	return u
}

// smaps splits a process's resident memory by mapping: the binary's file
// pages, anonymous pages (Go heap, stacks, copied-on-write data), other
// files.
func smaps(tb testing.TB, pid int) (memUse, string) {
	tb.Helper()
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		tb.Fatal(err)
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		tb.Fatal(err)
	}
	var u memUse
	var binRss, binAnon, heap, otherFile int64
	var path string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if !strings.HasSuffix(f[0], ":") { // a mapping's header line
			path = ""
			if len(f) >= 6 {
				path = f[5]
			}
			continue
		}
		if len(f) < 2 {
			continue
		}
		kb, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		v := kb << 10
		switch f[0] {
		case "Rss:":
			u.rss += v
			switch {
			case path == exe:
				binRss += v
			case path == "[heap]":
				heap += v
			case strings.HasPrefix(path, "/"):
				otherFile += v
			}
		case "Anonymous:":
			u.anon += v
			if path == exe {
				binAnon += v
			}
		}
	}
	u.binFile = binRss - binAnon
	detail := fmt.Sprintf("rss %d KiB = binary %d KiB (%d file, %d written data) + anonymous %d KiB ([heap] %d) + other files %d KiB",
		u.rss>>10, binRss>>10, u.binFile>>10, binAnon>>10, (u.anon-binAnon)>>10, heap>>10, otherFile>>10)
	return u, detail
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
