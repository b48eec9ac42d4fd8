package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/signet-mesh/signet/internal/testdir"
	sdsclient "github.com/signet-mesh/signet/sds/client"
	sdsserver "github.com/signet-mesh/signet/sds/server"
)

// startServerIn is startServer for another trust domain than example.org.
func startServerIn(t testing.TB, td string, extra ...string) *testServer {
	t.Helper()
	dir := testdir.Short(t)
	s := &testServer{dir: dir, addr: freeAddr(t), admin: filepath.Join(dir, "admin.sock"), td: td}
	s.env = []string{"SIGNET_KEY_PASSPHRASE=" + testPassphrase, "SIGNET_ADMIN_SOCKET=" + s.admin}
	s.restart(t, extra...)
	return s
}

// federation is `signet federation show -o json`.
type federation struct {
	TrustDomain     string          `json:"trust_domain"`
	Sequence        uint64          `json:"sequence"`
	X509Authorities int             `json:"x509_authorities"`
	LastRefresh     string          `json:"last_refresh"`
	LastError       string          `json:"last_error"`
	Bundle          json.RawMessage `json:"bundle"`
}

func (s *testServer) federation(t testing.TB, td string) federation {
	t.Helper()
	var f federation
	if err := json.Unmarshal([]byte(s.cli(t, "federation", "show", td, "-o", "json")), &f); err != nil {
		t.Fatal(err)
	}
	return f
}

// federate makes s trust peer's trust domain through peer's bundle
// endpoint at addr (https_spiffe, peer's server SVID), and waits for the
// first fetch.
func (s *testServer) federate(t testing.TB, peer *testServer, addr string) {
	t.Helper()
	s.cli(t, "federation", "create", "--trust-domain", peer.td, "--bundle-endpoint-url", "https://"+addr,
		"--profile", "https_spiffe", "--endpoint-spiffe-id", "spiffe://"+peer.td+"/signet/server", "--bundle-file", peer.bundleFile(t))
	waitFor(t, 30*time.Second, s.td+" to fetch "+peer.td+"'s bundle", func() bool {
		f := s.federation(t, peer.td)
		return f.LastRefresh != "-" && f.Sequence > 0 && f.LastError == ""
	})
}

// TestFederation: two deployments, example.org and other.org, each with
// its own server and agent, federated both ways over https_spiffe (issue
// 17). A go-spiffe client in example.org and a go-spiffe server in
// other.org keep completing mTLS, each authorizing the other's SPIFFE ID,
// while other.org rotates its root: the new root reaches example.org's
// workloads (Workload API and SDS) before its activation, and not one
// connection fails. A workload of example.org whose entry does not
// federate with other.org gets none of its roots and cannot complete mTLS
// with it.
func TestFederation(t *testing.T) {
	t.Parallel()
	fedA, fedB := freeAddr(t), freeAddr(t)
	a := startServerIn(t, "example.org", "--federation-listen", fedA, "--federation-refresh-hint", "1s")
	b := startServerIn(t, "other.org", "--federation-listen", fedB, "--federation-refresh-hint", "1s", "--intermediate-ttl", "1h")
	a.federate(t, b, fedB)
	b.federate(t, a, fedA)

	agentA := startAgent(t, a, "node-a")
	agentLonely := startAgent(t, a, "node-lonely")
	agentB := startAgent(t, b, "node-b")
	exampleTD := spiffeid.RequireTrustDomainFromString("example.org")
	otherTD := spiffeid.RequireTrustDomainFromString("other.org")
	clientID := spiffeid.RequireFromPath(exampleTD, "/fed/client")
	lonelyID := spiffeid.RequireFromPath(exampleTD, "/fed/lonely")
	serverID := spiffeid.RequireFromPath(otherTD, "/fed/server")
	agentA.entryFor(t, clientID.String(), "--federates-with", "other.org", "--x509-ttl", "30s")
	agentLonely.entryFor(t, lonelyID.String())
	agentB.entryFor(t, serverID.String(), "--federates-with", "example.org", "--x509-ttl", "30s")
	// An entry cannot federate with a domain no relationship names.
	if r := a.run(t, "entry", "create", "--spiffe-id", "spiffe://example.org/fed/typo", "--parent-id", agentA.nodeID,
		"--selector", "unix:uid:1", "--federates-with", "otehr.org"); r.code == 0 || !strings.Contains(r.stderr, "no federation relationship") {
		t.Fatalf("entry federating with an unknown domain: exit %d, %s", r.code, r.stderr)
	}

	hasFederated := func(td spiffeid.TrustDomain) func(*workloadapi.X509Context) bool {
		return func(x *workloadapi.X509Context) bool {
			_, err := x.Bundles.GetX509BundleForTrustDomain(td)
			return len(x.SVIDs) == 1 && err == nil
		}
	}
	fetchUntil(t, agentA, 30*time.Second, hasFederated(otherTD))
	fetchUntil(t, agentB, 30*time.Second, hasFederated(exampleTD))
	lonely := fetchUntil(t, agentLonely, 30*time.Second, hasOnly(lonelyID.String()))
	if _, err := lonely.Bundles.GetX509BundleForTrustDomain(otherTD); err == nil {
		t.Error("a workload whose entry does not federate with other.org got its bundle")
	}

	srcServer, srcClient, srcLonely := x509Source(t, agentB), x509Source(t, agentA), x509Source(t, agentLonely)
	loop := startMTLSLoop(t, srcServer, srcClient, serverID, clientID, 50*time.Millisecond)
	waitFor(t, 30*time.Second, "cross-domain mTLS traffic", func() bool { return loop.ok.Load() >= 5 })

	// The lonely workload cannot complete mTLS with other.org's server,
	// even one that would accept any example.org client.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ln, err := spiffetls.ListenWithMode(ctx, "tcp", "127.0.0.1:0", spiffetls.MTLSServerWithSource(tlsconfig.AuthorizeMemberOf(exampleTD), srcServer))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(5 * time.Second))
				conn.Write([]byte("ping"))
			}()
		}
	}()
	dial := func(src *workloadapi.X509Source) error {
		conn, err := spiffetls.DialWithMode(ctx, "tcp", ln.Addr().String(), spiffetls.MTLSClientWithSource(tlsconfig.AuthorizeID(serverID), src),
			spiffetls.WithDialer(&net.Dialer{Timeout: 5 * time.Second}))
		if err != nil {
			return err
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 4)
		_, err = conn.Read(buf)
		return err
	}
	if err := dial(srcClient); err != nil {
		t.Fatalf("the federated client cannot reach the permissive listener: %v", err)
	}
	if err := dial(srcLonely); err == nil {
		t.Error("a workload that does not federate with other.org completed mTLS with it")
	}

	// A proxy of node-a follows other.org's roots over SDS, as Envoy does.
	sds := sdsclient.New(sdsclient.Config{SocketPath: agentA.socket, ResourceNames: []string{"spiffe://other.org", sdsserver.AllBundlesName}})
	sdsCtx, stopSDS := context.WithCancel(context.Background())
	defer stopSDS()
	go sds.Run(sdsCtx)
	// rootsHeld waits until example.org's client and its proxy hold n
	// roots of other.org.
	rootsHeld := func(n int) {
		t.Helper()
		waitFor(t, 30*time.Second, "example.org's workload and proxy to hold other.org's new bundle", func() bool {
			fed, ok := sds.Secret("spiffe://other.org")
			if !ok || len(fed.Authorities) != n {
				return false
			}
			all, ok := sds.Secret(sdsserver.AllBundlesName)
			if !ok || all.Bundles == nil {
				return false
			}
			if ob, ok := all.Bundles.Get(otherTD); !ok || len(ob.X509Authorities()) != n {
				return false
			}
			b, err := srcClient.GetX509BundleForTrustDomain(otherTD)
			return err == nil && len(b.X509Authorities()) == n
		})
	}
	rootsHeld(1)

	// other.org rotates its root. The prepared root reaches example.org's
	// workloads (through the bundle endpoint, the server and its agent)
	// before it is activated.
	seqBefore := a.federation(t, "other.org").Sequence
	oldRoots := b.bundleRoots(t)
	prepared := time.Now()
	newID := strings.TrimSpace(b.cli(t, "root", "prepare"))
	rootsHeld(2)
	t.Logf("other.org's prepared root reached example.org's workload and proxy in %v", time.Since(prepared).Round(time.Millisecond))
	if f := a.federation(t, "other.org"); f.Sequence <= seqBefore || f.X509Authorities != 2 {
		t.Errorf("example.org's copy of other.org's bundle: sequence %d (was %d), %d roots; want a higher sequence and 2 roots", f.Sequence, seqBefore, f.X509Authorities)
	}
	b.waitApplied(t, newID, 1, 1)
	if got := strings.TrimSpace(b.cli(t, "root", "activate", newID, "--rotate-now")); got != newID {
		t.Fatalf("activated %q, want %s", got, newID)
	}
	newRoots := slices.DeleteFunc(b.bundleRoots(t), func(c *x509.Certificate) bool { return c.Equal(oldRoots[0]) })
	waitFor(t, 60*time.Second, "other.org's server workload to hold an SVID of the new root", func() bool {
		svid, err := srcServer.GetX509SVID()
		return err == nil && verifies(svid, newRoots)
	})
	before := loop.ok.Load()
	waitFor(t, 30*time.Second, "mTLS traffic across the new root", func() bool { return loop.ok.Load() >= before+20 })
	loop.stop()
	loop.check(t)

	// Every change is in the audit log: the relationship and each bundle
	// update.
	export := a.cli(t, "audit", "export", "--type", "federation.created", "--type", "federation.bundle_updated")
	if !strings.Contains(export, `"federation.created"`) || strings.Count(export, `"federation.bundle_updated"`) < 2 {
		t.Errorf("example.org's audit lacks the federation records:\n%s", export)
	}
	t.Logf("%d cross-domain mTLS connections across other.org's root rotation, no failure", loop.ok.Load())
}

// TestFederationWebProfile: other.org serves its bundle endpoint with the
// https_web profile and a certificate from files; example.org, trusting
// that certificate as a Web PKI root (SSL_CERT_FILE), federates with it
// and its workloads get other.org's roots. A server refuses https_web
// without the files, in one line.
func TestFederationWebProfile(t *testing.T) {
	t.Parallel()
	dir := testdir.Short(t)
	r := runCLI(t, []string{"SIGNET_KEY_PASSPHRASE=" + testPassphrase}, "server", "--data-dir", filepath.Join(dir, "data"),
		"--federation-listen", "127.0.0.1:0", "--federation-profile", "https_web", "--check-config")
	if r.code == 0 || !strings.Contains(r.stderr, "needs federation_cert_file and federation_key_file") {
		t.Fatalf("https_web without files: exit %d, %s", r.code, r.stderr)
	}

	certFile, keyFile := webCertificate(t, dir)
	fedB := freeAddr(t)
	b := startServerIn(t, "other.org", "--federation-listen", fedB, "--federation-profile", "https_web",
		"--federation-cert-file", certFile, "--federation-key-file", keyFile)
	adir := testdir.Short(t)
	a := &testServer{dir: adir, addr: freeAddr(t), admin: filepath.Join(adir, "admin.sock"), td: "example.org"}
	a.env = []string{"SIGNET_KEY_PASSPHRASE=" + testPassphrase, "SIGNET_ADMIN_SOCKET=" + a.admin, "SSL_CERT_FILE=" + certFile}
	a.restart(t)

	a.cli(t, "federation", "create", "--trust-domain", "other.org", "--bundle-endpoint-url", "https://"+fedB+"/bundle", "--profile", "https_web")
	waitFor(t, 30*time.Second, "example.org to fetch other.org's bundle over https_web", func() bool {
		f := a.federation(t, "other.org")
		return f.LastRefresh != "-" && f.X509Authorities == 1
	})
	if out := a.cli(t, "federation", "refresh", "other.org"); !strings.Contains(out, "unchanged") {
		t.Errorf("refresh of an unchanged bundle: %q", out)
	}
	agent := startAgent(t, a, "node-a")
	id := "spiffe://example.org/web/client"
	agent.entryFor(t, id, "--federates-with", "other.org")
	other := spiffeid.RequireTrustDomainFromString("other.org")
	x := fetchUntil(t, agent, 30*time.Second, func(x *workloadapi.X509Context) bool {
		_, err := x.Bundles.GetX509BundleForTrustDomain(other)
		return len(x.SVIDs) == 1 && err == nil
	})
	ob, _ := x.Bundles.GetX509BundleForTrustDomain(other)
	if roots := b.bundleRoots(t); len(ob.X509Authorities()) != 1 || !ob.X509Authorities()[0].Equal(roots[0]) {
		t.Errorf("the workload's other.org bundle does not hold other.org's root")
	}

	// The endpoint stops: the last good bundle stays, the failure shows.
	b.stop()
	if r := a.run(t, "federation", "refresh", "other.org"); r.code == 0 || !strings.Contains(r.stderr, "last good bundle is kept") {
		t.Errorf("refresh with the endpoint down: exit %d, %s", r.code, r.stderr)
	}
	if f := a.federation(t, "other.org"); f.X509Authorities != 1 || f.LastError == "" {
		t.Errorf("after a failed refresh: %d roots, error %q; want the last good bundle and the error", f.X509Authorities, f.LastError)
	}
}

// webCertificate writes a self-signed certificate for 127.0.0.1 (a CA, so
// it can be its own Web PKI root) and its key under dir.
func webCertificate(t testing.TB, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bundle.other.test"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "web.crt"), filepath.Join(dir, "web.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
