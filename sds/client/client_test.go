package client_test

import (
	"context"
	"crypto/x509"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/signet-mesh/signet/internal/backoff"
	"github.com/signet-mesh/signet/sds/client"
	"github.com/signet-mesh/signet/sds/internal/sdstest"
	"github.com/signet-mesh/signet/sds/server"
)

const (
	// pushDeadline is the product requirement for a rotation to reach a
	// watcher.
	pushDeadline = 100 * time.Millisecond
	waitTimeout  = 5 * time.Second
)

// env is an agent-side SDS server on a Unix socket, with a fake source that
// the test drives.
type env struct {
	t     *testing.T
	ca    *sdstest.CA
	fed   *sdstest.CA
	src   *sdstest.Source
	path  string
	logs  *sdstest.LogRecorder
	nacks atomic.Int64
	stop  func()

	web, db *x509svid.SVID
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{
		t:    t,
		ca:   sdstest.NewCA(t, "example.org"),
		fed:  sdstest.NewCA(t, "federated.test"),
		src:  sdstest.NewSource(),
		path: filepath.Join(t.TempDir(), "agent.sock"),
		logs: &sdstest.LogRecorder{},
	}
	e.web = e.ca.SVID(t, "/web")
	e.db = e.ca.SVID(t, "/db")
	e.publish()
	e.start()
	return e
}

// start serves a new server on e.path.
func (e *env) start() {
	srv := server.New(server.Config{
		Source:   e.src,
		Attestor: &sdstest.Attestor{Selectors: []string{"unix:uid:1000"}},
		Metrics:  server.Metrics{Rejected: func(string) { e.nacks.Add(1) }},
	})
	e.stop = sdstest.Serve(e.t, e.path, srv)
}

func (e *env) publish() {
	e.src.Set(&server.Snapshot{
		Identities:       []server.Identity{{SVID: server.FromX509SVID(e.web)}, {SVID: server.FromX509SVID(e.db)}},
		Bundle:           e.ca.Bundle(),
		FederatedBundles: []*x509bundle.Bundle{e.fed.Bundle()},
	})
}

// run starts a client for names and stops it at cleanup, checking that Run
// returns nil on cancellation.
func (e *env) run(names ...string) *client.Client {
	e.t.Helper()
	c := client.New(client.Config{
		SocketPath:    e.path,
		ResourceNames: names,
		Logger:        e.logs.Logger(),
		Backoff:       backoff.Config{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond},
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	e.t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				e.t.Errorf("Run returned %v after cancellation, want nil", err)
			}
		case <-time.After(waitTimeout):
			e.t.Error("Run did not return after cancellation")
		}
	})
	return c
}

func waitReady(t *testing.T, c *client.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
}

// waitUpdate waits for a change notification.
func waitUpdate(t *testing.T, c *client.Client, d time.Duration) {
	t.Helper()
	select {
	case <-c.Updates():
	case <-time.After(d):
		t.Fatalf("no update within %v", d)
	}
}

// drain empties a pending notification.
func drain(c *client.Client) {
	select {
	case <-c.Updates():
	default:
	}
}

// wantCurrent checks that Current holds svid and roots that verify it.
func wantCurrent(t *testing.T, c *client.Client, svid *x509svid.SVID) {
	t.Helper()
	cert, roots, ok := c.Current()
	if !ok {
		t.Fatal("Current: not ok")
	}
	if !cert.Leaf.Equal(svid.Certificates[0]) {
		t.Fatalf("Current certificate has serial %s, want %s", cert.Leaf.SerialNumber, svid.Certificates[0].SerialNumber)
	}
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("Current certificate does not verify against Current roots: %v", err)
	}
}

func TestClientFollowsRotation(t *testing.T) {
	e := newEnv(t)
	c := e.run() // default names: default, ROOTCA
	waitReady(t, c)
	wantCurrent(t, c, e.web)
	version := c.Version()
	drain(c)

	e.web = e.ca.SVID(t, "/web")
	e.publish()
	waitUpdate(t, c, pushDeadline)
	wantCurrent(t, c, e.web)
	if c.Version() == version {
		t.Errorf("version %q did not change with the rotation", version)
	}
}

func TestClientSecrets(t *testing.T) {
	e := newEnv(t)
	c := e.run("default", "ROOTCA", "ALL", "spiffe://example.org/db", "spiffe://federated.test")
	waitReady(t, c)

	db, _ := c.Secret("spiffe://example.org/db")
	if db.Certificate == nil || !db.Certificate.Leaf.Equal(e.db.Certificates[0]) {
		t.Errorf("spiffe://example.org/db does not hold the db SVID")
	}
	all, _ := c.Secret("ALL")
	for _, ca := range []*sdstest.CA{e.ca, e.fed} {
		b, ok := all.Bundles.Get(ca.TD)
		if !ok || !b.HasX509Authority(ca.Root) {
			t.Errorf("ALL lacks the bundle of %s", ca.TD)
		}
	}
	fed, _ := c.Secret("spiffe://federated.test")
	if len(fed.Authorities) != 1 || !fed.Authorities[0].Equal(e.fed.Root) {
		t.Errorf("spiffe://federated.test = %v, want the federated root", fed.Authorities)
	}
	if _, ok := c.Secret("spiffe://example.org/web"); ok {
		t.Error("a secret that was not requested is present")
	}
}

// TestClientRejectsInvalidSecret checks that the client NACKs a secret Envoy
// would reject (here, a key that does not match the certificate), keeps
// serving the previous one, and accepts the next good one.
func TestClientRejectsInvalidSecret(t *testing.T) {
	e := newEnv(t)
	c := e.run()
	waitReady(t, c)
	good := e.web
	drain(c)

	e.web = e.ca.MismatchedSVID(t, "/web")
	e.publish()
	deadline := time.Now().Add(waitTimeout)
	for e.nacks.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the server saw no NACK")
		}
		time.Sleep(time.Millisecond)
	}
	wantCurrent(t, c, good)
	select {
	case <-c.Updates():
		t.Fatal("a rejected response notified an update")
	default:
	}
	if logs := e.logs.Find("rejecting secrets"); len(logs) != 1 || !strings.Contains(logs[0]["error"], "private key does not match") {
		t.Errorf("rejection logs = %v, want one naming the key mismatch", logs)
	}

	e.web = e.ca.SVID(t, "/web")
	e.publish()
	waitUpdate(t, c, pushDeadline)
	wantCurrent(t, c, e.web)
	if n := e.nacks.Load(); n != 1 {
		t.Errorf("NACKs = %d, want 1", n)
	}
}

// TestClientReconnects restarts the agent's server on the same socket path:
// the client keeps its secrets meanwhile, reconnects with backoff and
// follows rotations again.
func TestClientReconnects(t *testing.T) {
	e := newEnv(t)
	c := e.run()
	waitReady(t, c)
	old := e.web

	e.stop()
	e.web = e.ca.SVID(t, "/web")
	e.publish()
	time.Sleep(100 * time.Millisecond) // the client fails to reconnect a few times
	wantCurrent(t, c, old)             // and keeps what it has
	drain(c)

	e.start()
	waitUpdate(t, c, waitTimeout)
	wantCurrent(t, c, e.web)
	if logs := e.logs.Find("sds stream ended, reconnecting"); len(logs) == 0 {
		t.Error("reconnection was not logged")
	}
	if logs := e.logs.Find("reconnected to the agent"); len(logs) != 1 {
		t.Errorf("reconnection to the agent logged %d times, want once", len(logs))
	}

	e.web = e.ca.SVID(t, "/web")
	e.publish()
	waitUpdate(t, c, pushDeadline)
	wantCurrent(t, c, e.web)
}

func TestClientWaitReadyNamesMissing(t *testing.T) {
	e := newEnv(t)
	c := e.run("default", "spiffe://example.org/not-mine")
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	err := c.WaitReady(ctx)
	if err == nil || !strings.Contains(err.Error(), "spiffe://example.org/not-mine") || strings.Contains(err.Error(), `"default"`) {
		t.Fatalf("WaitReady = %v, want an error naming only the missing secret", err)
	}
	if _, ok := c.Secret("default"); !ok {
		t.Error("the available secret was not accepted")
	}
}

// TestClientWithoutAgent checks that Run keeps retrying while the socket
// does not exist, and still returns nil when cancelled.
func TestClientWithoutAgent(t *testing.T) {
	c := client.New(client.Config{
		SocketPath: filepath.Join(t.TempDir(), "missing.sock"),
		Backoff:    backoff.Config{Initial: time.Millisecond, Max: 5 * time.Millisecond},
	})
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if err := c.Run(ctx); err != nil {
		t.Fatalf("Run = %v, want nil after cancellation", err)
	}
	if _, _, ok := c.Current(); ok {
		t.Error("Current is ok without an agent")
	}
}

func TestClientNeedsSocketPath(t *testing.T) {
	err := client.New(client.Config{}).Run(t.Context())
	if err == nil || !strings.Contains(err.Error(), "SocketPath") {
		t.Fatalf("Run = %v, want an error about SocketPath", err)
	}
}
