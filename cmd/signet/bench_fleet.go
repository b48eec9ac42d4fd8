package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/signet-mesh/signet/agent"
	"github.com/signet-mesh/signet/agent/cache"
	"github.com/signet-mesh/signet/agent/client"
	"github.com/signet-mesh/signet/cmd/internal/cli"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

// fleetResult is the -o json shape of `signet bench fleet` (issue 16).
type fleetResult struct {
	Agents               int     `json:"agents"`
	Workloads            int     `json:"workloads"`
	SVIDs                int     `json:"svids"`
	AttestSeconds        float64 `json:"attest_seconds"`
	SyncP99Ms            float64 `json:"sync_p99_ms"`
	FanoutP99Ms          float64 `json:"fanout_p99_ms"`
	MintP50Ms            float64 `json:"mint_p50_ms"`
	MintP99Ms            float64 `json:"mint_p99_ms"`
	ServerRSSMB          float64 `json:"server_rss_mb"`
	ServerIdleCPUPercent float64 `json:"server_idle_cpu_percent"`
	ReconnectSeconds     float64 `json:"reconnect_seconds"`
	RotateNowSeconds     float64 `json:"rotate_now_seconds"`
	ExpiredSVIDs         int     `json:"expired_svids"`
	Errors               int     `json:"errors"`
	// The split of server_rss_mb at its samples: anonymous memory (the
	// process's heap and stacks) and file pages mapped in (the store's
	// bbolt file, page cache the kernel can reclaim), each its maximum.
	ServerRSSAnonMB float64 `json:"server_rss_anon_mb"`
	ServerRSSFileMB float64 `json:"server_rss_file_mb"`
	// FanoutCallP99Ms is the fan-out timed from the start of the
	// PrepareRoot call rather than from the bundle change (fanout_p99_ms):
	// it adds the new root's key generation, its encryption at rest and
	// its signing.
	FanoutCallP99Ms float64 `json:"fanout_call_p99_ms"`
	// What rotate_now_seconds is made of, from the server's metrics (when
	// the bench starts it): the window the CA spread the re-mint over,
	// and the mint calls its admission control refused meanwhile.
	RotateNowWindowSeconds float64 `json:"rotate_now_window_seconds"`
	RotateNowRefusedMints  int     `json:"rotate_now_refused_mints"`
	// RotateNowRefusedInFlight is how many of those were over the bound
	// on calls waiting for their commits, not on calls signing.
	RotateNowRefusedInFlight int `json:"rotate_now_refused_in_flight"`
	// What reconnect_seconds is made of: the time until the restarted
	// server accepted connections on its node API, and until half the
	// agents had synced again (each agent's entry sync stream delivered
	// an update).
	ReconnectListeningSeconds float64 `json:"reconnect_listening_seconds"`
	ReconnectHalfSeconds      float64 `json:"reconnect_half_seconds"`
}

func (r *fleetResult) printTable(w io.Writer) error {
	rows := [][]string{
		{"agents", strconv.Itoa(r.Agents)}, {"workloads", strconv.Itoa(r.Workloads)}, {"svids", strconv.Itoa(r.SVIDs)},
		{"attest_seconds", ffmt(r.AttestSeconds)}, {"sync_p99_ms", ffmt(r.SyncP99Ms)}, {"fanout_p99_ms", ffmt(r.FanoutP99Ms)},
		{"mint_p50_ms", ffmt(r.MintP50Ms)}, {"mint_p99_ms", ffmt(r.MintP99Ms)}, {"server_rss_mb", ffmt(r.ServerRSSMB)},
		{"server_idle_cpu_percent", ffmt(r.ServerIdleCPUPercent)}, {"reconnect_seconds", ffmt(r.ReconnectSeconds)},
		{"rotate_now_seconds", ffmt(r.RotateNowSeconds)}, {"expired_svids", strconv.Itoa(r.ExpiredSVIDs)}, {"errors", strconv.Itoa(r.Errors)},
		{"server_rss_anon_mb", ffmt(r.ServerRSSAnonMB)}, {"server_rss_file_mb", ffmt(r.ServerRSSFileMB)},
		{"fanout_call_p99_ms", ffmt(r.FanoutCallP99Ms)},
		{"rotate_now_window_seconds", ffmt(r.RotateNowWindowSeconds)}, {"rotate_now_refused_mints", strconv.Itoa(r.RotateNowRefusedMints)},
		{"rotate_now_refused_in_flight", strconv.Itoa(r.RotateNowRefusedInFlight)},
	}
	return printTable(w, []string{"FIGURE", "VALUE"}, rows)
}

func ffmt(f float64) string { return strconv.FormatFloat(f, 'f', 2, 64) }

// Bounds of the bench's phases: a phase that overruns is an error, not a
// hang.
const (
	benchPhaseTimeout = 15 * time.Minute
	benchIdleWindow   = 10 * time.Second
	benchTD           = "example.org"
	benchSelector     = "unix:uid:1000" // every simulated workload's
	benchProbeSel     = "unix:uid:1001" // sync probes' entries
)

// fleetBench runs one `signet bench fleet`.
type fleetBench struct {
	opts     benchFleetOptions
	env      *cliEnv
	progress io.Writer // nil: quiet

	dir        string
	agentsDir  string // the simulated agents' state (benchAgentsDir)
	addr       string
	admin      adminOptions
	adminc     adminv1.AdminServiceClient
	closeAdmin func()
	server     *exec.Cmd // nil for --server-address
	// serverKilled is set before the bench stops the server it started;
	// the server exiting without it is a bench error (serverExited).
	serverKilled *atomic.Bool
	serverDone   chan struct{} // closed once the server has exited and been judged
	serverArgs   []string
	serverEnv    []string
	debugAddr    string // the server's debug_listen, with --profile-dir
	metricsAddr  string // the server's metrics_listen, when the bench starts it
	roots        []*x509.Certificate
	agents       []*simAgent

	// Targets the simulated agents' subscriptions look for.
	fanoutRoot atomic.Pointer[x509.Certificate]
	rotateRoot atomic.Pointer[x509.Certificate]

	// stopped is the first agent, or the server, that stopped for good:
	// the phases that wait on every agent give up at once instead of at
	// their timeout.
	stopped  atomic.Pointer[error]
	errs     atomic.Int64
	errMu    sync.Mutex
	errFirst []string
	rssMax   float64
	rssAnon  float64 // max RssAnon, MB
	rssFile  float64 // max RssFile, MB
}

// simAgent is one simulated node: the real agent, with its own cache the
// bench watches.
type simAgent struct {
	b      *fleetBench
	nodeID string
	token  string
	dir    string
	cache  *cache.Cache
	sub    *cache.Subscription
	agent  *agent.Agent

	mu       sync.Mutex
	bundleAt time.Time // when a bundle with fanoutRoot arrived
	// The last bundle delivered and when: an agent served the fan-out's
	// bundle before PrepareRoot returned (and fanoutRoot was known) is
	// timed by its arrival, not by the bench's later look.
	lastBundle   *x509bundle.Bundle
	lastBundleAt time.Time
	rotatedAt    time.Time // when every workload SVID chained to rotateRoot
}

// fail counts an error of the bench or of an agent.
func (b *fleetBench) fail(format string, args ...any) {
	b.errs.Add(1)
	b.errMu.Lock()
	defer b.errMu.Unlock()
	if len(b.errFirst) < 10 {
		b.errFirst = append(b.errFirst, fmt.Sprintf(format, args...))
	}
}

func (b *fleetBench) say(format string, args ...any) {
	if b.progress != nil {
		fmt.Fprintf(b.progress, format+"\n", args...)
	}
}

func (b *fleetBench) run(ctx context.Context) (*fleetResult, error) {
	res := &fleetResult{Agents: b.opts.agents, Workloads: b.opts.workloads, SVIDs: b.opts.agents * b.opts.workloads}
	dir, err := os.MkdirTemp("", "signet-bench")
	if err != nil {
		return nil, err
	}
	b.dir = dir
	defer os.RemoveAll(dir)
	if b.agentsDir, err = benchAgentsDir(dir); err != nil {
		return nil, err
	}
	defer os.RemoveAll(b.agentsDir)
	defer b.stopServer()
	if err := b.startAndConnect(ctx); err != nil {
		return nil, err
	}
	cli.DefaultGCPercent(simulatorGOGC)
	defer b.closeAdmin()

	if err := b.register(ctx); err != nil {
		return nil, err
	}
	agentsCtx, stopAgents := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		stopAgents()
		wg.Wait()
	}()

	// Build the fleet: every agent at once, as after a data-center power-on.
	start := time.Now()
	for _, a := range b.agents {
		if err := a.start(agentsCtx, &wg); err != nil {
			return nil, err
		}
	}
	if err := b.waitAll(ctx, "attestation", func() (int, int) { return b.count(func(a *simAgent) bool { return a.cache.Ready() }), len(b.agents) }); err != nil {
		return nil, err
	}
	res.AttestSeconds = time.Since(start).Seconds()
	if err := b.waitAll(ctx, "SVIDs", func() (int, int) { return b.svids(), res.SVIDs }); err != nil {
		return nil, err
	}
	b.say("fleet up: %d agents, %d SVIDs in %.1fs", len(b.agents), res.SVIDs, time.Since(start).Seconds())

	// Idle: the fleet connected and nothing changing.
	if b.server != nil {
		time.Sleep(2 * time.Second) // let the last reports and writes settle
		cpu, err := b.serverCPU(ctx, benchIdleWindow)
		if err != nil {
			return nil, err
		}
		res.ServerIdleCPUPercent = cpu
		b.say("idle: server CPU %.2f%% over %s", cpu, benchIdleWindow)
	}
	b.sampleRSS("idle")

	// Steady state: entry changes and mints for --duration.
	syncs, mints, err := b.steady(ctx)
	if err != nil {
		return nil, err
	}
	res.SyncP99Ms, res.MintP50Ms, res.MintP99Ms = ms(percentile(syncs, 0.99)), ms(percentile(mints, 0.50)), ms(percentile(mints, 0.99))
	b.say("steady: sync p99 %.1f ms (%d changes), mint p50 %.1f ms p99 %.1f ms (%d batches)", res.SyncP99Ms, len(syncs), res.MintP50Ms, res.MintP99Ms, len(mints))
	b.sampleRSS("steady")

	fanout, fanoutCall, newRoot, err := b.fanout(ctx)
	if err != nil {
		return nil, err
	}
	res.FanoutP99Ms, res.FanoutCallP99Ms = ms(fanout), ms(fanoutCall)
	b.say("bundle fan-out: p99 %.1f ms from the bundle change, %.1f ms from the prepare call", res.FanoutP99Ms, res.FanoutCallP99Ms)

	before, err := b.serverMetrics(ctx)
	if err != nil {
		return nil, err
	}
	rotate, err := b.rotateNow(ctx, newRoot)
	if err != nil {
		return nil, err
	}
	res.RotateNowSeconds = rotate.Seconds()
	after, err := b.serverMetrics(ctx)
	if err != nil {
		return nil, err
	}
	res.RotateNowWindowSeconds = metricSum(after, "signet_rotate_now_window_seconds")
	res.RotateNowRefusedMints = refusedMints(after) - refusedMints(before)
	res.RotateNowRefusedInFlight = refusedInFlight(after) - refusedInFlight(before)
	b.say("rotate now: every SVID under the new root in %.1fs (window %.1fs, %d mint calls refused, %d of them while commits were slow)",
		res.RotateNowSeconds, res.RotateNowWindowSeconds, res.RotateNowRefusedMints, res.RotateNowRefusedInFlight)
	b.sampleRSS("rotated")

	if b.server != nil {
		reconnect, err := b.reconnect(ctx, res)
		if err != nil {
			return nil, err
		}
		res.ReconnectSeconds = reconnect.Seconds()
		b.say("kill -9 and restart: every agent synced again in %.1fs", res.ReconnectSeconds)
	}
	res.ExpiredSVIDs = b.expired()
	res.ServerRSSMB, res.ServerRSSAnonMB, res.ServerRSSFileMB = b.rssMax, b.rssAnon, b.rssFile
	res.Errors = int(b.errs.Load())
	b.errMu.Lock()
	for _, e := range b.errFirst {
		fmt.Fprintln(b.env.stderr, "bench error:", e)
	}
	b.errMu.Unlock()
	return res, nil
}

// benchAgentsDir is where the simulated agents keep their state: in
// memory (/dev/shm) when the machine has it, else under dir. A real agent
// writes and fsyncs its bundle on its own disk when the bundle changes;
// thousands of simulated agents fsyncing one disk at once measure that
// disk (and the threads blocked on it), not the CA.
func benchAgentsDir(dir string) (string, error) {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "signet-bench-agents"); err == nil {
			return d, nil
		}
	}
	d := filepath.Join(dir, "agents")
	return d, os.MkdirAll(d, 0o700)
}

// startServer runs `signet server` in the temp dir, or takes the flags'.
func (b *fleetBench) startServer(ctx context.Context) error {
	if b.opts.serverAddress != "" {
		b.addr, b.admin.socket = b.opts.serverAddress, b.opts.adminSocket
		return nil
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding the signet binary: %w", err)
	}
	if b.addr, err = freeLoopbackAddr(); err != nil {
		return err
	}
	b.admin.socket = filepath.Join(b.dir, "admin.sock")
	pass := make([]byte, 16)
	rand.Read(pass)
	b.serverEnv = append(os.Environ(), "SIGNET_KEY_PASSPHRASE="+hex.EncodeToString(pass))
	b.serverArgs = []string{exe, "server", "--trust-domain", benchTD, "--data-dir", filepath.Join(b.dir, "ca"),
		"--listen", b.addr, "--admin-socket", b.admin.socket, "--log-level", "warn"}
	margs, err := b.metricsArgs()
	if err != nil {
		return err
	}
	b.serverArgs = append(b.serverArgs, margs...)
	if b.opts.profileDir != "" {
		args, err := b.profileArgs()
		if err != nil {
			return err
		}
		b.serverArgs = append(b.serverArgs, args...)
	}
	b.say("starting signet server on %s (data in %s)", b.addr, b.dir)
	return b.launchServer()
}

// serverLog is the path of the server's log: kept in --profile-dir, with
// the profiles, else in the temporary directory removed at the end.
func (b *fleetBench) serverLog() string {
	if b.opts.profileDir != "" {
		return filepath.Join(b.opts.profileDir, "server.log")
	}
	return filepath.Join(b.dir, "server.log")
}

func (b *fleetBench) launchServer() error {
	logf, err := os.OpenFile(b.serverLog(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := &exec.Cmd{Path: b.serverArgs[0], Args: b.serverArgs, Env: b.serverEnv, Stdout: logf, Stderr: logf,
		SysProcAttr: &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("starting signet server: %w", err)
	}
	killed, done := new(atomic.Bool), make(chan struct{})
	go func() {
		defer close(done)
		err := cmd.Wait()
		logf.Close()
		if !killed.Load() {
			b.serverExited(err)
		}
	}()
	b.server, b.serverKilled, b.serverDone = cmd, killed, done
	return nil
}

// serverExited stops the bench's phases when the server it started exits
// on its own (a crash, or its address taken), with the server's last
// words rather than a phase's timeout.
func (b *fleetBench) serverExited(waitErr error) {
	logPath := b.serverLog()
	err := fmt.Errorf("signet server exited (%v): %s (see %s)", waitErr, lastLogLine(logPath), logPath)
	b.stopped.CompareAndSwap(nil, &err)
}

// lastLogLine is the last non-empty line of the file at path.
func lastLogLine(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "no log: " + err.Error()
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	return lines[len(lines)-1]
}

func (b *fleetBench) stopServer() {
	if b.server == nil {
		return
	}
	b.serverKilled.Store(true)
	b.server.Process.Signal(syscall.SIGTERM)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && syscall.Kill(b.server.Process.Pid, 0) == nil {
		time.Sleep(50 * time.Millisecond)
	}
	b.server.Process.Kill()
}

// serverStartTries bounds the starts of a server whose port was taken
// between the bench picking it free and the server binding it: the
// tests of other packages open ports all the time.
const serverStartTries = 3

// startAndConnect starts the server (startServer) and connects to its
// admin socket, with a fresh data directory and fresh ports when the
// ports it was given were taken.
func (b *fleetBench) startAndConnect(ctx context.Context) error {
	for try := 1; ; try++ {
		if err := b.startServer(ctx); err != nil {
			return err
		}
		err := b.connectAdmin(ctx)
		if err == nil || b.server == nil || try == serverStartTries || !strings.Contains(err.Error(), "address already in use") {
			return err
		}
		b.say("%v; starting it again on other ports", err)
		b.closeAdmin()
		b.stopped.Store(nil)
		if err := os.RemoveAll(filepath.Join(b.dir, "ca")); err != nil {
			return err
		}
	}
}

// connectAdmin waits for the admin socket and reads the trust bundle.
func (b *fleetBench) connectAdmin(ctx context.Context) error {
	c, closeFn, err := b.admin.dial()
	if err != nil {
		return err
	}
	b.adminc, b.closeAdmin = c, closeFn
	deadline := time.Now().Add(time.Minute)
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := c.GetBundle(cctx, &adminv1.GetBundleRequest{})
		cancel()
		if err == nil {
			b.roots = nil
			for _, der := range resp.GetX509Authorities() {
				cert, err := x509.ParseCertificate(der)
				if err != nil {
					return err
				}
				b.roots = append(b.roots, cert)
			}
			return nil
		}
		if stopped := b.stopped.Load(); stopped != nil {
			return *stopped
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("the CA's admin socket %s did not answer: %w (see %s)", b.admin.socket, err, b.serverLog())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// register creates a join token and the workload entries of every agent.
func (b *fleetBench) register(ctx context.Context) error {
	b.say("registering %d agents and %d entries", b.opts.agents, b.opts.agents*b.opts.workloads)
	runID := make([]byte, 4)
	rand.Read(runID)
	prefix := "bench-" + hex.EncodeToString(runID)
	b.agents = make([]*simAgent, b.opts.agents)
	var entries []*adminv1.Entry
	flush := func() error {
		if len(entries) == 0 {
			return nil
		}
		cctx, cancel := context.WithTimeout(ctx, adminCallTimeout)
		defer cancel()
		if _, err := b.adminc.CreateEntries(cctx, &adminv1.CreateEntriesRequest{Entries: entries}); err != nil {
			return fmt.Errorf("creating entries: %w", err)
		}
		entries = entries[:0]
		return nil
	}
	for i := range b.agents {
		cctx, cancel := context.WithTimeout(ctx, adminCallTimeout)
		tok, err := b.adminc.CreateJoinToken(cctx, &adminv1.CreateJoinTokenRequest{NodeName: fmt.Sprintf("%s-%05d", prefix, i), TtlSeconds: int64(benchPhaseTimeout / time.Second)})
		cancel()
		if err != nil {
			return fmt.Errorf("creating join token: %w", err)
		}
		a := &simAgent{b: b, nodeID: tok.GetSpiffeId(), token: tok.GetToken(), dir: filepath.Join(b.agentsDir, strconv.Itoa(i))}
		b.agents[i] = a
		for w := range b.opts.workloads {
			entries = append(entries, &adminv1.Entry{
				SpiffeId: fmt.Sprintf("spiffe://%s/%s/%05d/w%d", benchTD, prefix, i, w), ParentId: a.nodeID,
				Selectors: []string{benchSelector}, X509TtlSeconds: int64(b.opts.x509TTL / time.Second),
			})
		}
		if len(entries) >= 1000 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// start runs the real agent for a.
func (a *simAgent) start(ctx context.Context, wg *sync.WaitGroup) error {
	td := spiffeid.RequireTrustDomainFromString(benchTD)
	a.cache = cache.New(cache.Config{TrustDomain: td})
	ag, err := agent.New(agent.Config{
		ServerAddress: a.b.addr, TrustDomain: td, TrustBundle: a.b.roots, JoinToken: a.token,
		DataDir: a.dir, KeyPassphrase: []byte("signet-bench"), Cache: a.cache,
		// Each real node derives its key-encryption key on its own CPU;
		// a thousand in this process would measure the bench, not the CA.
		MemoryOnlyIdentity: true,
		Logger:             slog.New(&errorCounter{b: a.b, node: a.nodeID}),
	})
	if err != nil {
		return err
	}
	a.agent = ag
	a.sub = a.cache.SubscribeFunc([]string{benchSelector}, a.deliver)
	wg.Go(func() {
		defer a.sub.Close()
		if err := ag.Run(ctx); err != nil && ctx.Err() == nil {
			a.b.fail("agent %s stopped: %v", a.nodeID, err)
			err = fmt.Errorf("agent %s stopped: %w", a.nodeID, err)
			a.b.stopped.CompareAndSwap(nil, &err)
		}
	})
	return nil
}

// deliver watches the workloads' state as the Workload API would serve
// it: when the bundle holds the fan-out root, and when every SVID chains
// to the rotate-now root. It runs under the cache's lock: quick.
func (a *simAgent) deliver(u *cache.Update) {
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if u.Bundle != a.lastBundle {
		a.lastBundle, a.lastBundleAt = u.Bundle, now
	}
	if root := a.b.fanoutRoot.Load(); root != nil && a.bundleAt.IsZero() && u.Bundle != nil && u.Bundle.HasX509Authority(root) {
		a.bundleAt = now
	}
	if root := a.b.rotateRoot.Load(); root != nil && a.rotatedAt.IsZero() && len(u.Identities) == a.b.opts.workloads {
		for _, id := range u.Identities {
			if inter, err := id.SVID.Intermediates(); err != nil || !underRoot(inter, root) {
				return
			}
		}
		a.rotatedAt = now
	}
}

// errorCounter is the simulated agents' log handler: ERROR records count
// as bench errors, the rest is dropped.
type errorCounter struct {
	b    *fleetBench
	node string
}

func (h *errorCounter) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelError }
func (h *errorCounter) Handle(_ context.Context, r slog.Record) error {
	var attrs []string
	r.Attrs(func(a slog.Attr) bool { attrs = append(attrs, a.String()); return true })
	h.b.fail("agent %s: %s %s", h.node, r.Message, strings.Join(attrs, " "))
	return nil
}
func (h *errorCounter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *errorCounter) WithGroup(string) slog.Handler      { return h }

func (b *fleetBench) count(f func(*simAgent) bool) int {
	n := 0
	for _, a := range b.agents {
		if f(a) {
			n++
		}
	}
	return n
}

func (b *fleetBench) svids() int {
	n := 0
	for _, a := range b.agents {
		s, _ := a.cache.Stats()
		n += s
	}
	return n
}

// waitAll waits until progress says done == total, showing it.
func (b *fleetBench) waitAll(ctx context.Context, what string, progress func() (done, total int)) error {
	deadline := time.Now().Add(benchPhaseTimeout)
	last := time.Time{}
	for {
		done, total := progress()
		if done >= total {
			return nil
		}
		if err := b.stopped.Load(); err != nil {
			return fmt.Errorf("%s: %d of %d: %w", what, done, total, *err)
		}
		if time.Since(last) >= time.Second {
			b.say("  %s: %d/%d", what, done, total)
			last = time.Now()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %d of %d after %s", what, done, total, benchPhaseTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(waitAllPoll):
		}
	}
}

// waitAllPoll is how often waitAll asks: each time walks every agent, and
// at 10,000 of them every 20 ms took a few percent of a core from the
// phase being measured. The figures that end when waitAll returns
// (attest_seconds, reconnect_seconds) are measured to within it; the
// others come from each agent's own timestamps.
const waitAllPoll = 100 * time.Millisecond

// serverCPU is the server's CPU use over window, in percent of one core.
func (b *fleetBench) serverCPU(ctx context.Context, window time.Duration) (float64, error) {
	before, err := procCPU(b.server.Process.Pid)
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(window):
	}
	after, err := procCPU(b.server.Process.Pid)
	if err != nil {
		return 0, err
	}
	return (after - before).Seconds() / time.Since(t0).Seconds() * 100, nil
}

// procCPU reads a process's user+system CPU time from /proc.
func procCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("reading the server's CPU time: %w", err)
	}
	// Fields after the command (which may hold spaces) in parentheses.
	rest := string(data[bytes.LastIndexByte(data, ')')+2:])
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0, errors.New("reading the server's CPU time: short /proc stat")
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticks, nil
}

// sampleRSS keeps the server's largest resident set seen, and with
// --profile-dir then saves the server's profiles at this phase. The
// sample comes first: taking the profiles takes seconds, and the figure
// must not depend on whether they are taken.
func (b *fleetBench) sampleRSS(phase string) {
	if b.server == nil {
		return
	}
	defer b.saveProfiles(phase)
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", b.server.Process.Pid))
	if err != nil {
		return
	}
	for line := range strings.Lines(string(data)) {
		key, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
		switch key {
		case "VmRSS":
			b.rssMax = max(b.rssMax, kb/1024)
		case "RssAnon":
			b.rssAnon = max(b.rssAnon, kb/1024)
		case "RssFile":
			b.rssFile = max(b.rssFile, kb/1024)
		}
	}
}

// steady probes the fleet for --duration: entry changes timed until the
// agent concerned has them, and mint batches of --workloads fresh keys by
// a probe node of the bench's own, timed as an agent sees them.
func (b *fleetBench) steady(ctx context.Context) (syncs, mints []time.Duration, err error) {
	probe, probeEntries, err := b.probeNode(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer probe.Close()
	stopProfile := b.startBenchProfile("steady", b.opts.duration)
	defer stopProfile()
	end := time.Now().Add(b.opts.duration)
	var wg sync.WaitGroup
	wg.Go(func() {
		for time.Now().Before(end) && ctx.Err() == nil {
			reqs := make([]client.MintRequest, 0, len(probeEntries))
			for _, id := range probeEntries {
				key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
				if err != nil {
					b.fail("mint probe: %v", err)
					return
				}
				reqs = append(reqs, client.MintRequest{EntryID: id, Key: key})
			}
			t0 := time.Now()
			results, err := probe.MintX509SVIDs(ctx, reqs)
			d := time.Since(t0)
			if status.Code(err) == codes.ResourceExhausted {
				continue // admission control: not a failure
			}
			if err != nil {
				b.fail("mint probe: %v", err)
				continue
			}
			for _, r := range results {
				if r.Err != nil {
					b.fail("mint probe: %s: %v", r.EntryID, r.Err)
				}
			}
			mints = append(mints, d)
			time.Sleep(100 * time.Millisecond)
		}
	})
	for i := 0; time.Now().Before(end) && ctx.Err() == nil; i++ {
		a := b.agents[(i*7919)%len(b.agents)]
		d, err := b.syncProbe(ctx, a, i)
		if err != nil {
			b.fail("sync probe: %v", err)
			continue
		}
		syncs = append(syncs, d)
		time.Sleep(100 * time.Millisecond)
	}
	wg.Wait()
	return syncs, mints, ctx.Err()
}

// probeNode attests a node for the mint probe and registers its entries.
func (b *fleetBench) probeNode(ctx context.Context) (*client.Client, []string, error) {
	cctx, cancel := context.WithTimeout(ctx, adminCallTimeout)
	defer cancel()
	name := fmt.Sprintf("bench-probe-%d", time.Now().UnixNano())
	tok, err := b.adminc.CreateJoinToken(cctx, &adminv1.CreateJoinTokenRequest{NodeName: name})
	if err != nil {
		return nil, nil, fmt.Errorf("creating the probe's token: %w", err)
	}
	var entries []*adminv1.Entry
	for w := range b.opts.workloads {
		entries = append(entries, &adminv1.Entry{SpiffeId: fmt.Sprintf("spiffe://%s/%s/w%d", benchTD, name, w), ParentId: tok.GetSpiffeId(),
			Selectors: []string{benchSelector}, X509TtlSeconds: int64(b.opts.x509TTL / time.Second)})
	}
	created, err := b.adminc.CreateEntries(cctx, &adminv1.CreateEntriesRequest{Entries: entries})
	if err != nil {
		return nil, nil, fmt.Errorf("creating the probe's entries: %w", err)
	}
	var ids []string
	for _, e := range created.GetEntries() {
		ids = append(ids, e.GetId())
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	td := spiffeid.RequireTrustDomainFromString(benchTD)
	s, pb, err := client.Attest(cctx, client.AttestParams{Address: b.addr, TrustDomain: td, Bootstrap: b.roots, JoinToken: tok.GetToken(), Key: key})
	if err != nil {
		return nil, nil, fmt.Errorf("attesting the probe: %w", err)
	}
	bundle, err := client.BundleFromProto(td, pb)
	if err != nil {
		return nil, nil, err
	}
	c, err := client.Dial(b.addr, td, client.NewSource(s, bundle))
	if err != nil {
		return nil, nil, err
	}
	return c, ids, nil
}

// syncProbe creates an entry for a and times until a's cache holds it;
// then deletes it.
func (b *fleetBench) syncProbe(ctx context.Context, a *simAgent, i int) (time.Duration, error) {
	cctx, cancel := context.WithTimeout(ctx, adminCallTimeout)
	defer cancel()
	t0 := time.Now()
	resp, err := b.adminc.CreateEntries(cctx, &adminv1.CreateEntriesRequest{Entries: []*adminv1.Entry{{
		SpiffeId: fmt.Sprintf("spiffe://%s/sync-probe/%d", benchTD, i), ParentId: a.nodeID, Selectors: []string{benchProbeSel},
		X509TtlSeconds: int64(b.opts.x509TTL / time.Second),
	}}})
	if err != nil {
		return 0, err
	}
	id := resp.GetEntries()[0].GetId()
	for !slices.ContainsFunc(a.cache.Entries(), func(e cache.Entry) bool { return e.ID == id }) {
		if cctx.Err() != nil {
			return 0, fmt.Errorf("entry %s did not reach %s in %s", id, a.nodeID, adminCallTimeout)
		}
		time.Sleep(time.Millisecond)
	}
	d := time.Since(t0)
	if _, err := b.adminc.DeleteEntry(cctx, &adminv1.DeleteEntryRequest{Id: id}); err != nil {
		return d, err
	}
	return d, nil
}

// fanout prepares a root (a bundle change) and returns the p99 of the
// time until each agent's workloads are served the new bundle: from the
// bundle change (the root's created_at, the instant of the transaction
// that put it in the bundle) and from the start of the PrepareRoot call.
func (b *fleetBench) fanout(ctx context.Context) (fromChange, fromCall time.Duration, _ *adminv1.Authority, _ error) {
	cctx, cancel := context.WithTimeout(ctx, adminCallTimeout)
	defer cancel()
	stopProfile := b.startBenchProfile("fanout", benchServerCPUWindow)
	defer stopProfile()
	// The new root is known only once prepared: agents record the first
	// bundle with a root beyond the old ones.
	t0 := time.Now()
	resp, err := b.adminc.PrepareRoot(cctx, &adminv1.PrepareRootRequest{})
	if err != nil {
		return 0, 0, nil, fmt.Errorf("root prepare: %w", err)
	}
	root, err := x509.ParseCertificate(resp.GetAuthority().GetCertificate())
	if err != nil {
		return 0, 0, nil, fmt.Errorf("root prepare: %w", err)
	}
	// The bench and the server share the machine's wall clock. A server
	// that does not report created_at (an older one, --server-address)
	// is timed from the call.
	changed := t0
	if n := resp.GetAuthority().GetCreatedAtUnixNano(); n != 0 {
		changed = time.Unix(0, n)
	}
	b.fanoutRoot.Store(root)
	// An agent whose bundle arrived before the root was stored is timed
	// by that bundle's arrival; one whose delivery is not recorded yet
	// (it runs as this looks) is caught by a fresh look at its cache.
	for _, a := range b.agents {
		a.mu.Lock()
		if a.bundleAt.IsZero() && a.lastBundle != nil && a.lastBundle.HasX509Authority(root) {
			a.bundleAt = a.lastBundleAt
		}
		a.mu.Unlock()
		if u := a.cache.Lookup([]string{benchSelector}); u.Bundle != nil && u.Bundle.HasX509Authority(root) {
			a.mu.Lock()
			if a.bundleAt.IsZero() {
				a.bundleAt = time.Now()
			}
			a.mu.Unlock()
		}
	}
	err = b.waitAll(ctx, "bundle fan-out", func() (int, int) {
		return b.count(func(a *simAgent) bool { a.mu.Lock(); defer a.mu.Unlock(); return !a.bundleAt.IsZero() }), len(b.agents)
	})
	if err != nil {
		return 0, 0, nil, err
	}
	stopProfile()
	var lat, callLat []time.Duration
	for _, a := range b.agents {
		lat = append(lat, a.bundleAt.Sub(changed))
		callLat = append(callLat, a.bundleAt.Sub(t0))
	}
	return percentile(lat, 0.99), percentile(callLat, 0.99), resp.GetAuthority(), nil
}

// rotateNow activates the prepared root with --rotate-now and returns the
// time until every workload SVID chains to it.
func (b *fleetBench) rotateNow(ctx context.Context, auth *adminv1.Authority) (time.Duration, error) {
	root, err := x509.ParseCertificate(auth.GetCertificate())
	if err != nil {
		return 0, err
	}
	b.rotateRoot.Store(root)
	deadline := time.Now().Add(2 * time.Minute)
	var t0 time.Time
	for {
		cctx, cancel := context.WithTimeout(ctx, adminCallTimeout)
		_, err := b.adminc.ActivateRoot(cctx, &adminv1.ActivateRootRequest{Id: auth.GetId(), RotateNow: true})
		cancel()
		if err == nil {
			t0 = time.Now()
			break
		}
		// Refused while agents have not reported the bundle yet.
		if status.Code(err) != codes.FailedPrecondition || time.Now().After(deadline) {
			return 0, fmt.Errorf("root activate --rotate-now: %w", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The re-mint's first half minute, where the CA is busiest.
	stopProfile := b.startBenchProfile("rotate", 30*time.Second)
	defer stopProfile()
	err = b.waitAll(ctx, "SVIDs under the new root", func() (int, int) {
		return b.count(func(a *simAgent) bool { a.mu.Lock(); defer a.mu.Unlock(); return !a.rotatedAt.IsZero() }), len(b.agents)
	})
	if err != nil {
		return 0, err
	}
	var last time.Time
	for _, a := range b.agents {
		last = maxTime(last, a.rotatedAt)
	}
	return last.Sub(t0), nil
}

// reconnect kills the server with SIGKILL, starts it again and returns
// the time until every agent holds its sync stream again. It fills in
// res's breakdown of that time.
func (b *fleetBench) reconnect(ctx context.Context, res *fleetResult) (time.Duration, error) {
	// Each agent's syncs so far: it has synced again once it counts one
	// more and its stream is up. The agents say so themselves; asking the
	// CA (ListNodes, every node's record decoded at each poll) took a
	// tenth of its CPU away from the reconnection being measured.
	before := make([]uint64, len(b.agents))
	for i, a := range b.agents {
		_, before[i] = a.agent.CASync()
	}
	t0 := time.Now()
	b.serverKilled.Store(true)
	if err := b.server.Process.Kill(); err != nil {
		return 0, err
	}
	for syscall.Kill(b.server.Process.Pid, 0) == nil && time.Since(t0) < 10*time.Second {
		time.Sleep(10 * time.Millisecond)
	}
	if err := b.launchServer(); err != nil {
		return 0, err
	}
	stopProfile := b.startBenchProfile("reconnect", 30*time.Second)
	defer stopProfile()
	err := b.waitAll(ctx, "agents reconnected", func() (int, int) {
		if res.ReconnectListeningSeconds == 0 {
			if c, err := net.DialTimeout("tcp", b.addr, time.Second); err == nil {
				c.Close()
				res.ReconnectListeningSeconds = time.Since(t0).Seconds()
			}
		}
		n := 0
		for i, a := range b.agents {
			if up, times := a.agent.CASync(); up && times > before[i] {
				n++
			}
		}
		if res.ReconnectHalfSeconds == 0 && 2*n >= len(b.agents) {
			res.ReconnectHalfSeconds = time.Since(t0).Seconds()
		}
		return n, len(b.agents)
	})
	if err != nil {
		return 0, err
	}
	return time.Since(t0), nil
}

// expired counts the workload SVIDs the agents hold past their expiry.
func (b *fleetBench) expired() int {
	now := time.Now()
	n := 0
	for _, a := range b.agents {
		for _, e := range a.cache.Entries() {
			if s := a.cache.SVID(e.ID); s != nil && !now.Before(s.NotAfter()) {
				n++
			}
		}
	}
	return n
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// underRoot reports whether an SVID with these intermediates (its chain
// without the leaf) was issued under root: one of them is signed by root.
// (While the old root retires the chain also carries the intermediate
// cross-signed by it.)
func underRoot(intermediates []*x509.Certificate, root *x509.Certificate) bool {
	for _, c := range intermediates {
		if bytes.Equal(c.AuthorityKeyId, root.SubjectKeyId) {
			return true
		}
	}
	return false
}

// simulatorGOGC is the GC target of the bench process, where every
// simulated agent shares one heap: gigabytes for 10,000 agents. At Go's
// default, the garbage of one agent handling a message (a bundle change
// reaches them all in the same second) made it help mark the whole
// fleet's heap, the bench's largest CPU cost in a 10,000-agent fan-out
// profile; a real agent marks only its own few megabytes. It is set in
// this process only: the server, which is what is measured, keeps its
// own (serverGCPercent, or the environment's GOGC).
const simulatorGOGC = 400
