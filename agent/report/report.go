// Package report tells the CA what the agent knows and the CA cannot see
// for itself, in ReportStatus calls:
//
//   - the trust bundle revision the agent serves, as soon as it applied a new
//     one: `signet root activate` waits until every connected agent has the
//     bundle with the new root;
//   - the inbound connection counts its proxies (`signet proxy`) report
//     through agent/proxyapi: `signet mtls status` and `mtls set --mode
//     STRICT` use them to tell which workloads still get plaintext.
//
// Counts are summed here and sent every ConnectionReportInterval when there
// are any; a failed report keeps them for the next one. A new bundle is
// reported at a random point of the window the CA asks its agents to
// spread such calls over (reconnect_spread_ms: nothing for a small fleet,
// 20 s for 10,000 agents), so that a fleet's reports do not reach the CA
// in the instant it is sending every agent the bundle. A bundle report
// that fails is tried again with backoff (honouring the CA's retry hints)
// until one report gets through: it carries the revision served then, so
// bundles applied meanwhile are covered by it, and the last one always
// reaches the CA. Every call goes from Run's goroutine, one at a time, so
// the revision the CA records never goes back. Before each report, Run
// has the bundle it names stored (Config.Store: agent/nodesvid writes
// bundle.pem), so the CA counts a root as applied only once the node
// would still trust it after a restart; a bundle not yet reported when
// Run ends is stored on the way out.
//
//	r := report.New(report.Config{CA: c, BundleRevision: rev})
//	go r.Run(ctx)
//	r.BundleApplied()          // agent/sync, after each new bundle
//	r.AddConnections(counts)   // agent/proxyapi, for each proxy report
package report

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/signet-mesh/signet/agent/internal/logkey"
	"github.com/signet-mesh/signet/internal/backoff"
	"github.com/signet-mesh/signet/internal/clock"
	"github.com/signet-mesh/signet/internal/nodeapi"
	agentv1 "github.com/signet-mesh/signet/proto/signet/agent/v1"
	nodev1 "github.com/signet-mesh/signet/proto/signet/node/v1"
)

// Limits of the connection counts held between reports.
const (
	// ConnectionReportInterval is how often counts go to the CA.
	ConnectionReportInterval = 5 * time.Second
	// MaxPendingCounts bounds the (workload, port) pairs held: a node
	// runs tens of workloads, not thousands.
	MaxPendingCounts = 4096
	// MaxPendingSources bounds the plaintext sources kept per pair.
	MaxPendingSources = 32
)

// CA is the call a Reporter makes (agent/client.Client implements it).
type CA interface {
	// ReportConnections sends ReportStatus: the applied bundle revision
	// and the counts since the last report (none is fine).
	ReportConnections(ctx context.Context, bundleRevision int64, counts []*nodev1.ConnectionCounts) error
}

// Config configures a Reporter.
type Config struct {
	// CA receives the reports. Required.
	CA CA
	// BundleRevision returns the revision of the bundle the agent serves
	// now. Required.
	BundleRevision func() int64
	// Store, if set, stores the bundle the agent serves (at least the
	// revision BundleRevision returned just before) so that a restart
	// uses it; a report goes to the CA only after it succeeded. A failed
	// store is retried as a failed report is.
	Store func() error
	// Backoff paces the retries of a failed bundle report.
	Backoff backoff.Config
	Clock   clock.Clock
	Logger  *slog.Logger
}

// Reporter holds what goes to the CA next and sends it (see the package
// documentation). It is safe for concurrent use.
type Reporter struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	pending map[countKey]*nodev1.ConnectionCounts

	applied chan struct{} // a new bundle revision is to be reported
	rnd     backoff.Rand
	spread  atomic.Int64 // BundleApplied's last window, a time.Duration
}

type countKey struct {
	spiffeID string
	port     uint32
}

// New returns a Reporter with cfg's zero fields defaulted.
func New(cfg Config) *Reporter {
	cfg.Clock = clock.OrReal(cfg.Clock)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Reporter{
		cfg:     cfg,
		log:     cfg.Logger.With(logkey.Component, "report"),
		pending: map[countKey]*nodev1.ConnectionCounts{},
		applied: make(chan struct{}, 1),
		rnd:     backoff.OrSystem(cfg.Backoff.Rand),
	}
}

// BundleApplied asks Run to report the bundle revision, at a random point
// of spread from now (at once when spread is 0).
func (r *Reporter) BundleApplied(spread time.Duration) {
	r.spread.Store(int64(spread))
	select {
	case r.applied <- struct{}{}:
	default:
	}
}

// AddConnections adds counts reported by a proxy (deltas since its last
// report) to what goes to the CA next. The caller has checked the proxy
// may report for these workloads. It never blocks on the CA.
func (r *Reporter) AddConnections(counts []*agentv1.ConnectionCounts) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range counts {
		r.addLocked(&nodev1.ConnectionCounts{
			SpiffeId: c.GetSpiffeId(), Port: c.GetPort(), Mtls: c.GetMtls(), Plaintext: c.GetPlaintext(),
			Refused: c.GetRefused(), PlaintextSources: c.GetPlaintextSources(),
		})
	}
}

func (r *Reporter) addLocked(c *nodev1.ConnectionCounts) {
	k := countKey{spiffeID: c.GetSpiffeId(), port: c.GetPort()}
	p, ok := r.pending[k]
	if !ok {
		if len(r.pending) >= MaxPendingCounts {
			return
		}
		p = &nodev1.ConnectionCounts{SpiffeId: k.spiffeID, Port: k.port}
		r.pending[k] = p
	}
	p.Mtls += max(c.GetMtls(), 0)
	p.Plaintext += max(c.GetPlaintext(), 0)
	p.Refused += max(c.GetRefused(), 0)
	for _, s := range c.GetPlaintextSources() {
		if len(p.PlaintextSources) >= MaxPendingSources {
			break
		}
		if s != "" && !slices.Contains(p.PlaintextSources, s) {
			p.PlaintextSources = append(p.PlaintextSources, s)
		}
	}
}

// takeCounts returns the pending counts and forgets them.
func (r *Reporter) takeCounts() []*nodev1.ConnectionCounts {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.pending) == 0 {
		return nil
	}
	out := make([]*nodev1.ConnectionCounts, 0, len(r.pending))
	for _, c := range r.pending {
		out = append(out, c)
	}
	clear(r.pending)
	return out
}

// putBack returns counts that could not be reported, to go with the next
// report.
func (r *Reporter) putBack(counts []*nodev1.ConnectionCounts) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range counts {
		r.addLocked(c)
	}
}

// Run reports until ctx ends, then returns nil. It returns an error only
// when the CA refuses the node's identity for good
// (nodeapi.NodeRejection).
func (r *Reporter) Run(ctx context.Context) error {
	t := r.cfg.Clock.NewTicker(ConnectionReportInterval)
	defer t.Stop()
	b := backoff.New(r.cfg.Backoff)
	var (
		unreported bool        // a bundle applied since the last report that got through
		retry      clock.Timer // armed while unreported: the spread's delay, or after a failure
		retryC     <-chan time.Time
	)
	arm := func(d time.Duration) {
		if retry == nil {
			retry = r.cfg.Clock.NewTimer(d)
		} else {
			retry.Reset(d)
		}
		retryC = retry.C()
	}
	defer func() {
		if retry != nil {
			retry.Stop()
		}
	}()
	for {
		var counts []*nodev1.ConnectionCounts
		var what string
		select {
		case <-ctx.Done():
			// A bundle applied since the last report is stored for the
			// next start (nothing is written when it was).
			if err := r.store(); err != nil {
				r.log.Error("storing applied bundle", logkey.Error, err)
			}
			return nil
		case <-r.applied:
			unreported = true
			if retryC != nil {
				continue // a report is due already; it will carry this revision
			}
			if d := r.spreadDelay(); d > 0 {
				arm(d)
				continue
			}
			what = "reporting applied bundle"
		case <-retryC:
			retryC = nil
			what = "reporting applied bundle"
		case <-t.C():
			if counts = r.takeCounts(); len(counts) == 0 {
				continue
			}
			what = "reporting connection counts"
		}
		rev := r.cfg.BundleRevision()
		err := r.store()
		if err == nil {
			err = r.cfg.CA.ReportConnections(ctx, rev, counts)
		}
		if err == nil {
			// Every report carries the revision served now.
			unreported = false
			b.Reset()
			if retryC != nil {
				retry.Stop()
				retryC = nil
			}
			continue
		}
		r.putBack(counts)
		if ctx.Err() != nil {
			return nil
		}
		if _, ok := nodeapi.NodeRejection(err); ok {
			return fmt.Errorf("%s: %w", what, err)
		}
		if !unreported || retryC != nil {
			r.log.Warn(what, logkey.Error, err)
			continue
		}
		// `signet root activate` waits for this revision: try again.
		d := b.NextFor(err)
		arm(d)
		r.log.Warn(what, logkey.Error, err, logkey.RetryIn, d)
	}
}

// store runs Config.Store, if set.
func (r *Reporter) store() error {
	if r.cfg.Store == nil {
		return nil
	}
	return r.cfg.Store()
}

// spreadDelay is how long to wait before reporting a new bundle: a random
// point of the window BundleApplied was last given.
func (r *Reporter) spreadDelay() time.Duration {
	spread := time.Duration(r.spread.Load())
	if spread <= 0 {
		return 0
	}
	return time.Duration(r.rnd() * float64(spread))
}
