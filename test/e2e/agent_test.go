package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	workloadpb "github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"

	"github.com/signet-mesh/signet/internal/testdir"
)

// testAgent is a running `signet agent`, or `signet-agent` when bin says
// so.
type testAgent struct {
	*proc
	name, dir, socket string
	server            *testServer
	nodeID            string
	// bin is the agent binary: "signet" runs `signet agent`,
	// "signet-agent" the agent's own binary.
	bin string
}

// agentBin is the binary new testAgents run ("signet" when empty); see
// useAgentBinary.
var agentBin string

// useAgentBinary makes tb's new agents run bin ("signet" or
// "signet-agent") until tb ends.
func useAgentBinary(tb testing.TB, bin string) {
	tb.Helper()
	agentBin = bin
	tb.Cleanup(func() { agentBin = "" })
}

// startAgent attests a new agent named name with a fresh join token.
func startAgent(t *testing.T, s *testServer, name string) *testAgent {
	t.Helper()
	return startAgentTB(t, s, name)
}

func startAgentTB(t testing.TB, s *testServer, name string, extra ...string) *testAgent {
	t.Helper()
	var tok struct {
		Token    string `json:"token"`
		SPIFFEID string `json:"spiffe_id"`
	}
	if err := json.Unmarshal([]byte(s.cli(t, "token", "create", "--node-name", name, "-o", "json")), &tok); err != nil {
		t.Fatal(err)
	}
	dir := testdir.Short(t)
	os.Chmod(dir, 0o755) // workloads of other uids reach the socket
	a := &testAgent{name: name, dir: dir, socket: filepath.Join(dir, "agent.sock"), server: s, nodeID: tok.SPIFFEID, bin: agentBin}
	a.run(t, append([]string{"--join-token", tok.Token}, extra...)...)
	return a
}

func (a *testAgent) run(t testing.TB, extra ...string) {
	t.Helper()
	args := append([]string{"agent", "--server-address", a.server.addr, "--trust-domain", a.server.td,
		"--trust-bundle", a.server.bundleFile(t), "--socket", a.socket, "--data-dir", filepath.Join(a.dir, "data"), "--log-level", "debug"}, extra...)
	if a.bin == "signet-agent" {
		// The same command line, without the command word.
		a.proc = startBin(t, signetAgentBinary(t), "signet-agent "+a.name, a.server.env, args[1:]...)
	} else {
		a.proc = start(t, "agent "+a.name, a.server.env, args...)
	}
	waitFor(t, 30*time.Second, "agent socket", func() bool {
		if a.proc.exited() {
			t.Fatalf("agent %s exited: %v\n%s", a.name, a.proc.err, a.proc.out.String())
		}
		_, err := os.Stat(a.socket)
		return err == nil
	})
}

func (a *testAgent) addr() string { return "unix://" + a.socket }

// entryFor registers id for this test process's uid under agent a.
func (a *testAgent) entryFor(t *testing.T, id string, extra ...string) string {
	t.Helper()
	return a.entryForTB(t, id, extra...)
}

func (a *testAgent) entryForTB(t testing.TB, id string, extra ...string) string {
	t.Helper()
	args := append([]string{"entry", "create", "--spiffe-id", id, "--parent-id", a.nodeID, "--selector", "unix:uid:" + strconv.Itoa(os.Getuid())}, extra...)
	return strings.TrimSpace(a.server.cli(t, args...))
}

// fetchIDs returns the SPIFFE IDs the agent serves this process, waiting
// until want are all there.
func fetchUntil(t *testing.T, a *testAgent, timeout time.Duration, cond func(*workloadapi.X509Context) bool) *workloadapi.X509Context {
	t.Helper()
	var last *workloadapi.X509Context
	var lastErr error
	waitFor(t, timeout, "X509 context from "+a.name, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		last, lastErr = workloadapi.FetchX509Context(ctx, workloadapi.WithAddr(a.addr()))
		return lastErr == nil && cond(last)
	})
	return last
}

func ids(x *workloadapi.X509Context) []string {
	var out []string
	for _, s := range x.SVIDs {
		out = append(out, s.ID.String())
	}
	return out
}

func hasOnly(want ...string) func(*workloadapi.X509Context) bool {
	return func(x *workloadapi.X509Context) bool {
		got := ids(x)
		if len(got) != len(want) {
			return false
		}
		for _, w := range want {
			if !contains(got, w) {
				return false
			}
		}
		return true
	}
}

// TestAgents runs one server and two agents as processes and checks node
// isolation, restarts without a token, serving from cache while the CA is
// down, and catching up when it returns.
func TestAgents(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	a := startAgent(t, s, "node-a")
	b := startAgent(t, s, "node-b")
	a.entryFor(t, "spiffe://example.org/a/web")
	b.entryFor(t, "spiffe://example.org/b/web")

	// Each agent serves only its own node's entries, though both entries
	// match this process.
	xa := fetchUntil(t, a, 30*time.Second, hasOnly("spiffe://example.org/a/web"))
	fetchUntil(t, b, 30*time.Second, hasOnly("spiffe://example.org/b/web"))
	if _, err := xa.Bundles.GetX509BundleForTrustDomain(spiffeid.RequireTrustDomainFromString("example.org")); err != nil {
		t.Fatal(err)
	}

	// A new entry appears within a second or so; a deleted one disappears.
	id2 := a.entryFor(t, "spiffe://example.org/a/api")
	fetchUntil(t, a, 5*time.Second, hasOnly("spiffe://example.org/a/web", "spiffe://example.org/a/api"))
	s.cli(t, "entry", "delete", id2)
	fetchUntil(t, a, 5*time.Second, hasOnly("spiffe://example.org/a/web"))

	// Restart agent a without a token: it reuses its stored identity.
	a.stop()
	a.run(t)
	fetchUntil(t, a, 30*time.Second, hasOnly("spiffe://example.org/a/web"))

	// Server down: both agents keep serving cached SVIDs.
	s.stop()
	for _, ag := range []*testAgent{a, b} {
		x := fetchUntil(t, ag, 10*time.Second, func(x *workloadapi.X509Context) bool { return len(x.SVIDs) == 1 })
		if time.Now().After(x.SVIDs[0].Certificates[0].NotAfter) {
			t.Fatal("served an expired SVID")
		}
	}
	// Server back: new entries flow again without restarting agents.
	s.restart(t)
	b.entryFor(t, "spiffe://example.org/b/late")
	fetchUntil(t, b, 60*time.Second, hasOnly("spiffe://example.org/b/web", "spiffe://example.org/b/late"))
}

// TestRotationShortTTL: with a 10 s TTL, SVIDs rotate again and again, none
// is ever served expired, and rotation resumes after a CA outage.
func TestRotationShortTTL(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	a := startAgent(t, s, "rot")
	a.entryFor(t, "spiffe://example.org/rot", "--x509-ttl", "10s")

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	src, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr(a.addr())))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()

	serials := map[string]bool{}
	check := func() {
		svid, err := src.GetX509SVID()
		if err != nil {
			t.Fatal(err)
		}
		leaf := svid.Certificates[0]
		if now := time.Now(); now.After(leaf.NotAfter) {
			t.Fatalf("served an expired SVID: not_after %s, now %s", leaf.NotAfter, now)
		}
		serials[leaf.SerialNumber.String()] = true
	}
	waitFor(t, 40*time.Second, "three rotations", func() bool { check(); return len(serials) >= 4 })
	// Rotation happens at about half the TTL, not in a loop: over 10 s a
	// 10 s SVID is replaced about twice.
	windowStart := len(serials)
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		check()
	}
	if n := len(serials) - windowStart; n < 1 || n > 4 {
		t.Fatalf("%d rotations in 10 s of a 10 s SVID; want about 2", n)
	}

	// CA outage shorter than the TTL: the agent serves the last SVID, then
	// rotation resumes when the CA is back.
	s.stop()
	before := len(serials)
	for range 20 {
		check()
		time.Sleep(100 * time.Millisecond)
	}
	s.restart(t)
	waitFor(t, 40*time.Second, "rotation after the CA returned", func() bool { check(); return len(serials) >= before+2 })
}

// TestWorkloadAPIInterop uses go-spiffe as the client: X509Source and
// JWTSource, a JWT validated against the served bundle, and two spiffetls
// endpoints holding an mTLS connection with SVIDs from the agent.
func TestWorkloadAPIInterop(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	a := startAgent(t, s, "interop")
	a.entryFor(t, "spiffe://example.org/server")
	fetchUntil(t, a, 30*time.Second, hasOnly("spiffe://example.org/server"))

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	clientOpts := workloadapi.WithClientOptions(workloadapi.WithAddr(a.addr()))
	x509src, err := workloadapi.NewX509Source(ctx, clientOpts)
	if err != nil {
		t.Fatal(err)
	}
	defer x509src.Close()
	jwtsrc, err := workloadapi.NewJWTSource(ctx, clientOpts)
	if err != nil {
		t.Fatal(err)
	}
	defer jwtsrc.Close()

	tok, err := jwtsrc.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "spiffe://example.org/peer"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jwtsvid.ParseAndValidate(tok.Marshal(), jwtsrc, []string{"spiffe://example.org/peer"}); err != nil {
		t.Fatalf("JWT-SVID does not validate against the served JWT bundle: %v", err)
	}
	client, err := workloadapi.New(ctx, workloadapi.WithAddr(a.addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if got, err := client.ValidateJWTSVID(ctx, tok.Marshal(), "spiffe://example.org/peer"); err != nil || got.ID.String() != "spiffe://example.org/server" {
		t.Fatalf("ValidateJWTSVID = %v, %v", got, err)
	}

	// mTLS between two go-spiffe endpoints on loopback.
	ln, err := spiffetls.ListenWithMode(ctx, "tcp", "127.0.0.1:0",
		spiffetls.MTLSServerWithSource(tlsconfig.AuthorizeID(spiffeid.RequireFromString("spiffe://example.org/server")), x509src))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		buf := make([]byte, 5)
		if _, err := conn.Read(buf); err == nil {
			conn.Write(buf)
		}
	}()
	conn, err := spiffetls.DialWithMode(ctx, "tcp", ln.Addr().String(),
		spiffetls.MTLSClientWithSource(tlsconfig.AuthorizeID(spiffeid.RequireFromString("spiffe://example.org/server")), x509src))
	if err != nil {
		t.Fatalf("mTLS dial: %v", err)
	}
	defer conn.Close()
	conn.Write([]byte("hello"))
	buf := make([]byte, 5)
	if _, err := conn.Read(buf); err != nil || string(buf) != "hello" {
		t.Fatalf("echo over mTLS: %q, %v", buf, err)
	}
}

// TestWorkloadAPIErrors: a missing header is InvalidArgument, a caller with
// no entries is PermissionDenied, and an agent that is still starting
// answers Unavailable.
func TestWorkloadAPIErrors(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	a := startAgent(t, s, "errs")
	a.entryFor(t, "spiffe://example.org/errs")
	fetchUntil(t, a, 30*time.Second, hasOnly("spiffe://example.org/errs"))

	conn, err := grpc.NewClient(a.addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := workloadpb.NewSpiffeWorkloadAPIClient(conn).FetchX509SVID(ctx, &workloadpb.X509SVIDRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("no security header: %v, want InvalidArgument", err)
	}

	// Another uid has no entries: run the CLI as nobody.
	if os.Getuid() == 0 {
		cmd := exec.Command(signetBinary(t), "workload", "fetch", "--socket", a.socket, "--timeout", "5s")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "PermissionDenied") {
			t.Errorf("uid 65534: %v\n%s\nwant PermissionDenied", err, out)
		}
	}

	// An agent whose CA is unreachable is still starting: Unavailable.
	dir := testdir.Short(t)
	sock := filepath.Join(dir, "agent.sock")
	start(t, "starting agent", s.env, "agent", "--server-address", freeAddr(t), "--trust-domain", "example.org",
		"--trust-bundle", s.bundleFile(t), "--join-token", "unused", "--socket", sock, "--data-dir", filepath.Join(dir, "data"))
	waitFor(t, 30*time.Second, "starting agent socket", func() bool { _, err := os.Stat(sock); return err == nil })
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	_, err = workloadapi.FetchX509Context(ctx2, workloadapi.WithAddr("unix://"+sock))
	if status.Code(err) != codes.Unavailable {
		t.Errorf("starting agent: %v, want Unavailable", err)
	}
}

// TestAgentBatchesMints: 1000 new entries for one node cost a handful of
// mint calls, not 1000, and every SVID is issued.
func TestAgentBatchesMints(t *testing.T) {
	t.Parallel()
	metrics := freeAddr(t)
	s := startServer(t, "--metrics-listen", metrics)
	a := startAgent(t, s, "batcher")
	file := filepath.Join(s.dir, "entries.yaml")
	writeEntries(t, file, a.nodeID, 1000, func(int) string { return "unix:uid:" + strconv.Itoa(os.Getuid()) })
	s.cli(t, "entry", "create", "--file", file)
	fetchUntil(t, a, 60*time.Second, func(x *workloadapi.X509Context) bool { return len(x.SVIDs) == 1000 })
	issued, _ := metric(scrape(t, metrics), "signet_svids_issued_total", map[string]string{"kind": "workload", "outcome": "success"})
	calls, ok := metric(scrape(t, metrics), "signet_node_api_requests_total", map[string]string{"method": "MintX509SVIDs"})
	if !ok || issued < 1000 || calls > 10 {
		t.Fatalf("%v workload SVIDs issued in %v MintX509SVIDs calls; want 1000 in at most 10", issued, calls)
	}
	t.Logf("1000 SVIDs in %v mint calls", calls)
}

// TestSignetAgentBinary: the signet-agent binary is a whole agent: it
// attests to a real `signet server` with the flags of `signet agent`,
// serves an SVID over the Workload API, and answers its own healthcheck.
func TestSignetAgentBinary(t *testing.T) {
	s := startServer(t)
	useAgentBinary(t, "signet-agent")
	a := startAgent(t, s, "node-sa")
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", a.cmd.Process.Pid)); err != nil || filepath.Base(exe) != "signet-agent" {
		t.Fatalf("the agent process runs %q (%v), want signet-agent", exe, err)
	}
	id := "spiffe://example.org/workload-sa"
	a.entryFor(t, id)
	fetchUntil(t, a, 30*time.Second, hasOnly(id))

	run := func(args ...string) result {
		t.Helper()
		var stdout, stderr strings.Builder
		cmd := exec.Command(signetAgentBinary(t), args...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		r := result{stdout: stdout.String(), stderr: stderr.String()}
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
			r.code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return r
	}
	waitFor(t, 30*time.Second, "signet-agent healthcheck", func() bool {
		r := run("healthcheck", "--socket", a.socket, "--timeout", "2s")
		return r.code == 0 && r.stdout == "ready\n"
	})
	if r := run("version"); r.code != 0 || !strings.HasPrefix(r.stdout, "signet-agent ") {
		t.Errorf("signet-agent version: exit %d, %q", r.code, r.stdout)
	}
	a.stop()
	if r := run("healthcheck", "--socket", a.socket, "--timeout", "2s"); r.code != 1 || !strings.HasPrefix(r.stderr, "signet-agent: agent at "+a.socket) {
		t.Errorf("healthcheck of a stopped agent: exit %d, stderr %q; want exit 1 naming the socket", r.code, r.stderr)
	}
}
