package e2e

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// mtlsWindow is the server's --mtls-window in these tests: short, so that a
// workload becomes ready for STRICT within the test once its plaintext
// client has gone (the default is 10 minutes).
const mtlsWindow = 8 * time.Second

const (
	echoID   = "spiffe://example.org/echo"
	clientID = "spiffe://example.org/client"
	otherID  = "spiffe://example.org/other"
)

// startEcho runs a TCP echo server on 127.0.0.1 for the test.
func startEcho(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
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

// startProxy runs `signet proxy` against agent a and waits until it serves.
func startProxy(t *testing.T, a *testAgent, name string, args ...string) *proc {
	t.Helper()
	args = append([]string{"proxy", "--socket", a.socket, "--log-level", "debug", "--report-interval", "500ms"}, args...)
	p := start(t, name, a.server.env, args...)
	waitFor(t, 30*time.Second, name+" ready", func() bool {
		if p.exited() {
			t.Fatalf("%s exited: %v\n%s", name, p.err, p.out.String())
		}
		return strings.Contains(p.out.String(), "proxy ready")
	})
	return p
}

// echoLine writes a line on c and reads it back.
func echoLine(c net.Conn) error {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.SetDeadline(time.Time{})
	const msg = "ping through signet proxy\n"
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if got != msg {
		return fmt.Errorf("echoed %q", got)
	}
	return nil
}

// dialer opens one client connection and echoes a line on it.
type dialer func() (net.Conn, error)

// plaintext connects to addr in plaintext.
func plaintext(addr string) dialer {
	return func() (net.Conn, error) {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return nil, err
		}
		if err := echoLine(c); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}
}

// mtlsClient connects to addr with svid, expecting the server to be want.
func mtlsClient(addr string, svid *x509svid.SVID, x *workloadapi.X509Context, want string) dialer {
	return func() (net.Conn, error) {
		cfg := tlsconfig.MTLSClientConfig(svid, x.Bundles, tlsconfig.AuthorizeID(spiffeid.RequireFromString(want)))
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
		if err != nil {
			return nil, err
		}
		if err := echoLine(c); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}
}

// works reports whether d connects and echoes.
func works(d dialer) bool {
	c, err := d()
	if c != nil {
		c.Close()
	}
	return err == nil
}

func mustEcho(t *testing.T, what string, d dialer) net.Conn {
	t.Helper()
	c, err := d()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return c
}

func mustRefuse(t *testing.T, what string, d dialer) {
	t.Helper()
	c, err := d()
	if err == nil {
		c.Close()
		t.Fatalf("%s: connection worked, want it refused", what)
	}
}

func svidOf(t *testing.T, x *workloadapi.X509Context, id string) *x509svid.SVID {
	t.Helper()
	for _, s := range x.SVIDs {
		if s.ID.String() == id {
			return s
		}
	}
	t.Fatalf("no SVID for %s", id)
	return nil
}

func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// workloadStatus is one element of `mtls status -o json`.
type workloadStatus struct {
	SPIFFEID             string `json:"spiffe_id"`
	Mode                 string `json:"mode"`
	DryRun               bool   `json:"dry_run"`
	MTLSConnections      int64  `json:"mtls_connections"`
	PlaintextConnections int64  `json:"plaintext_connections"`
	RefusedConnections   int64  `json:"refused_connections"`
	Ready                bool   `json:"ready"`
}

func mtlsStatus(t *testing.T, s *testServer, id string) workloadStatus {
	t.Helper()
	var all []workloadStatus
	out := s.cli(t, "mtls", "status", "-o", "json")
	if err := json.Unmarshal([]byte(out), &all); err != nil {
		t.Fatalf("mtls status -o json: %v\n%s", err, out)
	}
	for _, w := range all {
		if w.SPIFFEID == id {
			return w
		}
	}
	t.Fatalf("mtls status has no %s:\n%s", id, out)
	return workloadStatus{}
}

// TestMTLSModes runs a server, an agent, an echo server behind an inbound
// `signet proxy`, and an outbound proxy, and moves the echo workload
// through the modes: PERMISSIVE, STRICT (forced), a port override, exempt
// ports, DISABLE, a dry run, and the readiness check that refuses STRICT
// while plaintext clients remain and allows it once they have gone.
func TestMTLSModes(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--mtls-window", mtlsWindow.String())
	a := startAgent(t, s, "mesh")
	for _, id := range []string{echoID, clientID, otherID} {
		a.entryFor(t, id)
	}
	// This test process holds all three identities (same uid); it uses
	// client's and other's SVIDs as mTLS clients.
	x := fetchUntil(t, a, 30*time.Second, hasOnly(echoID, clientID, otherID))
	clientSVID, otherSVID := svidOf(t, x, clientID), svidOf(t, x, otherID)

	echo := startEcho(t)
	main, override, exempt, health := freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)
	inbound := startProxy(t, a, "inbound proxy", "--spiffe-id", echoID,
		"--inbound", main+"="+echo, "--inbound", override+"="+echo, "--inbound", exempt+"="+echo, "--inbound", health+"="+echo,
		"--health-port", port(health), "--allow-peer", clientID)
	out, wrongPeer := freeAddr(t), freeAddr(t)
	startProxy(t, a, "outbound proxy", "--spiffe-id", clientID,
		"--outbound", out+"="+main, "--peer-id", echoID,
		"--outbound", wrongPeer+"="+main, "--peer-id", otherID)
	mtls := func(addr string, svid *x509svid.SVID) dialer { return mtlsClient(addr, svid, x, echoID) }

	// PERMISSIVE, the default: plaintext and mTLS clients both.
	plainHeld := mustEcho(t, "PERMISSIVE plaintext", plaintext(main))
	defer plainHeld.Close()
	mtlsHeld := mustEcho(t, "PERMISSIVE mTLS", mtls(main, clientSVID))
	defer mtlsHeld.Close()
	mustEcho(t, "outbound proxy to the inbound proxy", plaintext(out)).Close()
	// Wrong identities are refused both ways.
	mustRefuse(t, "inbound mTLS from a peer not allowed", mtls(main, otherSVID))
	mustRefuse(t, "outbound to a remote that is not the peer ID", plaintext(wrongPeer))
	if w := mtlsStatus(t, s, echoID); w.Mode != "PERMISSIVE" {
		t.Fatalf("echo mode = %s, want PERMISSIVE", w.Mode)
	}

	// STRICT, forced: new plaintext is refused within 5 s; mTLS goes on,
	// and connections already open survive.
	s.cli(t, "mtls", "set", "--mode", "STRICT", "--spiffe-id", echoID, "--force")
	waitFor(t, 5*time.Second, "STRICT to refuse new plaintext", func() bool { return !works(plaintext(main)) })
	mustEcho(t, "STRICT mTLS", mtls(main, clientSVID)).Close()
	mustEcho(t, "STRICT through the outbound proxy", plaintext(out)).Close()
	mustRefuse(t, "STRICT inbound from a peer not allowed", mtls(main, otherSVID))
	if err := echoLine(plainHeld); err != nil {
		t.Fatalf("plaintext connection opened before STRICT was dropped: %v", err)
	}
	if err := echoLine(mtlsHeld); err != nil {
		t.Fatalf("mTLS connection opened before STRICT was dropped: %v", err)
	}
	// The health port passes plaintext in every mode.
	mustEcho(t, "health port under STRICT", plaintext(health)).Close()

	// A port override: PERMISSIVE on one port, STRICT on the others.
	s.cli(t, "mtls", "set", "--mode", "PERMISSIVE", "--spiffe-id", echoID, "--port", port(override))
	waitFor(t, 5*time.Second, "PERMISSIVE on the override port", func() bool { return works(plaintext(override)) })
	mustRefuse(t, "plaintext on the STRICT port", plaintext(main))

	// An exempt port of the policy.
	mustRefuse(t, "plaintext on the port before its exemption", plaintext(exempt))
	s.cli(t, "mtls", "set", "--mode", "STRICT", "--spiffe-id", echoID, "--exempt-port", port(exempt), "--force")
	waitFor(t, 5*time.Second, "plaintext on the exempt port", func() bool { return works(plaintext(exempt)) })
	mustRefuse(t, "plaintext on the STRICT port", plaintext(main))

	// DISABLE: plaintext only.
	s.cli(t, "mtls", "set", "--mode", "DISABLE", "--spiffe-id", echoID)
	waitFor(t, 5*time.Second, "DISABLE to pass plaintext", func() bool { return works(plaintext(main)) })
	mustRefuse(t, "mTLS under DISABLE", mtls(main, clientSVID))

	// Dry run: what STRICT would refuse passes, and is counted and logged.
	s.cli(t, "mtls", "set", "--mode", "STRICT", "--shadow", "--spiffe-id", echoID)
	waitFor(t, 5*time.Second, "dry run to be applied", func() bool {
		return works(mtls(main, clientSVID)) && strings.Contains(inbound.out.String(), "mode=STRICT dry_run=true")
	})
	mustEcho(t, "plaintext in dry run", plaintext(main)).Close()
	waitFor(t, 20*time.Second, "dry-run counts in mtls status", func() bool {
		w := mtlsStatus(t, s, echoID)
		return w.Mode == "STRICT" && w.DryRun && w.RefusedConnections > 0 && !w.Ready
	})
	if !strings.Contains(inbound.out.String(), "dry run: STRICT would refuse this connection") {
		t.Fatal("the inbound proxy did not log the connection it let through in dry run")
	}

	// Readiness: while a plaintext client keeps connecting, STRICT is
	// refused and the refusal names the workload...
	s.cli(t, "mtls", "set", "--mode", "PERMISSIVE", "--spiffe-id", echoID)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				works(plaintext(main))
			}
		}
	})
	stopClient := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopClient()
	waitFor(t, 20*time.Second, "plaintext in mtls status", func() bool {
		w := mtlsStatus(t, s, echoID)
		return w.Mode == "PERMISSIVE" && w.PlaintextConnections > 0 && !w.Ready
	})
	r := s.run(t, "mtls", "set", "--mode", "STRICT", "--spiffe-id", echoID)
	if r.code == 0 || !strings.Contains(r.stderr, echoID) || !strings.Contains(r.stderr, "--force") {
		t.Fatalf("STRICT with plaintext clients: exit %d, stderr %q; want a refusal naming %s", r.code, r.stderr, echoID)
	}
	if !works(plaintext(main)) {
		t.Fatal("the refused STRICT changed the mode")
	}
	// ...and once the client has gone for a window, the workload is
	// READY and the move to STRICT goes through without --force.
	stopClient()
	plainHeld.Close()
	waitFor(t, mtlsWindow+20*time.Second, "echo to be ready for STRICT", func() bool { return mtlsStatus(t, s, echoID).Ready })
	table := s.cli(t, "mtls", "status")
	if !strings.Contains(table, echoID) || !strings.Contains(table, "READY") {
		t.Fatalf("mtls status table:\n%s", table)
	}
	s.cli(t, "mtls", "set", "--mode", "STRICT", "--spiffe-id", echoID)
	waitFor(t, 5*time.Second, "STRICT after readiness", func() bool { return !works(plaintext(main)) })
	mustEcho(t, "mTLS after the move to STRICT", mtls(main, clientSVID)).Close()
	if err := echoLine(mtlsHeld); err != nil {
		t.Fatalf("the first mTLS connection did not survive every change: %v", err)
	}

	// The policies as the operator sees them.
	var policies []struct {
		SPIFFEID string `json:"spiffe_id"`
		Port     uint32 `json:"port"`
		Mode     string `json:"mode"`
	}
	if err := json.Unmarshal([]byte(s.cli(t, "mtls", "list", "-o", "json")), &policies); err != nil {
		t.Fatal(err)
	}
	if len(policies) != 2 || policies[0].Mode != "STRICT" || policies[1].Mode != "PERMISSIVE" || policies[1].Port == 0 {
		t.Fatalf("mtls list = %+v, want echo STRICT and its PERMISSIVE port override", policies)
	}
}

// TestMTLSCLIErrors: bad input exits 1 with an error that names the flag,
// and changes nothing.
func TestMTLSCLIErrors(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	tests := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"mtls", "set"}, "--mode is required"},
		{[]string{"mtls", "set", "--mode", "MUTUAL"}, `--mode "MUTUAL"`},
		{[]string{"mtls", "set", "--mode", "STRICT", "--spiffe-id", "spiffe://example.org/a", "--prefix", "spiffe://example.org/b/"}, "exclusive"},
		{[]string{"mtls", "set", "--mode", "STRICT", "--port", "70000"}, "--port"},
		{[]string{"mtls", "set", "--mode", "PERMISSIVE", "--shadow"}, "--shadow"},
		{[]string{"mtls", "set", "--mode", "STRICT", "--spiffe-id", "spiffe://other.org/a"}, "trust domain"},
		{[]string{"mtls", "set", "--mode", "STRICT", "--port", "8443", "--exempt-port", "9090"}, "exempt_ports"},
		{[]string{"mtls", "delete", "mp-nope"}, "not found"},
		{[]string{"mtls", "status", "-o", "yaml"}, "output format"},
	}
	for _, tt := range tests {
		r := s.run(t, tt.args...)
		if r.code != 1 || !strings.Contains(r.stderr, tt.wantErr) {
			t.Errorf("signet %s: exit %d, stderr %q; want exit 1 and %q", strings.Join(tt.args, " "), r.code, r.stderr, tt.wantErr)
		}
	}
	if got := strings.TrimSpace(s.cli(t, "mtls", "list", "-o", "json")); got != "[]" {
		t.Fatalf("policies after bad input: %s", got)
	}
	r := runCLI(t, nil, "proxy", "--spiffe-id", "spiffe://example.org/x", "--inbound", "127.0.0.1:0")
	if r.code != 1 || !strings.Contains(r.stderr, "LISTEN=TARGET") {
		t.Errorf("proxy with a bad --inbound: exit %d, stderr %q", r.code, r.stderr)
	}
	r = runCLI(t, nil, "proxy", "--spiffe-id", "spiffe://example.org/x", "--outbound", "127.0.0.1:0=127.0.0.1:1")
	if r.code != 1 || !strings.Contains(r.stderr, "--peer-id") {
		t.Errorf("proxy outbound without --peer-id: exit %d, stderr %q", r.code, r.stderr)
	}
}
