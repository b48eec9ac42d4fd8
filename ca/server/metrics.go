package server

import (
	"context"
	"path"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/signet-mesh/signet/ca/api"
	"github.com/signet-mesh/signet/ca/bundle"
	"github.com/signet-mesh/signet/ca/store"
	"github.com/signet-mesh/signet/internal/clock"
)

// Names of the CA's metrics. Dashboards (deploy/grafana) and alerts use
// them; renaming one is a breaking change.
const (
	// MetricSVIDsIssued counts requested SVIDs by kind (workload, node,
	// jwt) and outcome (success, denied, invalid, error).
	MetricSVIDsIssued = "signet_svids_issued_total"
	// MetricMintDuration is the time the CA takes to sign and check one
	// SVID, by kind.
	MetricMintDuration = "signet_svid_mint_duration_seconds"
	// MetricNodeAttestations counts AttestNode calls by result (success,
	// unknown_token, expired_token, invalid, refused, error).
	MetricNodeAttestations = "signet_node_attestations_total"
	// MetricEntries is the number of registration entries.
	MetricEntries = "signet_registration_entries"
	// MetricConnectedAgents is the number of agents holding an entry-sync
	// stream open.
	MetricConnectedAgents = "signet_connected_agents"
	// MetricReplicaAgents is the number of agents connected to each CA
	// replica sharing the store (this one included), by replica: which
	// replica each agent talks to, as this replica sees it.
	MetricReplicaAgents = "signet_replica_connected_agents"
	// MetricBundleRevision is the trust bundle's revision.
	MetricBundleRevision = "signet_bundle_revision"
	// MetricAuthorityExpiry is the seconds until each authority that is
	// not retired expires, by authority_id, kind and state. Negative once
	// expired.
	MetricAuthorityExpiry = "signet_authority_time_to_expiry_seconds"
	// MetricAuditRecords counts the audit records ever written: the
	// sequence number of the log's head, so it survives restarts and
	// pruning.
	MetricAuditRecords = "signet_audit_records_written_total"
	// MetricStoreCommitDuration is the time from asking the store for a
	// read-write transaction to its durable commit, by op (update, batch).
	MetricStoreCommitDuration = "signet_store_commit_duration_seconds"
	// MetricNodeAPIRequests counts node API calls by method and code.
	MetricNodeAPIRequests = "signet_node_api_requests_total"
	// MetricStoreGroupCommitCalls is how many Batch calls (recordings of
	// issued SVIDs, mostly) each group commit carried.
	MetricStoreGroupCommitCalls = "signet_store_group_commit_calls"
	// MetricAuditChainOK is 1 when the audit chain verified at start (from
	// its newest checkpoint to its head), 0 when a record is missing or
	// altered (or the check failed); MetricAuditChainFirstBadSeq is then
	// the first bad record's seq (0 when none is known).
	MetricAuditChainOK          = "signet_audit_chain_ok"
	MetricAuditChainFirstBadSeq = "signet_audit_chain_first_bad_seq"
	// MetricRotateNowWindow is the window over which the last root
	// activate --rotate-now spread the fleet's re-mint, and
	// MetricRotateNowSVIDCost the cost of one SVID (CPU time, or a remote
	// signer's latency) it was computed from.
	MetricRotateNowWindow   = "signet_rotate_now_window_seconds"
	MetricRotateNowSVIDCost = "signet_rotate_now_svid_cost_seconds"
	// MetricAdmissionRefusals counts calls refused by admission control,
	// by kind of call and the bound they were over.
	MetricAdmissionRefusals = "signet_admission_refusals_total"
)

// Histogram buckets, in seconds. Signing with a soft key takes well under a
// millisecond, an HSM or cloud KMS tens to hundreds; a bbolt commit is one
// or two fsyncs, a millisecond on SSDs and tens on network disks.
var (
	mintBuckets   = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}
	commitBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}
)

// stateTimeout bounds the store read a scrape makes.
const stateTimeout = 5 * time.Second

// Metrics is the CA's metric set. Create it with NewMetrics, pass it in
// Config.Metrics, and serve the registry it was registered with (see
// internal/telemetry). A nil *Metrics records nothing. One Metrics serves
// one Server.
type Metrics struct {
	svidsIssued  *prometheus.CounterVec
	mintDuration *prometheus.HistogramVec
	attestations *prometheus.CounterVec
	storeCommit  *prometheus.HistogramVec
	groupCommit  prometheus.Histogram
	requests     *prometheus.CounterVec
	state        *stateCollector
	chainOK      prometheus.Gauge
	chainBadSeq  prometheus.Gauge
	rotateWindow prometheus.Gauge
	rotateCost   prometheus.Gauge
	refusals     *prometheus.CounterVec
}

// NewMetrics creates the CA's metrics and registers them with reg. It
// panics if they are already registered there (a wiring bug).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		svidsIssued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricSVIDsIssued,
			Help: "SVIDs requested from the CA, by kind (workload, node, jwt) and outcome (success, denied, invalid, error).",
		}, []string{"kind", "outcome"}),
		mintDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    MetricMintDuration,
			Help:    "Time to sign and check one SVID, by kind.",
			Buckets: mintBuckets,
		}, []string{"kind"}),
		attestations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricNodeAttestations,
			Help: "Node attestations, by result (success, unknown_token, expired_token, invalid, refused, error).",
		}, []string{"result"}),
		storeCommit: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    MetricStoreCommitDuration,
			Help:    "Time from requesting a read-write store transaction to its durable commit, by op (update, batch).",
			Buckets: commitBuckets,
		}, []string{"op"}),
		groupCommit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    MetricStoreGroupCommitCalls,
			Help:    "Batch calls carried by each group commit (one fsync): above 1 under load.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10),
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricNodeAPIRequests,
			Help: "Node API calls, by method and gRPC status code: shows how well agents batch.",
		}, []string{"method", "code"}),
		state: newStateCollector(),
		chainOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: MetricAuditChainOK,
			Help: "1 when the audit chain verified at start (newest checkpoint to head), 0 when a record is missing or altered.",
		}),
		chainBadSeq: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: MetricAuditChainFirstBadSeq,
			Help: "Seq of the first missing or altered audit record found at start; 0 when none.",
		}),
		rotateWindow: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: MetricRotateNowWindow,
			Help: "Window over which the last rotate-now spread the fleet's re-mint.",
		}),
		rotateCost: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: MetricRotateNowSVIDCost,
			Help: "Cost of one SVID (CPU time, or a remote signer's latency) the last rotate-now window was computed from.",
		}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricAdmissionRefusals,
			Help: "Calls refused by admission control with a retry hint, by calls (attestations, mint_batches) and bound (signing: the cores are busy; in_flight: commits are slow).",
		}, []string{"calls", "bound"}),
	}
	// Show the common series at zero from the first scrape, so rate()
	// and alerts work before the first event.
	for _, kind := range []string{api.SVIDKindWorkload, api.SVIDKindNode, api.SVIDKindJWT} {
		for _, outcome := range []string{api.OutcomeSuccess, api.OutcomeDenied, api.OutcomeInvalid, api.OutcomeError} {
			m.svidsIssued.WithLabelValues(kind, outcome)
		}
	}
	for _, calls := range []string{api.CallsAttestations, api.CallsMintBatches} {
		for _, bound := range []string{api.BoundSigning, api.BoundInFlight} {
			m.refusals.WithLabelValues(calls, bound)
		}
	}
	for _, r := range []string{api.AttestSuccess, api.AttestUnknownToken, api.AttestExpiredToken, api.AttestInvalid, api.AttestRefused, api.AttestError, api.AttestBusy} {
		m.attestations.WithLabelValues(r)
	}
	reg.MustRegister(m.svidsIssued, m.mintDuration, m.attestations, m.storeCommit, m.groupCommit, m.requests, m.state, m.chainOK, m.chainBadSeq, m.rotateWindow, m.rotateCost, m.refusals)
	return m
}

// nodeHooks returns the node API's hooks; zero for a nil m.
func (m *Metrics) nodeHooks() api.NodeMetrics {
	if m == nil {
		return api.NodeMetrics{}
	}
	return api.NodeMetrics{
		SVIDIssued: func(kind, outcome string) { m.svidsIssued.WithLabelValues(kind, outcome).Inc() },
		Signed: func(kind string, d time.Duration) {
			m.mintDuration.WithLabelValues(kind).Observe(d.Seconds())
		},
		NodeAttested: func(result string) { m.attestations.WithLabelValues(result).Inc() },
		RotateWindow: func(window, svidCost time.Duration) {
			m.rotateWindow.Set(window.Seconds())
			m.rotateCost.Set(svidCost.Seconds())
		},
		AdmissionRefused: func(calls, bound string) { m.refusals.WithLabelValues(calls, bound).Inc() },
	}
}

// setAuditChain records the start-time audit chain check.
func (m *Metrics) setAuditChain(ok bool, badSeq uint64) {
	if m == nil {
		return
	}
	if ok {
		m.chainOK.Set(1)
	} else {
		m.chainOK.Set(0)
	}
	m.chainBadSeq.Set(float64(badSeq))
}

// groupCommitHook returns the store's OnGroupCommit; nil for a nil m.
func (m *Metrics) groupCommitHook() func(int) {
	if m == nil {
		return nil
	}
	return func(calls int) { m.groupCommit.Observe(float64(calls)) }
}

// instrument returns st with its commits timed; st itself for a nil m.
func (m *Metrics) instrument(st store.Store) store.Store {
	if m == nil {
		return st
	}
	return &meteredStore{Store: st, update: m.storeCommit.WithLabelValues("update"), batch: m.storeCommit.WithLabelValues("batch")}
}

// bind points the scrape-time metrics at s.
func (m *Metrics) bind(s *Server) {
	if m == nil {
		return
	}
	m.state.src.Store(&stateSource{store: s.store, conns: s.conns, clock: s.cfg.Clock, td: s.cfg.TrustDomain, name: s.cfg.ServerName})
}

// meteredStore times the read-write transactions of the store it wraps.
// Only committed transactions are observed: a failed one says nothing
// about commit latency.
type meteredStore struct {
	store.Store
	update, batch prometheus.Observer
}

func (s *meteredStore) Update(ctx context.Context, fn func(store.Tx) error) error {
	start := time.Now()
	err := s.Store.Update(ctx, fn)
	if err == nil {
		s.update.Observe(time.Since(start).Seconds())
	}
	return err
}

func (s *meteredStore) Batch(ctx context.Context, fn func(store.Tx) error) error {
	start := time.Now()
	err := s.Store.Batch(ctx, fn)
	if err == nil {
		s.batch.Observe(time.Since(start).Seconds())
	}
	return err
}

// stateSource is what the scrape-time metrics read.
type stateSource struct {
	store store.Store
	conns *api.Connections
	clock clock.Clock
	td    spiffeid.TrustDomain
	// name is this server's replica name.
	name string
}

// stateCollector reads the CA's state at scrape time, in one read
// transaction: entries, bundle revision, authority expiry and the audit
// log's length come from the store, connected agents from the connection
// registry. Before bind it collects nothing.
type stateCollector struct {
	src       atomic.Pointer[stateSource]
	entries   *prometheus.Desc
	connected *prometheus.Desc
	replicas  *prometheus.Desc
	revision  *prometheus.Desc
	expiry    *prometheus.Desc
	audit     *prometheus.Desc
}

func newStateCollector() *stateCollector {
	return &stateCollector{
		entries:   prometheus.NewDesc(MetricEntries, "Registration entries in the store.", nil, nil),
		connected: prometheus.NewDesc(MetricConnectedAgents, "Agents holding an entry-sync stream open to this server.", nil, nil),
		replicas: prometheus.NewDesc(MetricReplicaAgents, "Agents holding an entry-sync stream open to each CA replica sharing the store, by replica (server_name).",
			[]string{"replica"}, nil),
		revision: prometheus.NewDesc(MetricBundleRevision, "Revision of the trust bundle.", nil, nil),
		expiry: prometheus.NewDesc(MetricAuthorityExpiry, "Seconds until each authority that is not retired expires, by authority_id, kind and state (negative once expired).",
			[]string{"authority_id", "kind", "state"}, nil),
		audit: prometheus.NewDesc(MetricAuditRecords, "Audit records ever written (the sequence number of the log's head).", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.entries
	ch <- c.connected
	ch <- c.replicas
	ch <- c.revision
	ch <- c.expiry
	ch <- c.audit
}

// Collect implements prometheus.Collector.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	src := c.src.Load()
	if src == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.connected, prometheus.GaugeValue, float64(len(src.conns.Snapshot())))
	byReplica := src.conns.ByReplica()
	if n, ok := byReplica[""]; ok { // a store of its own: no peers named it
		delete(byReplica, "")
		byReplica[src.name] += n
	}
	if _, ok := byReplica[src.name]; !ok {
		byReplica[src.name] = 0 // this replica is there, with no agent
	}
	for name, n := range byReplica {
		ch <- prometheus.MustNewConstMetric(c.replicas, prometheus.GaugeValue, float64(n), name)
	}

	ctx, cancel := context.WithTimeout(context.Background(), stateTimeout)
	defer cancel()
	var (
		entries  int
		rev      int64
		auths    []*store.Authority
		auditSeq uint64
	)
	err := src.store.View(ctx, func(tx store.Tx) error {
		es, err := tx.ListEntries(store.EntryFilter{})
		if err != nil {
			return err
		}
		entries = len(es)
		b, err := bundle.FromTx(tx, src.td)
		if err != nil {
			return err
		}
		rev = b.Revision
		if auths, err = tx.ListAuthorities(); err != nil {
			return err
		}
		auditSeq, _, err = tx.AuditHead()
		return err
	})
	if err != nil {
		// The store is closing or failing: say so instead of
		// reporting stale or zero values.
		ch <- prometheus.NewInvalidMetric(c.entries, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.entries, prometheus.GaugeValue, float64(entries))
	ch <- prometheus.MustNewConstMetric(c.revision, prometheus.GaugeValue, float64(rev))
	ch <- prometheus.MustNewConstMetric(c.audit, prometheus.CounterValue, float64(auditSeq))
	now := src.clock.Now()
	for _, a := range auths {
		if a.State == store.StateRetired {
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.expiry, prometheus.GaugeValue, a.NotAfter.Sub(now).Seconds(),
			a.ID, string(a.Kind), string(a.State))
	}
}

// countRequests counts node API calls by method and status code.
func (m *Metrics) countRequests() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		resp, err := h(ctx, req)
		if m != nil {
			m.requests.WithLabelValues(path.Base(info.FullMethod), status.Code(err).String()).Inc()
		}
		return resp, err
	}
}
