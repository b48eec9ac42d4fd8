package e2e

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	sdsclient "github.com/signet-mesh/signet/sds/client"
	sdsserver "github.com/signet-mesh/signet/sds/server"
)

// authority is `signet root list|status -o json`'s item.
type authority struct {
	ID              string `json:"id"`
	Kind            string `json:"kind"`
	State           string `json:"state"`
	KeyType         string `json:"key_type"`
	NotAfter        string `json:"not_after"`
	ParentID        string `json:"parent_id"`
	UnexpiredSVIDs  int64  `json:"unexpired_svids"`
	AgentsApplied   *int64 `json:"agents_applied"`
	ConnectedAgents *int64 `json:"connected_agents"`
	ExpiringSoon    bool   `json:"expiring_soon"`
	CreatedAt       string `json:"created_at"`
}

func (s *testServer) authorities(t testing.TB) []authority {
	t.Helper()
	var out []authority
	if err := json.Unmarshal([]byte(s.cli(t, "root", "list", "--all", "-o", "json")), &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func rootsIn(auths []authority, state string) []authority {
	var out []authority
	for _, a := range auths {
		if a.Kind == "root" && a.State == state {
			out = append(out, a)
		}
	}
	return out
}

// checkStates fails unless the authorities are in a defined state: exactly
// one active root, at most one prepared and one retiring, every state one
// of the four, and one active intermediate, under the active root. It
// returns the active root.
func checkStates(t testing.TB, auths []authority) authority {
	t.Helper()
	var inters []authority
	for _, a := range auths {
		switch a.State {
		case "prepared", "active", "retiring", "retired":
		default:
			t.Fatalf("authority %s in undefined state %q", a.ID, a.State)
		}
		if a.Kind == "intermediate" && a.State == "active" {
			inters = append(inters, a)
		}
	}
	active := rootsIn(auths, "active")
	if len(active) != 1 || len(rootsIn(auths, "prepared")) > 1 || len(rootsIn(auths, "retiring")) > 1 || len(inters) != 1 {
		t.Fatalf("not a defined state: %d active, %d prepared, %d retiring roots, %d active intermediates\n%+v",
			len(active), len(rootsIn(auths, "prepared")), len(rootsIn(auths, "retiring")), len(inters), auths)
	}
	if inters[0].ParentID != active[0].ID {
		t.Fatalf("active intermediate %s is under %s, not the active root %s", inters[0].ID, inters[0].ParentID, active[0].ID)
	}
	return active[0]
}

// waitApplied waits until `root status` shows that applied of connected
// agents have applied the bundle holding root id.
func (s *testServer) waitApplied(t testing.TB, id string, applied, connected int64) {
	t.Helper()
	waitFor(t, 30*time.Second, fmt.Sprintf("%d of %d agents to apply the bundle holding %s", applied, connected, id), func() bool {
		var st []authority
		if err := json.Unmarshal([]byte(s.cli(t, "root", "status", "-o", "json")), &st); err != nil {
			t.Fatal(err)
		}
		for _, a := range st {
			if a.ID == id && a.AgentsApplied != nil {
				return *a.AgentsApplied == applied && *a.ConnectedAgents == connected
			}
		}
		return false
	})
}

// retireWhenAllowed runs `root retire` until it is accepted: refusals must
// be for SVIDs still chaining to the root.
func (s *testServer) retireWhenAllowed(t testing.TB, old string) {
	t.Helper()
	waitFor(t, 60*time.Second, "retire to be accepted", func() bool {
		r := s.run(t, "root", "retire")
		if r.code == 0 {
			return strings.TrimSpace(r.stdout) == old
		}
		if !strings.Contains(r.stderr, "still chain to root "+old) {
			t.Fatalf("retire refused for another reason: %s", r.stderr)
		}
		time.Sleep(200 * time.Millisecond)
		return false
	})
}

func (s *testServer) bundleRoots(t testing.TB) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	rest := []byte(s.cli(t, "bundle", "show"))
	for {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			return out
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
}

func pause(t testing.TB, a *testAgent) {
	t.Helper()
	if err := a.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.cmd.Process.Signal(syscall.SIGCONT) })
}

func resume(t testing.TB, a *testAgent) {
	t.Helper()
	if err := a.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
}

func x509Source(t testing.TB, a *testAgent) *workloadapi.X509Source {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	src, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr(a.addr())))
	if err != nil {
		t.Fatalf("X509Source from %s: %v", a.name, err)
	}
	t.Cleanup(func() { src.Close() })
	return src
}

// mtlsLoop is two workloads keeping mTLS traffic going: a new go-spiffe
// spiffetls connection (a full handshake, then an echo) every interval,
// each side with its certificates and bundle from its own agent.
type mtlsLoop struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       []string
	stop       func()
}

func startMTLSLoop(t testing.TB, server, client *workloadapi.X509Source, serverID, clientID spiffeid.ID, interval time.Duration) *mtlsLoop {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ln, err := spiffetls.ListenWithMode(ctx, "tcp", "127.0.0.1:0", spiffetls.MTLSServerWithSource(tlsconfig.AuthorizeID(clientID), server))
	if err != nil {
		t.Fatal(err)
	}
	l := &mtlsLoop{}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(10 * time.Second))
				buf := make([]byte, 4)
				if _, err := io.ReadFull(conn, buf); err == nil {
					conn.Write(buf)
				}
			}()
		}
	})
	wg.Go(func() {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if err := l.once(ctx, ln.Addr().String(), client, serverID); err != nil {
				if ctx.Err() != nil {
					return
				}
				l.failed.Add(1)
				l.mu.Lock()
				if len(l.errs) < 10 {
					l.errs = append(l.errs, time.Now().Format("15:04:05.000")+" "+err.Error())
				}
				l.mu.Unlock()
				continue
			}
			l.ok.Add(1)
		}
	})
	l.stop = func() {
		cancel()
		ln.Close()
		wg.Wait()
	}
	t.Cleanup(l.stop)
	return l
}

func (l *mtlsLoop) once(ctx context.Context, addr string, client *workloadapi.X509Source, serverID spiffeid.ID) error {
	conn, err := spiffetls.DialWithMode(ctx, "tcp", addr, spiffetls.MTLSClientWithSource(tlsconfig.AuthorizeID(serverID), client),
		spiffetls.WithDialer(&net.Dialer{Timeout: 10 * time.Second}))
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte("ping")); err != nil {
		return err
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(conn, buf); err != nil {
		return fmt.Errorf("echo: %w", err)
	}
	if string(buf) != "ping" {
		return fmt.Errorf("echo %q", buf)
	}
	return nil
}

func (l *mtlsLoop) check(t testing.TB) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := l.failed.Load(); n > 0 {
		t.Errorf("%d of %d mTLS connections failed; first errors:\n%s", n, n+l.ok.Load(), strings.Join(l.errs, "\n"))
	}
}

// verifies reports whether svid chains to roots.
func verifies(svid *x509svid.SVID, roots []*x509.Certificate) bool {
	_, _, err := x509svid.Verify(svid.Certificates, x509bundle.FromX509Authorities(svid.ID.TrustDomain(), roots))
	return err == nil
}

// onlyRoot reports whether src's bundle is exactly root and its SVID
// chains to it.
func onlyRoot(t testing.TB, src *workloadapi.X509Source, td spiffeid.TrustDomain, root *x509.Certificate) bool {
	t.Helper()
	b, err := src.GetX509BundleForTrustDomain(td)
	if err != nil {
		t.Fatal(err)
	}
	roots := b.X509Authorities()
	if len(roots) != 1 || !roots[0].Equal(root) {
		return false
	}
	svid, err := src.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = x509svid.Verify(svid.Certificates, x509bundle.FromX509Authorities(td, []*x509.Certificate{root}))
	return err == nil
}

// TestRootRotation runs the whole rotation twice in a row with real
// processes (a CA with a 40 s intermediate, two agents, 30 s SVIDs) while
// two go-spiffe workloads open a new mTLS connection every 50 ms, and
// requires that not one fails. On the way: every bundle change reaches the
// workloads and an SDS client within seconds, activate is refused while an
// agent is stale (stopped with SIGSTOP) and retire while old SVIDs are
// current; at the end every SVID chains to the new root, the only one in
// the bundle, and intermediates have rotated by themselves too.
func TestRootRotation(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--intermediate-ttl", "40s")
	a := startAgent(t, s, "node-a")
	b := startAgent(t, s, "node-b")
	td := spiffeid.RequireTrustDomainFromString(s.td)
	serverID := spiffeid.RequireFromPath(td, "/rot/server")
	clientID := spiffeid.RequireFromPath(td, "/rot/client")
	a.entryFor(t, serverID.String(), "--x509-ttl", "30s")
	b.entryFor(t, clientID.String(), "--x509-ttl", "30s")
	fetchUntil(t, a, 30*time.Second, hasOnly(serverID.String()))
	fetchUntil(t, b, 30*time.Second, hasOnly(clientID.String()))
	srcA, srcB := x509Source(t, a), x509Source(t, b)
	loop := startMTLSLoop(t, srcA, srcB, serverID, clientID, 50*time.Millisecond)
	waitFor(t, 30*time.Second, "mTLS traffic", func() bool { return loop.ok.Load() >= 5 })
	// A proxy of node-a follows the roots over SDS, as Envoy does.
	sds := sdsclient.New(sdsclient.Config{SocketPath: a.socket, ResourceNames: []string{sdsserver.RootCAName}})
	sdsCtx, stopSDS := context.WithCancel(context.Background())
	defer stopSDS()
	go sds.Run(sdsCtx)
	// bundlesHold waits until the SDS ROOTCA and both workloads' bundles
	// hold n roots: "agents push the new bundle within seconds".
	bundlesHold := func(n int) {
		t.Helper()
		waitFor(t, 5*time.Second, fmt.Sprintf("SDS and Workload API bundles with %d roots", n), func() bool {
			sec, ok := sds.Secret(sdsserver.RootCAName)
			if !ok || len(sec.Authorities) != n {
				return false
			}
			for _, src := range []*workloadapi.X509Source{srcA, srcB} {
				if b, err := src.GetX509BundleForTrustDomain(td); err != nil || len(b.X509Authorities()) != n {
					return false
				}
			}
			return true
		})
	}
	bundlesHold(1)

	for round := 1; round <= 2; round++ {
		old := checkStates(t, s.authorities(t))
		if round == 1 {
			// Nothing is retiring yet.
			if r := s.run(t, "root", "retire"); r.code == 0 || !strings.Contains(r.stderr, "no retiring root") {
				t.Fatalf("retire before any activation: exit %d, %s", r.code, r.stderr)
			}
			// A connected agent that has not applied the bundle (it is
			// stopped) holds activation back.
			s.waitApplied(t, old.ID, 2, 2)
			pause(t, b)
		}
		oldRoots := s.bundleRoots(t)
		before := time.Now()
		id := strings.TrimSpace(s.cli(t, "root", "prepare"))
		after := time.Now()
		// created_at: when the root entered the bundle, within the call.
		listed := false
		for _, a := range s.authorities(t) {
			if a.ID != id {
				continue
			}
			listed = true
			created, err := time.Parse(time.RFC3339Nano, a.CreatedAt)
			if err != nil || created.Before(before) || created.After(after) {
				t.Fatalf("prepared root's created_at %q (%v) is not within the prepare call [%s, %s]", a.CreatedAt, err, before.Format(time.RFC3339Nano), after.Format(time.RFC3339Nano))
			}
		}
		if !listed {
			t.Fatalf("root list does not show the prepared root %s", id)
		}
		if round == 1 {
			s.waitApplied(t, id, 1, 2) // node-a has it; node-b is stopped
			r := s.run(t, "root", "activate")
			if r.code != 1 || !strings.Contains(r.stderr, "1 of 2 connected agents have not applied bundle revision") ||
				!strings.Contains(r.stderr, b.nodeID) || !strings.Contains(r.stderr, "--force") {
				t.Fatalf("activate with a stale agent: exit %d\n%s", r.code, r.stderr)
			}
			resume(t, b)
		}
		s.waitApplied(t, id, 2, 2)
		bundlesHold(2)
		if round == 1 {
			// node-b cannot re-mint while stopped, so its SVID still
			// chains to the old root when retire is asked for below.
			pause(t, b)
		}
		if got := strings.TrimSpace(s.cli(t, "root", "activate", id, "--rotate-now")); got != id {
			t.Fatalf("activated %q, want %s", got, id)
		}
		if round == 1 {
			if r := s.run(t, "root", "retire"); r.code != 1 || !strings.Contains(r.stderr, "still chain to root "+old.ID) {
				t.Fatalf("retire while node-b still holds an SVID of the old root: exit %d, %s", r.code, r.stderr)
			}
			resume(t, b)
			// A peer outside signet's bundle distribution, still trusting
			// only the old root, accepts the new root's SVIDs: they carry
			// the intermediate cross-signed by the old root.
			newRoots := slices.DeleteFunc(s.bundleRoots(t), func(c *x509.Certificate) bool { return c.Equal(oldRoots[0]) })
			waitFor(t, 30*time.Second, "an SVID of the new root that the old root alone verifies", func() bool {
				svid, err := srcA.GetX509SVID()
				if err != nil {
					return false
				}
				_, _, errNew := x509svid.Verify(svid.Certificates, x509bundle.FromX509Authorities(td, newRoots))
				_, _, errOld := x509svid.Verify(svid.Certificates, x509bundle.FromX509Authorities(td, oldRoots))
				return errNew == nil && errOld == nil
			})
		}
		s.retireWhenAllowed(t, old.ID)

		roots := s.bundleRoots(t)
		if len(roots) != 1 {
			t.Fatalf("bundle holds %d roots after retire, want 1", len(roots))
		}
		bundlesHold(1)
		waitFor(t, 30*time.Second, "both workloads to trust only the new root", func() bool {
			return onlyRoot(t, srcA, td, roots[0]) && onlyRoot(t, srcB, td, roots[0])
		})
		if cur := checkStates(t, s.authorities(t)); cur.ID != id {
			t.Fatalf("active root %s, want %s", cur.ID, id)
		}
	}

	// Intermediates rotate by themselves too (40 s TTL): keep traffic
	// going across at least one more.
	countInters := func() int {
		n := 0
		for _, a := range s.authorities(t) {
			if a.Kind == "intermediate" {
				n++
			}
		}
		return n
	}
	inters := countInters()
	waitFor(t, 60*time.Second, "an intermediate rotation", func() bool { time.Sleep(time.Second); return countInters() > inters })
	before := loop.ok.Load()
	waitFor(t, 10*time.Second, "more mTLS traffic", func() bool { return loop.ok.Load() >= before+20 })
	loop.stop()
	loop.check(t)
	t.Logf("%d mTLS connections, %d intermediates, no failure", loop.ok.Load(), countInters())

	auths := s.authorities(t)
	checkStates(t, auths)
	if n := len(rootsIn(auths, "retired")); n != 2 {
		t.Errorf("%d retired roots, want 2", n)
	}
}

// TestRootRotationAutomatic: with root_rotation auto and 90-second roots,
// the server prepares, activates and retires roots by itself while two
// workloads keep up mTLS traffic; no handshake fails.
func TestRootRotationAutomatic(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--root-ttl", "90s", "--intermediate-ttl", "20s", "--root-rotation", "auto")
	a := startAgent(t, s, "node-a")
	b := startAgent(t, s, "node-b")
	td := spiffeid.RequireTrustDomainFromString(s.td)
	serverID := spiffeid.RequireFromPath(td, "/auto/server")
	clientID := spiffeid.RequireFromPath(td, "/auto/client")
	a.entryFor(t, serverID.String(), "--x509-ttl", "10s")
	b.entryFor(t, clientID.String(), "--x509-ttl", "10s")
	fetchUntil(t, a, 30*time.Second, hasOnly(serverID.String()))
	fetchUntil(t, b, 30*time.Second, hasOnly(clientID.String()))
	loop := startMTLSLoop(t, x509Source(t, a), x509Source(t, b), serverID, clientID, 50*time.Millisecond)
	first := checkStates(t, s.authorities(t))
	if out := s.cli(t, "root", "status"); !strings.Contains(out, "root rotation: automatic; next: prepare at ") {
		t.Errorf("root status does not show the schedule's next step:\n%s", out)
	}

	// Prepared at 45 s, activated at 75 s, retired once the SVIDs moved.
	waitFor(t, 120*time.Second, "the first root retired by the schedule", func() bool {
		time.Sleep(time.Second)
		for _, r := range rootsIn(s.authorities(t), "retired") {
			if r.ID == first.ID {
				return true
			}
		}
		return false
	})
	before := loop.ok.Load()
	waitFor(t, 10*time.Second, "more mTLS traffic", func() bool { return loop.ok.Load() >= before+20 })
	loop.stop()
	loop.check(t)
	if cur := checkStates(t, s.authorities(t)); cur.ID == first.ID {
		t.Errorf("the first root is still active")
	}
	if !strings.Contains(s.out.String(), "automatic root schedule") {
		t.Errorf("server log does not name the schedule as the actor of the steps")
	}
	t.Logf("%d mTLS connections across a scheduled root rotation, no failure", loop.ok.Load())
}

// TestRootRotationForce: --force takes activate past a stale agent and
// retire past live SVIDs.
func TestRootRotationForce(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	a := startAgent(t, s, "force-a")
	b := startAgent(t, s, "force-b")
	a.entryFor(t, "spiffe://example.org/force/a", "--x509-ttl", "20s")
	fetchUntil(t, a, 30*time.Second, hasOnly("spiffe://example.org/force/a"))
	old := checkStates(t, s.authorities(t))
	s.waitApplied(t, old.ID, 2, 2) // both connected

	pause(t, b)
	id := strings.TrimSpace(s.cli(t, "root", "prepare"))
	s.waitApplied(t, id, 1, 2)
	if r := s.run(t, "root", "activate", id); r.code != 1 || !strings.Contains(r.stderr, b.nodeID) {
		t.Fatalf("activate with a stale agent: exit %d, %s", r.code, r.stderr)
	}
	s.cli(t, "root", "activate", id, "--force")
	resume(t, b)

	// Without --rotate-now the SVIDs move at their half-life: the
	// current ones still chain to the old root.
	r := s.run(t, "root", "retire")
	if r.code != 1 || !strings.Contains(r.stderr, "still chain to root "+old.ID) || !strings.Contains(r.stderr, "spiffe://example.org/force/a") {
		t.Fatalf("retire with live SVIDs: exit %d, %s", r.code, r.stderr)
	}
	s.cli(t, "root", "retire", "--force")
	auths := s.authorities(t)
	if cur := checkStates(t, auths); cur.ID != id || len(rootsIn(auths, "retired")) != 1 || len(s.bundleRoots(t)) != 1 {
		t.Fatalf("after forced rotation: %+v", auths)
	}
	// The agents follow: new SVIDs under the new root.
	roots := s.bundleRoots(t)
	fetchUntil(t, a, 60*time.Second, func(x *workloadapi.X509Context) bool {
		return len(x.SVIDs) == 1 && verifies(x.SVIDs[0], roots)
	})
}

// TestRootRotationCrashSafety kills the CA with SIGKILL inside each step's
// transaction (before commit), right after the commit, and between steps,
// through the server's test hook (SIGNET_TEST_CRASH_AT). After each
// restart on the same data dir the authorities are in a defined state,
// never a mix, and the rotation carries on to the end with an agent
// following.
func TestRootRotationCrashSafety(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	a := startAgent(t, s, "crash")
	id := spiffeid.RequireFromString("spiffe://example.org/crash")
	a.entryFor(t, id.String(), "--x509-ttl", "30s")
	fetchUntil(t, a, 30*time.Second, hasOnly(id.String()))
	baseEnv := s.env

	// crashDuring starts the server with the crash point set, runs the
	// step until the server kills itself, and restarts it normally.
	crashDuring := func(point string, step ...string) {
		t.Helper()
		s.stop()
		s.env = append(append([]string(nil), baseEnv...), "SIGNET_TEST_CRASH_AT="+point)
		s.restart(t)
		s.env = baseEnv
		waitFor(t, 60*time.Second, "the server to crash at "+point, func() bool {
			if s.proc.exited() {
				return true
			}
			if r := s.run(t, append([]string{"root"}, step...)...); r.code == 0 {
				t.Fatalf("root %s succeeded: the server did not crash at %s", strings.Join(step, " "), point)
			}
			time.Sleep(200 * time.Millisecond)
			return false
		})
		<-s.proc.done
		if !strings.Contains(fmt.Sprint(s.proc.err), "killed") {
			t.Fatalf("server exited with %v, want killed at %s", s.proc.err, point)
		}
		s.restart(t)
	}
	// killBetween is a plain SIGKILL from outside, between steps.
	killBetween := func() {
		t.Helper()
		s.kill()
		s.restart(t)
	}
	states := func() (active string, prepared, retiring []authority) {
		auths := s.authorities(t)
		return checkStates(t, auths).ID, rootsIn(auths, "prepared"), rootsIn(auths, "retiring")
	}

	oldRoot, _, _ := states()

	// prepare
	crashDuring("prepare.commit", "prepare")
	if active, prep, _ := states(); active != oldRoot || len(prep) != 0 {
		t.Fatalf("crash before prepare committed left a prepared root: %+v", prep)
	}
	crashDuring("prepare.committed", "prepare")
	_, prep, _ := states()
	if len(prep) != 1 {
		t.Fatalf("crash after prepare committed: %d prepared roots, want 1", len(prep))
	}
	newRoot := prep[0].ID
	killBetween()
	s.waitApplied(t, newRoot, 1, 1) // the agent reconnected and applied it

	// activate
	crashDuring("activate.commit", "activate", "--rotate-now")
	if active, prep, _ := states(); active != oldRoot || len(prep) != 1 {
		t.Fatalf("crash before activate committed: active %s, %d prepared", active, len(prep))
	}
	s.waitApplied(t, newRoot, 1, 1)
	crashDuring("activate.committed", "activate", "--rotate-now")
	if active, prep, ret := states(); active != newRoot || len(prep) != 0 || len(ret) != 1 || ret[0].ID != oldRoot {
		t.Fatalf("crash after activate committed: active %s, %d prepared, retiring %+v", active, len(prep), ret)
	}
	killBetween()

	// retire: the agent re-mints (rotate-now survived the crash), then
	// retire goes through and the server dies in it.
	crashDuring("retire.commit", "retire")
	if active, _, ret := states(); active != newRoot || len(ret) != 1 {
		t.Fatalf("crash before retire committed: active %s, retiring %+v", active, ret)
	}
	crashDuring("retire.committed", "retire")
	if active, _, ret := states(); active != newRoot || len(ret) != 0 {
		t.Fatalf("crash after retire committed: active %s, retiring %+v", active, ret)
	}
	killBetween()

	roots := s.bundleRoots(t)
	if len(roots) != 1 {
		t.Fatalf("bundle holds %d roots, want 1", len(roots))
	}
	fetchUntil(t, a, 60*time.Second, func(x *workloadapi.X509Context) bool {
		b, _ := x.Bundles.GetX509BundleForTrustDomain(id.TrustDomain())
		return len(x.SVIDs) == 1 && verifies(x.SVIDs[0], roots) && b != nil && len(b.X509Authorities()) == 1
	})
	// And the next rotation starts from there.
	next := strings.TrimSpace(s.cli(t, "root", "prepare"))
	s.waitApplied(t, next, 1, 1)
	s.cli(t, "root", "activate", next)
}
