package agent

import (
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
)

// Names of the agent's metrics. Dashboards (deploy/grafana) and alerts use
// them; renaming one is a breaking change.
const (
	// MetricSVIDs is the number of workload SVIDs in the cache.
	MetricSVIDs = "signet_agent_svids"
	// MetricSVIDMinTimeToExpiry is the seconds until the earliest cached
	// workload SVID expires; absent while the cache holds none.
	MetricSVIDMinTimeToExpiry = "signet_agent_svid_min_time_to_expiry_seconds"
	// MetricNodeSVIDTimeToExpiry is the seconds until the node SVID
	// expires; absent before the agent has one.
	MetricNodeSVIDTimeToExpiry = "signet_agent_node_svid_time_to_expiry_seconds"
	// MetricRotations counts SVIDs replaced by a fresh one, by kind
	// (workload, node).
	MetricRotations = "signet_agent_svid_rotations_total"
	// MetricRotationFailures counts failed attempts to replace an SVID,
	// by kind. Each retry that fails counts again.
	MetricRotationFailures = "signet_agent_svid_rotation_failures_total"
	// MetricCAConnected is 1 while the entry-sync stream to the CA is up.
	MetricCAConnected = "signet_agent_ca_connected"
	// MetricCABackoff is the delay before the next retry of a failed call
	// to the CA, by op (attest, sync, mint, renew); 0 when not retrying.
	MetricCABackoff = "signet_agent_ca_retry_backoff_seconds"
	// MetricOpenStreams is the number of open streams on the agent
	// socket, by api (workload, sds).
	MetricOpenStreams = "signet_agent_open_streams"
	// MetricSDSPushes counts SDS responses sent, by api (stream, delta,
	// fetch).
	MetricSDSPushes = "signet_agent_sds_pushes_total"
	// MetricSDSNacks counts SDS responses a proxy rejected, by api.
	MetricSDSNacks = "signet_agent_sds_nacks_total"
	// MetricProxyConnections counts the inbound connections sidecar
	// proxies (`signet proxy`) reported, by type: mtls, plaintext, and
	// refused (by STRICT, or that STRICT would refuse in a dry run).
	MetricProxyConnections = "signet_agent_proxy_connections_total"
)

// Values of the kind label.
const (
	kindWorkload = "workload"
	kindNode     = "node"
)

// Values of the op label of MetricCABackoff.
const (
	opAttest = "attest"
	opSync   = "sync"
	opMint   = "mint"
	opRenew  = "renew"
)

// Values of the api label of MetricOpenStreams, and the gRPC services they
// stand for.
var streamAPIs = []struct{ prefix, api string }{
	{"/SpiffeWorkloadAPI/", "workload"},
	{"/envoy.service.secret.v3.SecretDiscoveryService/", "sds"},
}

// Metrics is the agent's metric set. Create it with NewMetrics, pass it in
// Config.Metrics, wire SDSPushed and SDSRejected into sds/server's Metrics
// and StreamInterceptor into the socket's gRPC server (ServeSocketWith),
// and serve the registry (see internal/telemetry). A nil *Metrics records nothing. One Metrics
// serves one Agent.
type Metrics struct {
	rotations        *prometheus.CounterVec
	rotationFailures *prometheus.CounterVec
	connected        prometheus.Gauge
	backoff          *prometheus.GaugeVec
	streams          *prometheus.GaugeVec
	sdsPushes        *prometheus.CounterVec
	sdsNacks         *prometheus.CounterVec
	proxyConns       *prometheus.CounterVec
	state            *agentCollector
}

// NewMetrics creates the agent's metrics and registers them with reg. It
// panics if they are already registered there (a wiring bug).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		rotations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricRotations,
			Help: "SVIDs replaced by a fresh one, by kind (workload, node).",
		}, []string{"kind"}),
		rotationFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricRotationFailures,
			Help: "Failed attempts to replace an SVID, by kind (workload, node).",
		}, []string{"kind"}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: MetricCAConnected,
			Help: "1 while the entry-sync stream to the CA is up, 0 otherwise.",
		}),
		backoff: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: MetricCABackoff,
			Help: "Delay before the next retry of a failed call to the CA, by op (attest, sync, mint, renew); 0 when not retrying.",
		}, []string{"op"}),
		streams: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: MetricOpenStreams,
			Help: "Open streams on the agent socket, by api (workload, sds).",
		}, []string{"api"}),
		sdsPushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricSDSPushes,
			Help: "SDS responses sent to proxies, by api (stream, delta, fetch).",
		}, []string{"api"}),
		sdsNacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricSDSNacks,
			Help: "SDS responses proxies rejected (NACKs), by api (stream, delta, fetch).",
		}, []string{"api"}),
		proxyConns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricProxyConnections,
			Help: "Inbound connections reported by sidecar proxies, by type (mtls, plaintext, refused).",
		}, []string{"type"}),
		state: newAgentCollector(),
	}
	// Show the common series at zero from the first scrape.
	for _, k := range []string{kindWorkload, kindNode} {
		m.rotations.WithLabelValues(k)
		m.rotationFailures.WithLabelValues(k)
	}
	for _, op := range []string{opAttest, opSync, opMint, opRenew} {
		m.backoff.WithLabelValues(op)
	}
	for _, s := range streamAPIs {
		m.streams.WithLabelValues(s.api)
	}
	for _, t := range []string{"mtls", "plaintext", "refused"} {
		m.proxyConns.WithLabelValues(t)
	}
	reg.MustRegister(m.rotations, m.rotationFailures, m.connected, m.backoff, m.streams, m.sdsPushes, m.sdsNacks, m.proxyConns, m.state)
	return m
}

// SDSPushed counts one SDS response; its signature is sds/server's
// Metrics.Pushed.
func (m *Metrics) SDSPushed(api string, _ int) {
	if m == nil {
		return
	}
	m.sdsPushes.WithLabelValues(api).Inc()
}

// SDSRejected counts one NACK; its signature is sds/server's
// Metrics.Rejected.
func (m *Metrics) SDSRejected(api string) {
	if m == nil {
		return
	}
	m.sdsNacks.WithLabelValues(api).Inc()
}

// ProxyConnections counts connections a proxy reported (deltas).
func (m *Metrics) ProxyConnections(mtls, plaintext, refused int64) {
	if m == nil {
		return
	}
	m.proxyConns.WithLabelValues("mtls").Add(float64(max(mtls, 0)))
	m.proxyConns.WithLabelValues("plaintext").Add(float64(max(plaintext, 0)))
	m.proxyConns.WithLabelValues("refused").Add(float64(max(refused, 0)))
}

// StreamInterceptor counts the open Workload API and SDS streams of the
// gRPC server it is installed in (see ServeSocketWith). For a nil m it
// passes every call through.
func (m *Metrics) StreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if m != nil {
			for _, s := range streamAPIs {
				if strings.HasPrefix(info.FullMethod, s.prefix) {
					g := m.streams.WithLabelValues(s.api)
					g.Inc()
					defer g.Dec()
					break
				}
			}
		}
		return h(srv, ss)
	}
}

func (m *Metrics) rotated(kind string) {
	if m == nil {
		return
	}
	m.rotations.WithLabelValues(kind).Inc()
}

func (m *Metrics) rotationFailed(kind string) {
	if m == nil {
		return
	}
	m.rotationFailures.WithLabelValues(kind).Inc()
}

func (m *Metrics) setConnected(up bool) {
	if m == nil {
		return
	}
	v := 0.0
	if up {
		v = 1
	}
	m.connected.Set(v)
}

// setBackoff records the delay before op's next retry; 0 once it
// succeeded.
func (m *Metrics) setBackoff(op string, d time.Duration) {
	if m == nil {
		return
	}
	m.backoff.WithLabelValues(op).Set(d.Seconds())
}

// bind points the scrape-time metrics at a.
func (m *Metrics) bind(a *Agent) {
	if m == nil {
		return
	}
	m.state.agent.Store(a)
}

// agentCollector reads the cache and the node SVID at scrape time. Before
// bind it collects nothing.
type agentCollector struct {
	agent   atomic.Pointer[Agent]
	svids   *prometheus.Desc
	svidTTL *prometheus.Desc
	nodeTTL *prometheus.Desc
}

func newAgentCollector() *agentCollector {
	return &agentCollector{
		svids:   prometheus.NewDesc(MetricSVIDs, "Workload SVIDs in the agent's cache.", nil, nil),
		svidTTL: prometheus.NewDesc(MetricSVIDMinTimeToExpiry, "Seconds until the earliest cached workload SVID expires.", nil, nil),
		nodeTTL: prometheus.NewDesc(MetricNodeSVIDTimeToExpiry, "Seconds until the node SVID expires.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *agentCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.svids
	ch <- c.svidTTL
	ch <- c.nodeTTL
}

// Collect implements prometheus.Collector.
func (c *agentCollector) Collect(ch chan<- prometheus.Metric) {
	a := c.agent.Load()
	if a == nil {
		return
	}
	now := a.cfg.Clock.Now()
	n, earliest := a.cache.Stats()
	ch <- prometheus.MustNewConstMetric(c.svids, prometheus.GaugeValue, float64(n))
	if n > 0 {
		ch <- prometheus.MustNewConstMetric(c.svidTTL, prometheus.GaugeValue, earliest.Sub(now).Seconds())
	}
	if node := a.node.SVID(); node != nil {
		ch <- prometheus.MustNewConstMetric(c.nodeTTL, prometheus.GaugeValue, node.Certificates[0].NotAfter.Sub(now).Seconds())
	}
}
