package proxy_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/signet-mesh/signet/ca/catest"
	"github.com/signet-mesh/signet/internal/mtlspolicy"
	agentv1 "github.com/signet-mesh/signet/proto/signet/agent/v1"
	"github.com/signet-mesh/signet/sds/proxy"
)

var (
	td       = spiffeid.RequireTrustDomainFromString("example.org")
	serverID = spiffeid.RequireFromPath(td, "/echo")
	clientID = spiffeid.RequireFromPath(td, "/client")
	otherID  = spiffeid.RequireFromPath(td, "/other")
)

// waitTimeout bounds every wait of these tests.
const waitTimeout = 10 * time.Second

// listen returns a listener on 127.0.0.1 closed at cleanup.
func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// echoServer echoes every connection until it is closed.
func echoServer(t testing.TB) string {
	t.Helper()
	ln := listen(t)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// settablePolicy is a PolicySource the test changes with set.
type settablePolicy struct {
	ch chan proxy.Policy
}

func newSettablePolicy() *settablePolicy { return &settablePolicy{ch: make(chan proxy.Policy, 16)} }

func (s *settablePolicy) Watch(ctx context.Context, _ []uint32, update func(proxy.Policy)) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case p := <-s.ch:
			update(p)
		}
	}
}

func (s *settablePolicy) set(workload proxy.Decision, ports map[uint32]proxy.Decision) {
	s.ch <- proxy.Policy{Workload: workload, Ports: ports}
}

func mode(m mtlspolicy.Mode) proxy.Decision { return proxy.Decision{Mode: m} }

// recordingReporter keeps what the proxy reports.
type recordingReporter struct {
	mu     sync.Mutex
	counts []*agentv1.ConnectionCounts
}

func (r *recordingReporter) Report(_ context.Context, c []*agentv1.ConnectionCounts) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts = append(r.counts, c...)
	return nil
}

func (r *recordingReporter) sum(port uint32) (mtls, plain, refused int64, sources []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.counts {
		if c.GetPort() == port {
			mtls += c.GetMtls()
			plain += c.GetPlaintext()
			refused += c.GetRefused()
			sources = append(sources, c.GetPlaintextSources()...)
		}
	}
	return
}

// env is a CA, an echo upstream and credentials for the proxy and clients.
type env struct {
	ca        *catest.CA
	bundle    *x509bundle.Bundle
	upstream  string
	proxyCred *proxy.StaticCredentials
	client    *x509svid.SVID
	other     *x509svid.SVID
}

func newEnv(t testing.TB) *env {
	t.Helper()
	c := catest.NewCA(t, td)
	return &env{
		ca:        c,
		bundle:    c.X509Bundle(),
		upstream:  echoServer(t),
		proxyCred: proxy.NewStaticCredentials(c.CreateX509SVID(t, serverID), c.X509Bundle()),
		client:    c.CreateX509SVID(t, clientID),
		other:     c.CreateX509SVID(t, otherID),
	}
}

// startProxy runs a proxy with cfg's blanks filled from e until the test
// ends, and waits for it to serve when it has inbound listeners and the
// policy is already set.
func (e *env) startProxy(t testing.TB, cfg proxy.Config, ls ...proxy.Listener) *proxy.Proxy {
	t.Helper()
	if cfg.SPIFFEID.IsZero() {
		cfg.SPIFFEID = serverID
	}
	if cfg.Credentials == nil {
		cfg.Credentials = e.proxyCred
	}
	if cfg.ReportInterval == 0 {
		cfg.ReportInterval = 20 * time.Millisecond
	}
	cfg.DrainTimeout = time.Second
	p, err := proxy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, ls...) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return p
}

func waitReady(t testing.TB, p *proxy.Proxy) {
	t.Helper()
	select {
	case <-p.Ready():
	case <-time.After(waitTimeout):
		t.Fatal("proxy not ready")
	}
}

// mtlsConfig is a client config presenting svid and expecting want.
func (e *env) mtlsConfig(svid *x509svid.SVID, want spiffeid.ID) *tls.Config {
	return tlsconfig.MTLSClientConfig(svid, e.bundle, tlsconfig.AuthorizeID(want))
}

// echoOnce writes a line on c and reads it back.
func echoOnce(c net.Conn) error {
	c.SetDeadline(time.Now().Add(waitTimeout))
	defer c.SetDeadline(time.Time{})
	const msg = "hello over the proxy\n"
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if got != msg {
		return errors.New("echo mismatch: " + got)
	}
	return nil
}

// dialPlain connects in plaintext and echoes a line.
func dialPlain(addr string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, waitTimeout)
	if err != nil {
		return nil, err
	}
	if err := echoOnce(c); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// dialTLS connects with cfg and echoes a line.
func dialTLS(addr string, cfg *tls.Config) (net.Conn, error) {
	d := &net.Dialer{Timeout: waitTimeout}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	if err := echoOnce(c); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// dialer makes one client connection.
type dialer func() (net.Conn, error)

func plain(addr string) dialer { return func() (net.Conn, error) { return dialPlain(addr) } }

func withTLS(addr string, cfg *tls.Config) dialer {
	return func() (net.Conn, error) { return dialTLS(addr, cfg) }
}

func mustWork(t testing.TB, what string, d dialer) net.Conn {
	t.Helper()
	c, err := d()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return c
}

func mustFail(t testing.TB, what string, d dialer) {
	t.Helper()
	c, err := d()
	if err == nil {
		c.Close()
		t.Fatalf("%s: worked, want refused", what)
	}
}

// refused reports whether d fails.
func refused(d dialer) bool {
	c, err := d()
	if err == nil {
		c.Close()
	}
	return err != nil
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// peerSerial is the serial of the certificate the server presented on c.
func peerSerial(t testing.TB, c net.Conn) string {
	t.Helper()
	tc, ok := c.(*tls.Conn)
	if !ok {
		t.Fatalf("%T is not a TLS connection", c)
	}
	return tc.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

// ioCopyDiscard reads c to EOF and returns how many bytes it read.
func ioCopyDiscard(c net.Conn) (int64, error) { return io.Copy(io.Discard, c) }

// tlsDial connects with cfg and completes the handshake.
func tlsDial(addr string, cfg *tls.Config) (net.Conn, error) {
	return tls.DialWithDialer(&net.Dialer{Timeout: waitTimeout}, "tcp", addr, cfg)
}
