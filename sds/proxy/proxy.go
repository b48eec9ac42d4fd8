package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/sync/errgroup"

	"github.com/signet-mesh/signet/internal/backoff"
	"github.com/signet-mesh/signet/internal/clock"
	"github.com/signet-mesh/signet/internal/mtlspolicy"
	agentv1 "github.com/signet-mesh/signet/proto/signet/agent/v1"
	"github.com/signet-mesh/signet/sds/internal/logkey"
)

// Defaults of Config.
const (
	DefaultReportInterval = 2 * time.Second
	// DefaultDetectTimeout is how long PERMISSIVE waits for a client's
	// first bytes before taking it for a server-first plaintext protocol.
	DefaultDetectTimeout = time.Second
	// DefaultHandshakeTimeout bounds a TLS handshake (and, in STRICT, the
	// wait for it to start).
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultDialTimeout      = 5 * time.Second
	DefaultDrainTimeout     = 10 * time.Second
)

// Credentials are the proxy's certificate and its trust domain's bundle.
// Both are read at every handshake. Implementations must be safe for
// concurrent use.
type Credentials interface {
	// Certificate returns the current certificate chain and key of the
	// proxy's SPIFFE ID.
	Certificate() (*tls.Certificate, error)
	x509bundle.Source
}

// Decision is the effective mTLS mode on one port.
type Decision struct {
	Mode mtlspolicy.Mode
	// DryRun (STRICT only): let through what STRICT would refuse.
	DryRun bool
	// Exempt: plaintext passes in every mode.
	Exempt bool
	// PolicyID names the deciding policy, empty for the default.
	PolicyID string
}

// Policy is the decision for each inbound port, and the workload-wide one
// for ports not listed.
type Policy struct {
	Workload Decision
	Ports    map[uint32]Decision
}

// For returns the decision on port.
func (p *Policy) For(port uint32) Decision {
	if d, ok := p.Ports[port]; ok {
		return d
	}
	return p.Workload
}

// PolicySource delivers the effective policy of the proxy's identity.
type PolicySource interface {
	// Watch calls update with the policy for ports, and again on every
	// change, until ctx ends; then it returns nil. Calls to update do not
	// overlap.
	Watch(ctx context.Context, ports []uint32, update func(Policy)) error
}

// Reporter takes connection counts (deltas since the previous call).
type Reporter interface {
	Report(ctx context.Context, counts []*agentv1.ConnectionCounts) error
}

// StaticPolicy is a PolicySource that never changes: for tests, and for a
// proxy run without an agent.
type StaticPolicy Policy

// Watch implements PolicySource.
func (s StaticPolicy) Watch(ctx context.Context, _ []uint32, update func(Policy)) error {
	update(Policy(s))
	<-ctx.Done()
	return nil
}

// Config configures a Proxy.
type Config struct {
	// SPIFFEID is the proxy's identity: its certificate's, and the one
	// whose policy it enforces and reports for. Required.
	SPIFFEID spiffeid.ID
	// Credentials are the certificate and bundle. Required.
	Credentials Credentials
	// Policy delivers the inbound mode. Required.
	Policy PolicySource
	// Reporter receives the inbound counts; nil keeps them in Stats only.
	Reporter Reporter
	// AllowedPeers limits inbound mTLS to these client IDs; empty allows
	// any SVID of the trust domain.
	AllowedPeers []spiffeid.ID
	// ReportInterval defaults to DefaultReportInterval.
	ReportInterval time.Duration
	// DetectTimeout defaults to DefaultDetectTimeout.
	DetectTimeout time.Duration
	// HandshakeTimeout defaults to DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// DialTimeout bounds connecting to upstreams and remotes; default
	// DefaultDialTimeout.
	DialTimeout time.Duration
	// DrainTimeout is how long Run waits for open connections after ctx
	// ends; default DefaultDrainTimeout.
	DrainTimeout time.Duration
	// Clock paces reports; nil is the wall clock.
	Clock clock.Clock
	// Logger defaults to discarding.
	Logger *slog.Logger
}

// Listener is an Inbound or an Outbound.
type Listener interface {
	listener() net.Listener
}

// Inbound serves a listener whose connections go to Upstream, enforcing the
// mTLS mode of the listener's port.
type Inbound struct {
	Listener net.Listener
	// Upstream is the local application (host:port).
	Upstream string
	// Health makes the listener pass plaintext in every mode, uncounted
	// (health checks).
	Health bool
}

// Outbound serves a listener of local plaintext connections, each carried
// over mTLS to Remote, which must be PeerID.
type Outbound struct {
	Listener net.Listener
	Remote   string
	PeerID   spiffeid.ID
}

func (i Inbound) listener() net.Listener  { return i.Listener }
func (o Outbound) listener() net.Listener { return o.Listener }

// Proxy is a sidecar proxy. Create it with New and serve with Run.
type Proxy struct {
	cfg    Config
	log    *slog.Logger
	policy atomic.Pointer[Policy]
	ready  chan struct{} // closed at the first policy
	counts *counter

	// serverTLS is the inbound config, enforcing; dryRunTLS accepts any
	// client certificate (or none) so that dry run can let it through.
	serverTLS, dryRunTLS *tls.Config

	connsMu sync.Mutex
	conns   map[net.Conn]struct{}
	connsWG sync.WaitGroup
}

// New checks cfg and returns a Proxy with its zero fields defaulted.
func New(cfg Config) (*Proxy, error) {
	switch {
	case cfg.SPIFFEID.IsZero():
		return nil, errors.New("proxy: SPIFFE ID must be configured")
	case cfg.Credentials == nil:
		return nil, errors.New("proxy: credentials must be configured")
	case cfg.Policy == nil:
		return nil, errors.New("proxy: a policy source must be configured")
	}
	for _, id := range cfg.AllowedPeers {
		if id.TrustDomain() != cfg.SPIFFEID.TrustDomain() {
			return nil, fmt.Errorf("proxy: allowed peer %s is not in trust domain %s", id, cfg.SPIFFEID.TrustDomain())
		}
	}
	cfg.Clock = clock.OrReal(cfg.Clock)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ReportInterval <= 0 {
		cfg.ReportInterval = DefaultReportInterval
	}
	if cfg.DetectTimeout <= 0 {
		cfg.DetectTimeout = DefaultDetectTimeout
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = DefaultDrainTimeout
	}
	p := &Proxy{
		cfg:    cfg,
		log:    cfg.Logger.With(logkey.Component, "proxy", logkey.SPIFFEID, cfg.SPIFFEID.String()),
		ready:  make(chan struct{}),
		counts: newCounter(),
		conns:  map[net.Conn]struct{}{},
	}
	p.serverTLS = p.newServerTLS(true)
	p.dryRunTLS = p.newServerTLS(false)
	return p, nil
}

// Run serves the listeners until ctx ends, then closes them, waits up to
// DrainTimeout for open connections, and returns nil. It returns an error
// when a listener fails.
func (p *Proxy) Run(ctx context.Context, listeners ...Listener) error {
	var inbound []Inbound
	var outbound []Outbound
	var ports []uint32
	for _, l := range listeners {
		switch l := l.(type) {
		case Inbound:
			if l.Listener == nil || l.Upstream == "" {
				return errors.New("proxy: an inbound needs a listener and an upstream")
			}
			inbound = append(inbound, l)
			if !l.Health {
				ports = append(ports, portOf(l.Listener.Addr()))
			}
		case Outbound:
			if l.Listener == nil || l.Remote == "" || l.PeerID.IsZero() {
				return errors.New("proxy: an outbound needs a listener, a remote and a peer ID")
			}
			outbound = append(outbound, l)
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return p.cfg.Policy.Watch(gctx, ports, p.setPolicy) })
	g.Go(func() error { return p.reportLoop(gctx) })
	for _, o := range outbound {
		cfg := p.newClientTLS(o.PeerID)
		g.Go(func() error { return p.serve(gctx, o.Listener, func(c net.Conn) { p.handleOutbound(gctx, c, o, cfg) }) })
	}
	g.Go(func() error {
		select {
		case <-gctx.Done():
			return nil
		case <-p.ready:
		}
		for _, in := range inbound {
			port := portOf(in.Listener.Addr())
			g.Go(func() error {
				return p.serve(gctx, in.Listener, func(c net.Conn) { p.handleInbound(gctx, c, in, port) })
			})
		}
		p.log.Info("proxy ready", logkey.Inbound, len(inbound), logkey.Outbound, len(outbound))
		return nil
	})
	<-gctx.Done()
	for _, l := range listeners {
		l.listener().Close()
	}
	err := g.Wait()
	p.drain()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// Ready is closed once the proxy has its first policy and serves inbound
// connections.
func (p *Proxy) Ready() <-chan struct{} { return p.ready }

func (p *Proxy) setPolicy(pol Policy) {
	old := p.policy.Swap(&pol)
	if old == nil {
		close(p.ready)
	}
	for port, d := range pol.Ports {
		if old == nil || old.For(port) != d {
			p.log.Info("mtls mode", logkey.Port, port, logkey.Mode, d.Mode, logkey.DryRun, d.DryRun, logkey.Exempt, d.Exempt, logkey.PolicyID, d.PolicyID)
		}
	}
}

// currentPolicy is the decision on port now.
func (p *Proxy) currentPolicy(port uint32) Decision {
	if pol := p.policy.Load(); pol != nil {
		return pol.For(port)
	}
	return Decision{Mode: mtlspolicy.Strict} // unreachable: inbound waits for ready
}

// serve accepts on ln until it is closed.
func (p *Proxy) serve(ctx context.Context, ln net.Listener, handle func(net.Conn)) error {
	// Out of file descriptors and the like: back off a little, as
	// net/http does, with the project's one retry policy.
	b := backoff.New(backoff.Config{Initial: 5 * time.Millisecond, Max: time.Second})
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				delay := b.Next()
				p.log.Warn("accept failed; retrying", logkey.Error, err, logkey.RetryIn, delay)
				if backoff.Sleep(ctx, nil, delay) != nil {
					return nil
				}
				continue
			}
			return fmt.Errorf("proxy: accepting on %s: %w", ln.Addr(), err)
		}
		b.Reset()
		if !p.track(c) {
			c.Close()
			continue
		}
		go func() {
			defer p.untrack(c)
			handle(c)
		}()
	}
}

// track registers an open connection, so drain can wait for it; false when
// the proxy is draining.
func (p *Proxy) track(c net.Conn) bool {
	p.connsMu.Lock()
	defer p.connsMu.Unlock()
	if p.conns == nil {
		return false
	}
	p.conns[c] = struct{}{}
	p.connsWG.Add(1)
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.connsMu.Lock()
	if p.conns != nil {
		delete(p.conns, c)
	}
	p.connsMu.Unlock()
	p.connsWG.Done()
}

// drain waits for open connections, then closes what is left.
func (p *Proxy) drain() {
	done := make(chan struct{})
	go func() { p.connsWG.Wait(); close(done) }()
	t := p.cfg.Clock.NewTimer(p.cfg.DrainTimeout)
	defer t.Stop()
	select {
	case <-done:
		return
	case <-t.C():
	}
	p.connsMu.Lock()
	n := len(p.conns)
	for c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.connsMu.Unlock()
	p.log.Warn("closed connections still open after the drain timeout", logkey.Count, n)
	<-done
}

// Stats returns the inbound counts since the proxy started.
func (p *Proxy) Stats() Stats { return p.counts.totals() }

func portOf(a net.Addr) uint32 {
	if t, ok := a.(*net.TCPAddr); ok {
		return uint32(t.Port)
	}
	_, port, _ := net.SplitHostPort(a.String())
	n, _ := strconv.ParseUint(port, 10, 16)
	return uint32(n)
}

func hostOf(a net.Addr) string {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}
