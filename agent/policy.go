package agent

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/signet-mesh/signet/internal/mtlspolicy"
	agentv1 "github.com/signet-mesh/signet/proto/signet/agent/v1"
	nodev1 "github.com/signet-mesh/signet/proto/signet/node/v1"
)

// The agent's part in mTLS enforcement. It keeps the latest policy set the
// CA sent with the entry sync (served to proxies by agent/proxyapi through
// MTLSPolicies), and sums the inbound connection counts proxies report
// (AddConnections) until it forwards them to the CA in ReportStatus, every
// ConnectionReportInterval when there is something to say.

// Limits of the connection counts the agent holds between reports.
const (
	// ConnectionReportInterval is how often counts go to the CA.
	ConnectionReportInterval = 5 * time.Second
	// maxPendingCounts bounds the (workload, port) pairs held: a node
	// runs tens of workloads, not thousands.
	maxPendingCounts = 4096
	// maxPendingSources bounds the plaintext sources kept per pair.
	maxPendingSources = 32
)

var errNotConnected = errors.New("agent: not connected to the CA yet")

// mtlsState is the policy set and the pending counts.
type mtlsState struct {
	mu       sync.Mutex
	policies []mtlspolicy.Policy
	known    bool          // a policy set was received
	changed  chan struct{} // closed, and replaced, on every change
	pending  map[countKey]*nodev1.ConnectionCounts

	// reportMu serializes the agent's ReportStatus calls, which each carry
	// the applied bundle revision: read under it, the revision the CA
	// records never goes back.
	reportMu sync.Mutex
}

type countKey struct {
	spiffeID string
	port     uint32
}

func newMTLSState() *mtlsState {
	return &mtlsState{changed: make(chan struct{}), pending: map[countKey]*nodev1.ConnectionCounts{}}
}

// MTLSPolicies returns the trust domain's mTLS policy set as last received
// from the CA, whether one was received yet (until then nothing is known,
// not even the default), and a channel closed at the next change. The
// slice is shared and must not be modified.
func (a *Agent) MTLSPolicies() (policies []mtlspolicy.Policy, known bool, changed <-chan struct{}) {
	m := a.mtls
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.policies, m.known, m.changed
}

// applyPolicies replaces the policy set with the one of a sync message.
func (a *Agent) applyPolicies(in *nodev1.MTLSPolicies) {
	ps := make([]mtlspolicy.Policy, 0, len(in.GetPolicies()))
	for _, p := range in.GetPolicies() {
		mode, err := mtlspolicy.ParseMode(p.GetMode())
		if err != nil {
			a.log.Error("ignoring mtls policy with an unknown mode", "policy_id", p.GetId(), "error", err)
			continue
		}
		ps = append(ps, mtlspolicy.Policy{
			ID: p.GetId(), SPIFFEID: p.GetSpiffeId(), Prefix: p.GetPrefix(), Port: p.GetPort(),
			Mode: mode, ExemptPorts: slices.Clone(p.GetExemptPorts()), DryRun: p.GetDryRun(),
		})
	}
	m := a.mtls
	m.mu.Lock()
	m.policies, m.known = ps, true
	close(m.changed)
	m.changed = make(chan struct{})
	m.mu.Unlock()
	a.log.Info("mtls policies applied", "policies", len(ps))
}

// AddConnections adds counts reported by a proxy (deltas since its last
// report) to what goes to the CA next. The caller has checked the proxy
// may report for these workloads.
func (a *Agent) AddConnections(counts []*agentv1.ConnectionCounts) {
	m := a.mtls
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range counts {
		m.addLocked(&nodev1.ConnectionCounts{
			SpiffeId: c.GetSpiffeId(), Port: c.GetPort(), Mtls: c.GetMtls(), Plaintext: c.GetPlaintext(),
			Refused: c.GetRefused(), PlaintextSources: c.GetPlaintextSources(),
		})
	}
}

func (m *mtlsState) addLocked(c *nodev1.ConnectionCounts) {
	k := countKey{spiffeID: c.GetSpiffeId(), port: c.GetPort()}
	p, ok := m.pending[k]
	if !ok {
		if len(m.pending) >= maxPendingCounts {
			return
		}
		p = &nodev1.ConnectionCounts{SpiffeId: k.spiffeID, Port: k.port}
		m.pending[k] = p
	}
	p.Mtls += max(c.GetMtls(), 0)
	p.Plaintext += max(c.GetPlaintext(), 0)
	p.Refused += max(c.GetRefused(), 0)
	for _, s := range c.GetPlaintextSources() {
		if len(p.PlaintextSources) >= maxPendingSources {
			break
		}
		if s != "" && !slices.Contains(p.PlaintextSources, s) {
			p.PlaintextSources = append(p.PlaintextSources, s)
		}
	}
}

// takeCounts returns the pending counts and forgets them.
func (m *mtlsState) takeCounts() []*nodev1.ConnectionCounts {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.pending) == 0 {
		return nil
	}
	out := make([]*nodev1.ConnectionCounts, 0, len(m.pending))
	for _, c := range m.pending {
		out = append(out, c)
	}
	clear(m.pending)
	return out
}

// putBack returns counts that could not be reported, to go with the next
// report.
func (m *mtlsState) putBack(counts []*nodev1.ConnectionCounts) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range counts {
		m.addLocked(c)
	}
}

// reportConnectionsLoop sends the pending counts to the CA every
// ConnectionReportInterval, when there are any. A failed report keeps its
// counts for the next one.
func (a *Agent) reportConnectionsLoop(ctx context.Context) error {
	t := a.cfg.Clock.NewTicker(ConnectionReportInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C():
		}
		counts := a.mtls.takeCounts()
		if len(counts) == 0 {
			continue
		}
		if err := a.reportStatus(ctx, counts); err != nil {
			a.mtls.putBack(counts)
			if ctx.Err() == nil {
				a.log.Warn("reporting connection counts", "error", err)
			}
		}
	}
}

// reportStatus sends ReportStatus with the bundle revision applied now and
// counts. Calls are serialized (see mtlsState.reportMu).
func (a *Agent) reportStatus(ctx context.Context, counts []*nodev1.ConnectionCounts) error {
	a.mtls.reportMu.Lock()
	defer a.mtls.reportMu.Unlock()
	c := a.conn()
	if c == nil {
		return errNotConnected
	}
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	return c.ReportConnections(cctx, a.cache.Lookup(nil).BundleRevision, counts)
}
