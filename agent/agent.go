package agent

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"golang.org/x/sync/errgroup"

	"github.com/signet-mesh/signet/agent/cache"
	"github.com/signet-mesh/signet/agent/client"
	"github.com/signet-mesh/signet/agent/internal/logkey"
	"github.com/signet-mesh/signet/agent/mint"
	"github.com/signet-mesh/signet/agent/nodesvid"
	"github.com/signet-mesh/signet/agent/policy"
	"github.com/signet-mesh/signet/agent/report"
	"github.com/signet-mesh/signet/agent/rotate"
	agentsync "github.com/signet-mesh/signet/agent/sync"
	"github.com/signet-mesh/signet/internal/backoff"
	"github.com/signet-mesh/signet/internal/clock"
	"github.com/signet-mesh/signet/internal/mtlspolicy"
	"github.com/signet-mesh/signet/internal/nodeapi"
	agentv1 "github.com/signet-mesh/signet/proto/signet/agent/v1"
)

// rotateGenerationFile (under DataDir) holds the rotate generation the
// agent acted on, so that a restart does not re-mint everything again.
const rotateGenerationFile = "rotate-generation"

// Config configures an Agent. Zero values take the documented defaults.
type Config struct {
	// ServerAddress is the CA's node API (host:port), or the replicas'
	// as a comma-separated list: the agent talks to one and fails over to
	// another (see package client).
	ServerAddress string
	TrustDomain   spiffeid.TrustDomain
	// TrustBundle authenticates the CA on first contact. Once the CA has
	// sent a bundle, the stored one (DataDir/bundle.pem) is used instead.
	TrustBundle []*x509.Certificate
	// InsecureBootstrap attests without authenticating the CA
	// (development only).
	InsecureBootstrap bool
	// JoinToken attests the node when DataDir holds no usable identity,
	// or when it is not the token the stored identity came from (see
	// agent/nodesvid).
	JoinToken string
	// K8sPSAT attests with the agent pod's Kubernetes service account
	// token instead (see agent/nodesvid).
	K8sPSAT *nodesvid.K8sPSAT
	// DataDir keeps the node SVID (key encrypted with KeyPassphrase) and
	// the last bundle, so a restart needs no new token.
	DataDir       string
	KeyPassphrase []byte
	// KeyKDFIterations is nodesvid.Config.KeyKDFIterations: 0 for the
	// default; only tests lower it.
	KeyKDFIterations int
	// MemoryOnlyIdentity keeps the node SVID in memory only (see
	// nodesvid.Config.MemoryOnly): for simulated agents, never a real one.
	MemoryOnlyIdentity bool
	// Cache receives entries, SVIDs and bundles; nil makes one.
	Cache *cache.Cache
	// NewKey makes workload and node keys; default ECDSA P-256.
	NewKey func() (crypto.Signer, error)
	// Backoff paces every retry towards the CA. Its Rand defaults to Rand,
	// its Hint to nodeapi.RetryHint (the CA's admission control).
	Backoff backoff.Config
	// Rand is the one source of jitter (retries, renewal times); nil is
	// backoff.SystemRand. Tests pass backoff.NewRand.
	Rand   backoff.Rand
	Clock  clock.Clock
	Logger *slog.Logger
	// Metrics receives the agent's metrics (see NewMetrics); nil records
	// none.
	Metrics *Metrics
}

// Agent is a node agent: a set of tasks, each in the package named for
// its job, that share the cache and talk to the CA over one connection
// (see the package documentation).
type Agent struct {
	cfg   Config
	log   *slog.Logger
	cache *cache.Cache
	ca    *caConn

	node     *nodesvid.Node
	sched    *rotate.Scheduler
	minter   *mint.Minter
	jwt      *mint.JWT
	syncer   *agentsync.Syncer
	reporter *report.Reporter
	policies *policy.Set

	socket ownedSocket // set by ListenSocket

	// caSync is the entry sync stream's state, for CASync.
	caSync struct {
		mu    sync.Mutex
		up    bool
		times uint64
	}
}

// New checks cfg and returns an Agent; Run starts it.
func New(cfg Config) (*Agent, error) {
	switch {
	case cfg.ServerAddress == "":
		return nil, errors.New("agent: server address must be configured")
	case cfg.TrustDomain.IsZero():
		return nil, errors.New("agent: trust domain must be configured")
	case cfg.DataDir == "":
		return nil, errors.New("agent: data dir must be configured")
	case len(cfg.KeyPassphrase) == 0:
		return nil, errors.New("agent: a key passphrase is required: the node key is encrypted at rest")
	}
	cfg.Clock = clock.OrReal(cfg.Clock)
	cfg.Rand = backoff.OrSystem(cfg.Rand)
	if cfg.Backoff.Rand == nil {
		cfg.Backoff.Rand = cfg.Rand
	}
	if cfg.Backoff.Hint == nil {
		// A CA at its admission bound says when to come back.
		cfg.Backoff.Hint = nodeapi.RetryHint
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Cache == nil {
		cfg.Cache = cache.New(cache.Config{TrustDomain: cfg.TrustDomain, Clock: cfg.Clock, Logger: cfg.Logger})
	}
	if cfg.NewKey == nil {
		cfg.NewKey = func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) }
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("agent: creating data dir: %w", err)
	}
	a := &Agent{cfg: cfg, log: cfg.Logger.With(logkey.Component, "agent"), cache: cfg.Cache, ca: &caConn{}}
	m := cfg.Metrics
	a.node = nodesvid.New(nodesvid.Config{
		ServerAddress: cfg.ServerAddress, TrustDomain: cfg.TrustDomain, TrustBundle: cfg.TrustBundle,
		InsecureBootstrap: cfg.InsecureBootstrap, JoinToken: cfg.JoinToken, K8sPSAT: cfg.K8sPSAT, DataDir: cfg.DataDir,
		KeyPassphrase: cfg.KeyPassphrase, KeyKDFIterations: cfg.KeyKDFIterations, MemoryOnly: cfg.MemoryOnlyIdentity, NewKey: cfg.NewKey, CA: a.ca,
		Renewed: func(s *x509svid.SVID) { a.sched.ScheduleNode(s.Certificates[0]) },
		Backoff: cfg.Backoff, Clock: cfg.Clock, Logger: cfg.Logger,
		Metrics: nodesvid.Metrics{
			Rotated:        func() { m.rotated(kindNode) },
			RotationFailed: func() { m.rotationFailed(kindNode) },
			AttestBackoff:  func(d time.Duration) { m.setBackoff(opAttest, d) },
			RenewBackoff:   func(d time.Duration) { m.setBackoff(opRenew, d) },
		},
	})
	a.sched = rotate.NewScheduler(rotate.SchedulerConfig{
		Cache:          cfg.Cache,
		Due:            func(ids []string) { a.minter.Queue(ids...) },
		NodeDue:        func() { a.node.RenewNow() },
		GenerationFile: filepath.Join(cfg.DataDir, rotateGenerationFile),
		Clock:          cfg.Clock, Rand: cfg.Rand, Logger: cfg.Logger,
	})
	a.minter = mint.New(mint.Config{
		Cache: cfg.Cache, CA: a.ca, Scheduler: a.sched, NewKey: cfg.NewKey,
		Backoff: cfg.Backoff, Clock: cfg.Clock, Logger: cfg.Logger,
		Metrics: mint.Metrics{
			Rotated:        func() { m.rotated(kindWorkload) },
			RotationFailed: func() { m.rotationFailed(kindWorkload) },
			Backoff:        func(d time.Duration) { m.setBackoff(opMint, d) },
		},
	})
	a.jwt = mint.NewJWT(a.ca)
	a.policies = policy.NewSet(cfg.Logger)
	a.reporter = report.New(report.Config{
		CA:             a.ca,
		BundleRevision: cfg.Cache.BundleRevision,
		Store:          a.node.SaveBundle,
		Backoff:        cfg.Backoff, Clock: cfg.Clock, Logger: cfg.Logger,
	})
	a.syncer = agentsync.New(agentsync.Config{
		TrustDomain: cfg.TrustDomain, Cache: cfg.Cache, CA: a.ca, Minter: a.minter, Scheduler: a.sched,
		BundleChanged: a.node.SetBundle, BundleApplied: a.reporter.BundleApplied, Policies: a.policies.Apply,
		Backoff: cfg.Backoff, Clock: cfg.Clock, Logger: cfg.Logger,
		Metrics: agentsync.Metrics{
			Connected: func(up bool) { a.setCASync(up); m.setConnected(up) },
			Backoff:   func(d time.Duration) { m.setBackoff(opSync, d) },
		},
	})
	m.bind(a)
	return a, nil
}

// CASync reports whether the entry sync stream to the CA is up (it
// delivered a whole update since it opened), and how many times it came
// up since the agent started: a caller that saw times before a CA restart
// knows the agent has synced again when times has grown and up is true.
func (a *Agent) CASync() (up bool, times uint64) {
	a.caSync.mu.Lock()
	defer a.caSync.mu.Unlock()
	return a.caSync.up, a.caSync.times
}

func (a *Agent) setCASync(up bool) {
	a.caSync.mu.Lock()
	defer a.caSync.mu.Unlock()
	if up && !a.caSync.up {
		a.caSync.times++
	}
	a.caSync.up = up
}

// Cache returns the cache the agent feeds.
func (a *Agent) Cache() *cache.Cache { return a.cache }

// Run obtains the node identity (stored, or by attestation), connects to
// the CA, and runs the agent's tasks until ctx ends: the entry sync
// (agent/sync), the mint queue (agent/mint), the renewal schedule
// (agent/rotate), the node SVID's renewal (agent/nodesvid) and the status
// report (agent/report). No goroutine it started outlives it. It returns
// nil on cancellation, and an error only when it cannot go on (no identity
// and no usable join token, or a join token the CA refuses).
//
// When the CA refuses the node's identity for good, the tasks that talk
// to the CA stop, the node identity says so (nodesvid.Node.Rejected), and
// Run keeps the cache serving the SVIDs it holds until they expire, with
// Ready reporting the rejection.
func (a *Agent) Run(ctx context.Context) error {
	src, err := a.node.Obtain(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("agent: %w", err)
	}
	c, err := client.Dial(a.cfg.ServerAddress, a.cfg.TrustDomain, src)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	defer c.Close()
	a.ca.set(c)
	defer a.ca.set(nil)
	svid, _ := src.GetX509SVID()
	leaf := svid.Certificates[0]
	a.sched.ScheduleNode(leaf)
	a.log.Info("agent started", logkey.SPIFFEID, svid.ID.String(), logkey.Server, a.cfg.ServerAddress, logkey.NotAfter, leaf.NotAfter)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.syncer.Run(gctx) })
	g.Go(func() error { return a.minter.Run(gctx) })
	g.Go(func() error { return a.sched.Run(gctx) })
	g.Go(func() error { return a.node.Run(gctx) })
	g.Go(func() error { return a.reporter.Run(gctx) })
	err = g.Wait()
	if _, ok := nodeapi.NodeRejection(err); ok {
		a.node.Rejected(err)
		// Serve what the cache holds until it expires: the schedule alone
		// still drops each SVID at its expiry.
		err = a.sched.Run(ctx)
	}
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	a.log.Info("agent stopped")
	return nil
}

// MintJWTSVID asks the CA for a JWT-SVID for one of this node's entries
// (see mint.JWT); it implements workloadapi.JWTMinter.
func (a *Agent) MintJWTSVID(ctx context.Context, entryID string, audience []string) (string, error) {
	return a.jwt.MintJWTSVID(ctx, entryID, audience)
}

// MTLSPolicies returns the mTLS policy set (see policy.Set); it implements
// proxyapi.Policies.
func (a *Agent) MTLSPolicies() (policies []mtlspolicy.Policy, known bool, changed <-chan struct{}) {
	return a.policies.MTLSPolicies()
}

// AddConnections takes connection counts from a proxy, for the CA (see
// report.Reporter); it implements proxyapi.Reporter.
func (a *Agent) AddConnections(counts []*agentv1.ConnectionCounts) {
	a.reporter.AddConnections(counts)
}

// LoadBundleFile reads PEM certificates (the --trust-bundle file).
func LoadBundleFile(path string) ([]*x509.Certificate, error) {
	return nodesvid.LoadBundleFile(path)
}
