package kube

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
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
)

// The helpers below run real signet processes, built from the checkout
// around this module, next to a kubetest cluster.

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// signetBinary builds cmd/signet of the checkout around this module (once
// per test binary, without -race: its packages' own tests have it) and
// returns its path.
func signetBinary(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("runs signet processes against a real API server: skipped with -short")
	}
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "signet-kube-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "signet")
		// -C: build in signet's own module, whose go.mod this module's
		// build list never sees.
		// signet_testhooks: SIGNET_TEST_CGROUP_ROOT puts a test's
		// process "in a container" (cmd/internal/agentcmd/k8s_testhook.go).
		// The image's tags too (deploy/container/Containerfile): with
		// nethttpomithttp2 the Kubernetes API client speaks HTTP/1.1, as
		// the shipped binaries do.
		out, err := exec.Command("go", "build", "-C", filepath.Join("..", ".."), "-tags", "signet_testhooks grpcnotrace nethttpomithttp2", "-o", binPath, "./cmd/signet").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("building signet: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// shortTempDir returns a temp dir with a short path: Unix socket paths are
// limited to 108 bytes.
func shortTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sk")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
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

// proc is a running signet process, stopped at cleanup; its output is
// logged when the test failed.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error
}

func startSignet(t testing.TB, name string, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(signetBinary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, out: out, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("--- output of %s ---\n%s", name, out.String())
		}
	})
	return p
}

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

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits (bounded by deadline) for the process to exit.
func (p *proc) wait(t testing.TB) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(deadline):
		t.Fatalf("%s still running after %s:\n%s", p.name, deadline, p.out.String())
		return nil
	}
}

type cliResult struct {
	stdout, stderr string
	code           int
}

func runSignet(t testing.TB, env []string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, signetBinary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := cliResult{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("running signet %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// signetServer is a running `signet server`.
type signetServer struct {
	*proc
	dir, addr, admin string
	env              []string
}

const trustDomain = "example.org"

// startServer runs a server with config (YAML, without data_dir, listen
// and admin_socket, which it adds) and waits until its admin socket
// answers.
func startServer(t *testing.T, config string) *signetServer {
	t.Helper()
	dir := shortTempDir(t)
	s := &signetServer{dir: dir, addr: freeAddr(t), admin: filepath.Join(dir, "admin.sock")}
	s.env = []string{"SIGNET_KEY_PASSPHRASE=kube-test-passphrase", "SIGNET_ADMIN_SOCKET=" + s.admin}
	cfgPath := filepath.Join(dir, "server.yaml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	s.proc = startSignet(t, "server", s.env, "server", "--config", cfgPath, "--trust-domain", trustDomain,
		"--data-dir", filepath.Join(dir, "data"), "--listen", s.addr, "--admin-socket", s.admin, "--log-level", "debug")
	poll(t, "the server's admin socket", func() error {
		if s.exited() {
			t.Fatalf("server exited: %v\n%s", s.err, s.out.String())
		}
		if r := runSignet(t, s.env, "bundle", "show"); r.code != 0 {
			return errors.New(r.stderr)
		}
		return nil
	})
	return s
}

// cli runs an operator command that must succeed and returns its stdout.
func (s *signetServer) cli(t testing.TB, args ...string) string {
	t.Helper()
	r := runSignet(t, s.env, args...)
	if r.code != 0 {
		t.Fatalf("signet %s: exit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

func (s *signetServer) bundleFile(t testing.TB) string {
	t.Helper()
	p := filepath.Join(s.dir, "bundle.pem")
	if err := os.WriteFile(p, []byte(s.cli(t, "bundle", "show")), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

type nodeRow struct {
	SPIFFEID string `json:"spiffe_id"`
	Attestor string `json:"attestor"`
}

func (s *signetServer) nodes(t testing.TB) []nodeRow {
	t.Helper()
	var rows []nodeRow
	if err := json.Unmarshal([]byte(s.cli(t, "node", "list", "-o", "json")), &rows); err != nil {
		t.Fatal(err)
	}
	return rows
}

type auditRecord struct {
	Type    string            `json:"type"`
	Outcome string            `json:"outcome"`
	Subject string            `json:"subject"`
	Details map[string]string `json:"details"`
}

// audit returns the audit records of the given type, oldest first.
func (s *signetServer) audit(t testing.TB, typ string) []auditRecord {
	t.Helper()
	var out []auditRecord
	sc := bufio.NewScanner(strings.NewReader(s.cli(t, "audit", "export", "--type", typ)))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r auditRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		if r.Type == typ {
			out = append(out, r)
		}
	}
	return out
}
