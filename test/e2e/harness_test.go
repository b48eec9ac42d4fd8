package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/signet-mesh/signet/internal/testdir"
)

// The end-to-end suites build cmd/signet once and run it as real processes
// talking over real sockets (TCP on 127.0.0.1 and Unix sockets under the
// test's temp dir).

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string

	// imageBin, when set, is the binary signetBinary returns instead: the
	// RSS benchmarks measure the build the container image ships (see
	// useImageBinary).
	imageBin string
	imageDir string
	// imageAgentBin is signetAgentBinary's counterpart of imageBin.
	imageAgentBin string
)

func TestMain(m *testing.M) {
	code := m.Run()
	for _, dir := range []string{binDir, imageDir} {
		if dir != "" {
			os.RemoveAll(dir)
		}
	}
	os.Exit(code)
}

// imageTags are the build tags of the image's binaries
// (deploy/container/Containerfile): no gRPC trace pages, no HTTP/2 in
// net/http.
const imageTags = "grpcnotrace nethttpomithttp2"

// testTags are the build tags of the binaries the tests run: the image's,
// plus the test hooks.
const testTags = "signet_testhooks " + imageTags

// signetBinary builds cmd/signet (once per test binary) and returns its path.
func signetBinary(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: skipped with -short")
	}
	if imageBin != "" {
		return imageBin
	}
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "signet-e2e-bin-")
		if binErr != nil {
			return
		}
		// Workloads run as other uids in some tests must reach the binary.
		os.Chmod(binDir, 0o755)
		binPath = filepath.Join(binDir, "signet")
		// Built without -race even under `go test -race`: the packages'
		// own tests run with the race detector, and an instrumented binary
		// makes every key decryption and handshake several times slower.
		// The signet_testhooks tag links the crash points some tests use
		// (cmd/signet/crash_hook.go); product builds have none.
		cmd := exec.Command("go", "build", "-tags", testTags, "-o", binPath, "github.com/signet-mesh/signet/cmd/signet")
		out, err := cmd.CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("building signet: %v\n%s", err, out)
			return
		}
		// go test caches a package's result by the files the test itself
		// opened, and knows nothing of what `go build` read: touch every
		// source file of the module, so that a change anywhere in signet
		// reruns these tests instead of replaying a cached pass.
		binErr = touchSources(filepath.Join("..", ".."))
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

var (
	agentBinOnce sync.Once
	agentBinPath string
	agentBinErr  error
)

// signetAgentBinary builds cmd/signet-agent (once per test binary, beside
// signet and with the same tags) and returns its path.
func signetAgentBinary(t testing.TB) string {
	t.Helper()
	signetBinary(t) // skips under -short; makes binDir
	if imageAgentBin != "" {
		return imageAgentBin
	}
	agentBinOnce.Do(func() {
		agentBinPath = filepath.Join(binDir, "signet-agent")
		cmd := exec.Command("go", "build", "-tags", testTags, "-o", agentBinPath, "github.com/signet-mesh/signet/cmd/signet-agent")
		if out, err := cmd.CombinedOutput(); err != nil {
			agentBinErr = fmt.Errorf("building signet-agent: %v\n%s", err, out)
		}
	})
	if agentBinErr != nil {
		t.Fatal(agentBinErr)
	}
	return agentBinPath
}

// freeAddr returns a 127.0.0.1 address that was free a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// proc is a running signet process.
type proc struct {
	t    testing.TB
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testKDFIterations is the PBKDF2 iteration count of the keys the test
// processes write (SIGNET_TEST_KDF_ITERATIONS, read only by binaries built
// with testTags): at the default of 600,000 each server spent about 2 s of
// CPU encrypting its keys, and each agent most of a second per node SVID.
// A test can set the variable itself to take the default back.
const testKDFIterations = "SIGNET_TEST_KDF_ITERATIONS=1000"

// processEnv is the environment of a process a test starts: the test's
// own, testKDFIterations, then env.
func processEnv(env []string) []string {
	return append(append(os.Environ(), testKDFIterations), env...)
}

// start runs signet with args and env (added to the test's environment);
// the process is killed at cleanup, and its output is logged if the test
// failed.
func start(t testing.TB, name string, env []string, args ...string) *proc {
	t.Helper()
	return startBin(t, signetBinary(t), name, env, args...)
}

// startBin is start with another binary (signet-agent).
func startBin(t testing.TB, bin, name string, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = processEnv(env)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	p := &proc{t: t, name: name, cmd: cmd, out: out, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("--- output of %s ---\n%s", name, out.String())
		}
	})
	return p
}

// stop sends SIGTERM and waits (bounded) for a clean exit.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// kill stops the process with SIGKILL (a crash).
func (p *proc) kill() {
	p.cmd.Process.Kill()
	<-p.done
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// result is the outcome of a CLI run.
type result struct {
	stdout, stderr string
	code           int
}

// runCLI runs one signet command to completion.
func runCLI(t testing.TB, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, signetBinary(t), args...)
	cmd.Env = processEnv(env)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("running signet %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// mustCLI runs a command that must succeed and returns its stdout.
func mustCLI(t testing.TB, env []string, args ...string) string {
	t.Helper()
	r := runCLI(t, env, args...)
	if r.code != 0 {
		t.Fatalf("signet %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testServer is a running `signet server`.
type testServer struct {
	*proc
	dir, addr, admin, td string
	env                  []string
	// data is the data dir; empty means dir/data.
	data string
}

// dataDir is the server's --data-dir.
func (s *testServer) dataDir() string {
	if s.data != "" {
		return s.data
	}
	return filepath.Join(s.dir, "data")
}

const testPassphrase = "e2e-test-passphrase"

func startServer(t testing.TB, extra ...string) *testServer {
	t.Helper()
	dir := testdir.Short(t)
	s := &testServer{dir: dir, addr: freeAddr(t), admin: filepath.Join(dir, "admin.sock"), td: "example.org"}
	s.env = []string{"SIGNET_KEY_PASSPHRASE=" + testPassphrase, "SIGNET_ADMIN_SOCKET=" + s.admin}
	s.restart(t, extra...)
	return s
}

// restart starts the server process (again) on the same data dir and port.
func (s *testServer) restart(t testing.TB, extra ...string) {
	t.Helper()
	args := append([]string{"server", "--trust-domain", s.td, "--data-dir", s.dataDir(),
		"--listen", s.addr, "--admin-socket", s.admin, "--log-level", "debug"}, extra...)
	s.proc = start(t, "server", s.env, args...)
	waitFor(t, 30*time.Second, "server admin socket", func() bool {
		if s.proc.exited() {
			t.Fatalf("server exited: %v\n%s", s.proc.err, s.proc.out.String())
		}
		return runCLI(t, s.env, "bundle", "show").code == 0
	})
}

func (s *testServer) cli(t testing.TB, args ...string) string {
	t.Helper()
	return mustCLI(t, s.env, args...)
}

func (s *testServer) run(t testing.TB, args ...string) result {
	t.Helper()
	return runCLI(t, s.env, args...)
}

// bundleFile writes the server's bundle to a file for agents.
func (s *testServer) bundleFile(t testing.TB) string {
	t.Helper()
	p := filepath.Join(s.dir, "bundle.pem")
	if err := os.WriteFile(p, []byte(s.cli(t, "bundle", "show")), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// touchSources opens (and closes) every Go source, go.mod and go.sum file
// under root, so go test records them as inputs of this package's result.
func touchSources(root string) error {
	return filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if name := d.Name(); strings.HasSuffix(name, ".go") || name == "go.mod" || name == "go.sum" {
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			f.Close()
		}
		return nil
	})
}
