package proxy_test

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-mesh/signet/ca/catest"
	"github.com/signet-mesh/signet/internal/mtlspolicy"
	"github.com/signet-mesh/signet/sds/proxy"
)

func portOf(ln net.Listener) uint32 { return uint32(ln.Addr().(*net.TCPAddr).Port) }

func TestInboundModes(t *testing.T) {
	e := newEnv(t)
	pol := newSettablePolicy()
	rep := &recordingReporter{}
	main, health := listen(t), listen(t)
	addr := main.Addr().String()
	pol.set(mode(mtlspolicy.Permissive), nil)
	p := e.startProxy(t, proxy.Config{Policy: pol, Reporter: rep},
		proxy.Inbound{Listener: main, Upstream: e.upstream},
		proxy.Inbound{Listener: health, Upstream: e.upstream, Health: true})
	waitReady(t, p)
	mtlsCfg := e.mtlsConfig(e.client, serverID)
	foreign := catest.NewCA(t, td).CreateX509SVID(t, clientID) // right ID, wrong CA

	// PERMISSIVE: both.
	plainOpen := mustWork(t, "PERMISSIVE plaintext", plain(addr))
	defer plainOpen.Close()
	tlsOpen := mustWork(t, "PERMISSIVE mTLS", withTLS(addr, mtlsCfg))
	defer tlsOpen.Close()
	mustFail(t, "PERMISSIVE TLS with a certificate of another CA", withTLS(addr, e.mtlsConfig(foreign, serverID)))

	// STRICT: mTLS only; open connections are untouched.
	pol.set(mode(mtlspolicy.Strict), nil)
	waitFor(t, "STRICT to refuse plaintext", func() bool { return refused(plain(addr)) })
	mustWork(t, "STRICT mTLS", withTLS(addr, mtlsCfg)).Close()
	mustFail(t, "STRICT TLS with a certificate of another CA", withTLS(addr, e.mtlsConfig(foreign, serverID)))
	if err := echoOnce(plainOpen); err != nil {
		t.Fatalf("plaintext connection opened under PERMISSIVE broke under STRICT: %v", err)
	}
	if err := echoOnce(tlsOpen); err != nil {
		t.Fatalf("mTLS connection broke on a policy change: %v", err)
	}
	// The health listener passes plaintext in every mode.
	mustWork(t, "health port under STRICT", plain(health.Addr().String())).Close()

	// A port exemption.
	pol.set(mode(mtlspolicy.Strict), map[uint32]proxy.Decision{portOf(main): {Mode: mtlspolicy.Strict, Exempt: true}})
	waitFor(t, "the exemption", func() bool { return !refused(plain(addr)) })

	// DISABLE: plaintext only; a TLS client reaches the echo server, which
	// does not speak TLS.
	pol.set(mode(mtlspolicy.Disable), nil)
	time.Sleep(50 * time.Millisecond) // no observable change for plaintext
	mustWork(t, "DISABLE plaintext", plain(addr)).Close()
	waitFor(t, "DISABLE to refuse mTLS", func() bool { return refused(withTLS(addr, mtlsCfg)) })

	// Counts reach the reporter by kind, with plaintext sources.
	waitFor(t, "reports", func() bool {
		m, pl, r, _ := rep.sum(portOf(main))
		return m >= 2 && pl >= 2 && r >= 3
	})
	if _, _, _, sources := rep.sum(portOf(main)); !slices.Contains(sources, "127.0.0.1") {
		t.Errorf("plaintext sources %q, want 127.0.0.1", sources)
	}
	if _, pl, r, _ := rep.sum(portOf(health)); pl != 0 || r != 0 {
		t.Errorf("health port counted: %d plaintext, %d refused", pl, r)
	}
}

func TestDryRun(t *testing.T) {
	e := newEnv(t)
	pol := newSettablePolicy()
	rep := &recordingReporter{}
	ln := listen(t)
	addr := ln.Addr().String()
	pol.set(proxy.Decision{Mode: mtlspolicy.Strict, DryRun: true}, nil)
	p := e.startProxy(t, proxy.Config{Policy: pol, Reporter: rep}, proxy.Inbound{Listener: ln, Upstream: e.upstream})
	waitReady(t, p)

	mustWork(t, "plaintext in dry run", plain(addr)).Close()
	foreign := catest.NewCA(t, td).CreateX509SVID(t, clientID)
	// The client does not check the server here: it stands for a client
	// with a bad certificate that STRICT would refuse.
	cfg := e.mtlsConfig(foreign, serverID)
	cfg.InsecureSkipVerify, cfg.VerifyPeerCertificate = true, nil
	mustWork(t, "TLS with a bad certificate in dry run", withTLS(addr, cfg)).Close()
	mustWork(t, "mTLS in dry run", withTLS(addr, e.mtlsConfig(e.client, serverID))).Close()

	waitFor(t, "dry-run counts", func() bool {
		m, pl, r, _ := rep.sum(portOf(ln))
		return m == 1 && pl == 1 && r == 2
	})
	if got := p.Stats(); got != (proxy.Stats{MTLS: 1, Plaintext: 1, Refused: 2}) {
		t.Errorf("Stats = %+v", got)
	}
}

func TestAllowedPeers(t *testing.T) {
	e := newEnv(t)
	ln := listen(t)
	p := e.startProxy(t, proxy.Config{Policy: proxy.StaticPolicy{Workload: mode(mtlspolicy.Strict)}, AllowedPeers: []spiffeid.ID{clientID}},
		proxy.Inbound{Listener: ln, Upstream: e.upstream})
	waitReady(t, p)
	mustWork(t, "allowed peer", withTLS(ln.Addr().String(), e.mtlsConfig(e.client, serverID))).Close()
	mustFail(t, "peer not allowed", withTLS(ln.Addr().String(), e.mtlsConfig(e.other, serverID)))
}

func TestOutbound(t *testing.T) {
	e := newEnv(t)
	in := listen(t)
	inProxy := e.startProxy(t, proxy.Config{Policy: proxy.StaticPolicy{Workload: mode(mtlspolicy.Strict)}, AllowedPeers: []spiffeid.ID{clientID}},
		proxy.Inbound{Listener: in, Upstream: e.upstream})
	waitReady(t, inProxy)

	clientCred := proxy.NewStaticCredentials(e.client, e.bundle)
	good, wrongPeer := listen(t), listen(t)
	e.startProxy(t, proxy.Config{SPIFFEID: clientID, Credentials: clientCred, Policy: proxy.StaticPolicy{Workload: mode(mtlspolicy.Permissive)}},
		proxy.Outbound{Listener: good, Remote: in.Addr().String(), PeerID: serverID},
		proxy.Outbound{Listener: wrongPeer, Remote: in.Addr().String(), PeerID: otherID})

	mustWork(t, "outbound to the right peer", plain(good.Addr().String())).Close()
	mustFail(t, "outbound to a peer with another ID", plain(wrongPeer.Addr().String()))

	// An outbound proxy whose own identity the inbound does not allow.
	otherCred := proxy.NewStaticCredentials(e.other, e.bundle)
	notAllowed := listen(t)
	e.startProxy(t, proxy.Config{SPIFFEID: otherID, Credentials: otherCred, Policy: proxy.StaticPolicy{Workload: mode(mtlspolicy.Permissive)}},
		proxy.Outbound{Listener: notAllowed, Remote: in.Addr().String(), PeerID: serverID})
	mustFail(t, "outbound from a peer the inbound does not allow", plain(notAllowed.Addr().String()))
}

// TestRotation: a new certificate is used by new connections while open
// ones keep going.
func TestRotation(t *testing.T) {
	e := newEnv(t)
	ln := listen(t)
	p := e.startProxy(t, proxy.Config{Policy: proxy.StaticPolicy{Workload: mode(mtlspolicy.Strict)}}, proxy.Inbound{Listener: ln, Upstream: e.upstream})
	waitReady(t, p)
	addr := ln.Addr().String()
	open := mustWork(t, "first connection", withTLS(addr, e.mtlsConfig(e.client, serverID)))
	defer open.Close()
	before := peerSerial(t, open)

	// A new root and SVID: the bundle carries both roots, as during a
	// rotation.
	next := catest.NewCA(t, td)
	both := e.bundle.Clone()
	both.AddX509Authority(next.Root)
	e.proxyCred.Set(next.CreateX509SVID(t, serverID), both)
	e.bundle = both

	fresh := mustWork(t, "connection after rotation", withTLS(addr, e.mtlsConfig(e.client, serverID)))
	defer fresh.Close()
	if after := peerSerial(t, fresh); after == before {
		t.Fatal("new connection got the old certificate")
	}
	if err := echoOnce(open); err != nil {
		t.Fatalf("open connection broke on rotation: %v", err)
	}
}

func TestHalfClose(t *testing.T) {
	e := newEnv(t)
	// An upstream that reads everything, then answers with the count.
	up := listen(t)
	go func() {
		for {
			c, err := up.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				n, _ := ioCopyDiscard(c)
				c.Write([]byte{byte(n)})
			}()
		}
	}()
	ln := listen(t)
	p := e.startProxy(t, proxy.Config{Policy: proxy.StaticPolicy{Workload: mode(mtlspolicy.Permissive)}}, proxy.Inbound{Listener: ln, Upstream: up.Addr().String()})
	waitReady(t, p)
	for _, tc := range []struct {
		name string
		dial func() (net.Conn, error)
	}{
		{"plaintext", func() (net.Conn, error) { return net.Dial("tcp", ln.Addr().String()) }},
		{"mTLS", func() (net.Conn, error) { return tlsDial(ln.Addr().String(), e.mtlsConfig(e.client, serverID)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.dial()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(waitTimeout))
			if _, err := c.Write([]byte("12345")); err != nil {
				t.Fatal(err)
			}
			if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
				t.Fatal(err)
			}
			b := make([]byte, 1)
			if _, err := c.Read(b); err != nil || b[0] != 5 {
				t.Fatalf("after half-close read %v, %v; want the upstream's count 5", b, err)
			}
		})
	}
}

// TestShutdown: Run returns when ctx ends, and open connections are closed
// after the drain timeout.
func TestShutdown(t *testing.T) {
	e := newEnv(t)
	ln := listen(t)
	p, err := proxy.New(proxy.Config{SPIFFEID: serverID, Credentials: e.proxyCred, Policy: proxy.StaticPolicy{Workload: mode(mtlspolicy.Permissive)}, DrainTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, proxy.Inbound{Listener: ln, Upstream: e.upstream}) }()
	waitReady(t, p)
	c := mustWork(t, "connection", plain(ln.Addr().String()))
	defer c.Close()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Run did not return")
	}
	if echoOnce(c) == nil {
		t.Fatal("connection still open after the drain timeout")
	}
}

// TestPairIntegrity streams random bytes, in writes of random sizes,
// through an outbound and an inbound proxy to the echo server and back:
// what comes back is what went in, records gathered and batched or not.
func TestPairIntegrity(t *testing.T) {
	e := newEnv(t)
	in, out := listen(t), listen(t)
	p := e.startProxy(t, proxy.Config{Policy: proxy.StaticPolicy{Workload: mode(mtlspolicy.Strict)}}, proxy.Inbound{Listener: in, Upstream: e.upstream})
	waitReady(t, p)
	e.startProxy(t, proxy.Config{SPIFFEID: clientID, Credentials: proxy.NewStaticCredentials(e.client, e.bundle), Policy: proxy.StaticPolicy{Workload: mode(mtlspolicy.Permissive)}},
		proxy.Outbound{Listener: out, Remote: in.Addr().String(), PeerID: serverID})

	c, err := net.Dial("tcp", out.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(waitTimeout))
	r := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, 8<<20)
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	go func() {
		for rest := data; len(rest) > 0; {
			n := min(len(rest), 1+r.IntN(200<<10))
			if _, err := c.Write(rest[:n]); err != nil {
				return
			}
			rest = rest[n:]
		}
		c.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("echoed %d bytes, sent %d; equal prefix %d", len(got), len(data), commonPrefix(got, data))
	}
}

func commonPrefix(a, b []byte) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

// TestBulkThenInteractive: after a bulk transfer (big buffers, read-ahead)
// a connection still delivers small messages at once.
func TestBulkThenInteractive(t *testing.T) {
	e := newEnv(t)
	in, out := listen(t), listen(t)
	p := e.startProxy(t, proxy.Config{Policy: proxy.StaticPolicy{Workload: mode(mtlspolicy.Strict)}}, proxy.Inbound{Listener: in, Upstream: e.upstream})
	waitReady(t, p)
	e.startProxy(t, proxy.Config{SPIFFEID: clientID, Credentials: proxy.NewStaticCredentials(e.client, e.bundle), Policy: proxy.StaticPolicy{Workload: mode(mtlspolicy.Permissive)}},
		proxy.Outbound{Listener: out, Remote: in.Addr().String(), PeerID: serverID})
	c, err := net.Dial("tcp", out.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(waitTimeout))
	bulk := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	go c.Write(bulk)
	if _, err := io.ReadFull(c, make([]byte, len(bulk))); err != nil {
		t.Fatalf("bulk echo: %v", err)
	}
	for i := range 20 {
		start := time.Now()
		if err := echoOnce(c); err != nil {
			t.Fatalf("small message %d after the bulk transfer: %v", i, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("small message %d took %s", i, d)
		}
	}
}
