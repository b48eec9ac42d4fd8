package rotation_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-mesh/signet/ca"
	"github.com/signet-mesh/signet/ca/bundle"
	"github.com/signet-mesh/signet/ca/catest"
	"github.com/signet-mesh/signet/ca/keys"
	"github.com/signet-mesh/signet/ca/rotation"
	"github.com/signet-mesh/signet/ca/store"
)

const (
	nodeA = "spiffe://example.org/signet/agent/join_token/a"
	nodeB = "spiffe://example.org/signet/agent/join_token/b"
)

// register stores a node and one entry under it, as attestation and
// `entry create` would.
func register(t *testing.T, in *instance, node, entryID string, id spiffeid.ID, now time.Time) {
	t.Helper()
	err := in.store.Update(context.Background(), func(tx store.Tx) error {
		if err := tx.PutNode(&store.Node{SPIFFEID: node, Attestor: "join_token", AttestedAt: now}); err != nil {
			return err
		}
		return tx.CreateEntry(&store.Entry{ID: entryID, SPIFFEID: id.String(), ParentID: node, Selectors: []string{"unix:uid:" + entryID}, X509TTL: 10 * time.Minute})
	})
	if err != nil {
		t.Fatal(err)
	}
}

// issue signs an SVID for id and records it as the node API does.
func issue(t *testing.T, in *instance, id spiffeid.ID, ttl time.Duration, node, entryID string) *ca.X509SVID {
	t.Helper()
	svid, err := in.ca.SignX509SVID(context.Background(), ca.X509SVIDParams{SPIFFEID: id, PublicKey: catest.NewKey(t).Public(), TTL: ttl})
	if err != nil {
		t.Fatalf("SignX509SVID: %v", err)
	}
	leaf := svid.Chain[0]
	err = in.store.Update(context.Background(), func(tx store.Tx) error {
		return tx.PutSVID(&store.SVIDRecord{
			Serial: ca.FormatSerial(leaf.SerialNumber), SPIFFEID: id.String(), NodeID: node, EntryID: entryID,
			AuthorityID: svid.AuthorityID, NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter,
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return svid
}

func wantErr(t *testing.T, err, kind error, substr string) {
	t.Helper()
	if !errors.Is(err, kind) || !strings.Contains(fmt.Sprint(err), substr) {
		t.Fatalf("error = %v, want %v containing %q", err, kind, substr)
	}
}

func TestRootRotationSteps(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	in := e.startMemKeys(t, newMemKeys(), rotation.Config{})
	now := e.clock.Now()
	register(t, in, nodeA, "ea", workloadID, now)
	oldRoot := find(authorities(t, in.store), store.KindRoot, store.StateActive)
	oldSVID := issue(t, in, workloadID, 10*time.Minute, nodeA, "ea")
	nodeSVID := issue(t, in, spiffeid.RequireFromString(nodeA), time.Hour, nodeA, "")

	// Nothing to act on yet.
	_, err := in.m.ActivateRoot(ctx, rotation.ActivateParams{})
	wantErr(t, err, rotation.ErrRefused, "no prepared root to activate")
	_, err = in.m.RetireRoot(ctx, rotation.RetireParams{})
	wantErr(t, err, rotation.ErrRefused, "no retiring root to retire")
	_, err = in.m.RetireRoot(ctx, rotation.RetireParams{ID: oldRoot.ID})
	wantErr(t, err, rotation.ErrRefused, "it is active, not retiring")
	_, err = in.m.ActivateRoot(ctx, rotation.ActivateParams{ID: "nope"})
	wantErr(t, err, rotation.ErrAuthorityNotFound, `no root with id "nope"`)

	// prepare: the new root enters the bundle under a new revision.
	revBefore := readBundle(t, in).Revision
	res, err := in.m.PrepareRoot(ctx, rotation.PrepareParams{Actor: "test"})
	if err != nil {
		t.Fatalf("PrepareRoot: %v", err)
	}
	newRoot := res.Authority
	b := readBundle(t, in)
	if newRoot.State != store.StatePrepared || len(b.X509Authorities) != 2 || b.Revision <= revBefore || newRoot.BundleRevision != b.Revision {
		t.Fatalf("after prepare: state %s, %d roots in bundle, revision %d (was %d), root's revision %d",
			newRoot.State, len(b.X509Authorities), b.Revision, revBefore, newRoot.BundleRevision)
	}
	if in.ca.X509Authority().ID == "" || mint(t, in.ca).Chain[1].Issuer.String() != mustParse(t, oldRoot.CertDER).Subject.String() {
		t.Fatal("a prepared root must not sign")
	}
	_, err = in.m.PrepareRoot(ctx, rotation.PrepareParams{})
	wantErr(t, err, rotation.ErrRefused, "already prepared")

	// activate: refused while a connected agent has not applied the bundle.
	agents := map[string]int64{nodeA: b.Revision, nodeB: b.Revision - 1}
	_, err = in.m.ActivateRoot(ctx, rotation.ActivateParams{Agents: agents})
	wantErr(t, err, rotation.ErrUnsafe, fmt.Sprintf("1 of 2 connected agents have not applied bundle revision %d (%s); wait or use --force", b.Revision, nodeB))
	if got := find(authorities(t, in.store), store.KindRoot, store.StatePrepared); got == nil || got.ID != newRoot.ID {
		t.Fatal("a refused activation changed the state")
	}
	agents[nodeB] = b.Revision
	e.clock.Advance(time.Second)
	act, err := in.m.ActivateRoot(ctx, rotation.ActivateParams{Agents: agents, RotateNow: true})
	if err != nil {
		t.Fatalf("ActivateRoot: %v", err)
	}
	if act.ID != newRoot.ID {
		t.Fatalf("activated %s, want %s", act.ID, newRoot.ID)
	}
	auths := authorities(t, in.store)
	if diff := cmp.Diff([]string{"intermediate:active", "intermediate:retired", "jwt:active", "root:active", "root:retiring"}, states(auths)); diff != "" {
		t.Fatalf("authorities after activate (-want +got):\n%s", diff)
	}
	inter := find(auths, store.KindIntermediate, store.StateActive)
	if inter.ParentID != newRoot.ID || in.ca.X509Authority().ID != inter.ID {
		t.Fatalf("active intermediate %s under %s (CA uses %s), want one under the new root %s", inter.ID, inter.ParentID, in.ca.X509Authority().ID, newRoot.ID)
	}
	onlyNew := &bundle.Bundle{X509Authorities: []*x509.Certificate{mustParse(t, newRoot.CertDER)}}
	if err := verifyAt(mint(t, in.ca).Chain, onlyNew, e.clock.Now()); err != nil {
		t.Errorf("new SVIDs do not chain to the new root: %v", err)
	}
	srv, err := in.srv.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	if err := verifyAt([]*x509.Certificate{srv.Leaf, mustParse(t, srv.Certificate[1])}, onlyNew, e.clock.Now()); err != nil {
		t.Errorf("server certificate does not chain to the new root: %v", err)
	}
	var gen int64
	if err := in.store.View(ctx, func(tx store.Tx) error { gen, err = bundle.RotateGeneration(tx); return err }); err != nil || gen != 1 {
		t.Errorf("rotate generation = %d, %v; want 1", gen, err)
	}

	// retire: refused while the current SVIDs chain to the old root.
	_, err = in.m.RetireRoot(ctx, rotation.RetireParams{})
	wantErr(t, err, rotation.ErrUnsafe, "2 current SVIDs still chain to root "+oldRoot.ID)
	wantErr(t, err, rotation.ErrUnsafe, workloadID.String()+" on "+nodeA)
	wantErr(t, err, rotation.ErrUnsafe, "node SVID of "+nodeA)
	// Re-minting the workload's SVID is not enough: the node's counts too.
	issue(t, in, workloadID, 10*time.Minute, nodeA, "ea")
	_, err = in.m.RetireRoot(ctx, rotation.RetireParams{})
	wantErr(t, err, rotation.ErrUnsafe, "1 current SVIDs still chain")
	issue(t, in, spiffeid.RequireFromString(nodeA), time.Hour, nodeA, "")
	revBefore = readBundle(t, in).Revision
	ret, err := in.m.RetireRoot(ctx, rotation.RetireParams{})
	if err != nil {
		t.Fatalf("RetireRoot: %v", err)
	}
	b = readBundle(t, in)
	if ret.ID != oldRoot.ID || len(b.X509Authorities) != 1 || !b.X509Authorities[0].Equal(mustParse(t, newRoot.CertDER)) || b.Revision <= revBefore {
		t.Fatalf("after retire: retired %s, bundle %d roots at revision %d (was %d)", ret.ID, len(b.X509Authorities), b.Revision, revBefore)
	}
	// The old SVIDs, still unexpired, no longer verify.
	for _, s := range []*ca.X509SVID{oldSVID, nodeSVID} {
		if err := verifyAt(s.Chain, b, e.clock.Now()); err == nil {
			t.Errorf("an SVID under the retired root still verifies")
		}
	}

	// Counts: the retired root has the two old SVIDs (and the test
	// mints), the new one the re-minted ones.
	st, rev, err := in.m.Authorities(ctx)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int64{}
	for _, a := range st {
		counts[a.ID] = a.UnexpiredSVIDs
	}
	if rev != b.Revision || counts[newRoot.ID] != 2 || counts[oldRoot.ID] != 2 || counts[inter.ID] != 2 {
		t.Errorf("Authorities: revision %d (want %d), SVIDs new root %d, old root %d, intermediate %d; want 2 each", rev, b.Revision, counts[newRoot.ID], counts[oldRoot.ID], counts[inter.ID])
	}
}

func TestRootRotationForce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	in := e.startMemKeys(t, newMemKeys(), rotation.Config{})
	register(t, in, nodeA, "ea", workloadID, e.clock.Now())
	issue(t, in, workloadID, 10*time.Minute, nodeA, "ea")
	if _, err := in.m.PrepareRoot(ctx, rotation.PrepareParams{}); err != nil {
		t.Fatal(err)
	}
	stale := map[string]int64{nodeA: 0}
	if _, err := in.m.ActivateRoot(ctx, rotation.ActivateParams{Agents: stale}); !errors.Is(err, rotation.ErrUnsafe) {
		t.Fatalf("activate with a stale agent: %v, want ErrUnsafe", err)
	}
	if _, err := in.m.ActivateRoot(ctx, rotation.ActivateParams{Agents: stale, Force: true}); err != nil {
		t.Fatalf("activate --force: %v", err)
	}
	if _, err := in.m.RetireRoot(ctx, rotation.RetireParams{}); !errors.Is(err, rotation.ErrUnsafe) {
		t.Fatalf("retire with a live SVID: %v, want ErrUnsafe", err)
	}
	if _, err := in.m.RetireRoot(ctx, rotation.RetireParams{Force: true}); err != nil {
		t.Fatalf("retire --force: %v", err)
	}
	if got := len(readBundle(t, in).X509Authorities); got != 1 {
		t.Errorf("bundle has %d roots, want 1", got)
	}
}

// TestRetireIgnoresGoneWorkloads: SVIDs of deleted entries and evicted
// nodes, and expired ones, do not hold a root back.
func TestRetireIgnoresGoneWorkloads(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	in := e.startMemKeys(t, newMemKeys(), rotation.Config{})
	register(t, in, nodeA, "ea", workloadID, e.clock.Now())
	register(t, in, nodeB, "eb", spiffeid.RequireFromPath(td, "/b"), e.clock.Now())
	issue(t, in, workloadID, 10*time.Minute, nodeA, "ea")
	issue(t, in, spiffeid.RequireFromString(nodeB), time.Hour, nodeB, "")
	issue(t, in, spiffeid.RequireFromPath(td, "/b"), time.Minute, nodeB, "eb")
	if _, err := in.m.PrepareRoot(ctx, rotation.PrepareParams{}); err != nil {
		t.Fatal(err)
	}
	if _, err := in.m.ActivateRoot(ctx, rotation.ActivateParams{}); err != nil {
		t.Fatal(err)
	}
	err := in.store.Update(ctx, func(tx store.Tx) error {
		if err := tx.DeleteEntry("ea"); err != nil {
			return err
		}
		return tx.DeleteNode(nodeB)
	})
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(2 * time.Minute) // the /b SVID expires
	if _, err := in.m.RetireRoot(ctx, rotation.RetireParams{}); err != nil {
		t.Fatalf("RetireRoot: %v", err)
	}
}

func TestAbandonPreparedRoot(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	in := e.startMemKeys(t, newMemKeys(), rotation.Config{})
	res, err := in.m.PrepareRoot(ctx, rotation.PrepareParams{})
	if err != nil {
		t.Fatal(err)
	}
	// Without an ID, retire means the retiring root: there is none.
	if _, err := in.m.RetireRoot(ctx, rotation.RetireParams{}); !errors.Is(err, rotation.ErrRefused) {
		t.Fatalf("retire without ID: %v, want ErrRefused", err)
	}
	if _, err := in.m.RetireRoot(ctx, rotation.RetireParams{ID: res.Authority.ID}); err != nil {
		t.Fatalf("retiring the prepared root by ID: %v", err)
	}
	if got := len(readBundle(t, in).X509Authorities); got != 1 {
		t.Errorf("bundle has %d roots, want 1", got)
	}
	if _, err := in.m.PrepareRoot(ctx, rotation.PrepareParams{}); err != nil {
		t.Errorf("prepare after abandoning: %v", err)
	}
}

func TestPrepareImportedRoot(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	in := e.startMemKeys(t, newMemKeys(), rotation.Config{})
	org := newOrgCert(t, "Acme Root 2", nil, e.clock.Now(), nil)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: org.cert.Raw})
	keyPEM := pemKey(t, org.key)

	for _, tc := range []struct {
		name string
		p    rotation.PrepareParams
		kind error
		want string
	}{
		{"key without certificate", rotation.PrepareParams{KeyPEM: keyPEM}, rotation.ErrRefused, "without the certificate"},
		{"self-signed without key", rotation.PrepareParams{CertPEM: certPEM}, rotation.ErrRefused, "imported with its key"},
		{"wrong key", rotation.PrepareParams{CertPEM: certPEM, KeyPEM: pemKey(t, catest.NewKey(t))}, rotation.ErrInvalidImport, "does not match"},
		{"garbage", rotation.PrepareParams{CertPEM: []byte("nope"), KeyPEM: keyPEM}, rotation.ErrInvalidImport, "certificate"},
		{"csr with key", rotation.PrepareParams{CSROnly: true, KeyPEM: keyPEM}, rotation.ErrRefused, "cannot be combined"},
	} {
		_, err := in.m.PrepareRoot(ctx, tc.p)
		if !errors.Is(err, tc.kind) || !strings.Contains(fmt.Sprint(err), tc.want) {
			t.Errorf("%s: %v, want %v containing %q", tc.name, err, tc.kind, tc.want)
		}
	}

	res, err := in.m.PrepareRoot(ctx, rotation.PrepareParams{CertPEM: certPEM, KeyPEM: keyPEM})
	if err != nil {
		t.Fatalf("PrepareRoot: %v", err)
	}
	if !org.cert.Equal(mustParse(t, res.Authority.CertDER)) || res.Authority.State != store.StatePrepared {
		t.Fatal("prepared root is not the imported certificate")
	}
	if _, err := in.m.ActivateRoot(ctx, rotation.ActivateParams{}); err != nil {
		t.Fatal(err)
	}
	if err := verifyAt(mint(t, in.ca).Chain, &bundle.Bundle{X509Authorities: []*x509.Certificate{org.cert}}, e.clock.Now()); err != nil {
		t.Errorf("SVIDs do not chain to the imported root: %v", err)
	}
}

// TestPrepareFromCSR: signet makes a key and CSR, the organisation's CA
// signs it, and the certificate is imported without a key file.
func TestPrepareFromCSR(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	km := newMemKeys()
	in := e.startMemKeys(t, km, rotation.Config{})
	orgRoot := newOrgCert(t, "Acme Root", nil, e.clock.Now(), nil)

	res, err := in.m.PrepareRoot(ctx, rotation.PrepareParams{CSROnly: true})
	if err != nil {
		t.Fatalf("PrepareRoot(CSROnly): %v", err)
	}
	if res.Authority != nil || res.CSRKeyID == "" {
		t.Fatalf("CSROnly result %+v: want a CSR and its key ID, no authority", res)
	}
	if got := len(readBundle(t, in).X509Authorities); got != 1 {
		t.Fatalf("a CSR changed the bundle: %d roots", got)
	}
	block, _ := pem.Decode(res.CSRPEM)
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil || csr.CheckSignature() != nil {
		t.Fatalf("CSR: %v", err)
	}
	if len(csr.URIs) != 1 || csr.URIs[0].String() != "spiffe://example.org" {
		t.Errorf("CSR URIs %v, want the trust domain", csr.URIs)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42), Subject: csr.Subject, URIs: csr.URIs,
		NotBefore: e.clock.Now().Add(-time.Minute), NotAfter: e.clock.Now().Add(365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true, MaxPathLen: 1,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, orgRoot.cert, csr.PublicKey, orgRoot.key)
	if err != nil {
		t.Fatal(err)
	}
	signed := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	chain := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: orgRoot.cert.Raw})

	_, err = in.m.PrepareRoot(ctx, rotation.PrepareParams{CertPEM: signed, ChainPEM: chain, CSRKeyID: "unknown"})
	wantErr(t, err, rotation.ErrRefused, `no CSR is waiting under key ID "unknown"`)
	imp, err := in.m.PrepareRoot(ctx, rotation.PrepareParams{CertPEM: signed, ChainPEM: chain})
	if err != nil {
		t.Fatalf("importing the signed CSR: %v", err)
	}
	if imp.Authority.ID != res.CSRKeyID || len(imp.Authority.UpstreamChainDER) != 1 {
		t.Errorf("imported authority %s with %d chain certificates, want %s with the org root", imp.Authority.ID, len(imp.Authority.UpstreamChainDER), res.CSRKeyID)
	}
	b := readBundle(t, in)
	if len(b.X509Authorities) != 2 || !(b.X509Authorities[0].Equal(orgRoot.cert) || b.X509Authorities[1].Equal(orgRoot.cert)) {
		t.Fatalf("bundle does not hold the organisation root")
	}
	if _, err := in.m.ActivateRoot(ctx, rotation.ActivateParams{}); err != nil {
		t.Fatal(err)
	}
	svid := mint(t, in.ca)
	// Leaf, intermediate, signet CA, and the intermediate cross-signed by
	// the retiring signet root.
	if len(svid.Chain) != 4 {
		t.Errorf("chain has %d certificates, want leaf, intermediate, signet CA, cross-signed intermediate", len(svid.Chain))
	}
	if err := verifyAt(svid.Chain, &bundle.Bundle{X509Authorities: []*x509.Certificate{orgRoot.cert}}, e.clock.Now()); err != nil {
		t.Errorf("SVIDs do not chain to the organisation root: %v", err)
	}
	// The CSR's key is used once.
	if err := in.store.Close(); err != nil {
		t.Fatal(err)
	}
	again := e.startMemKeys(t, km, rotation.Config{})
	if _, err := again.m.PrepareRoot(ctx, rotation.PrepareParams{CertPEM: signed, ChainPEM: chain}); err == nil {
		t.Error("the same CSR certificate was imported twice")
	}
}

func pemKey(t *testing.T, key any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func TestExpiringSoon(t *testing.T) {
	t.Parallel()
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	for _, tc := range []struct {
		name string
		life time.Duration
		at   time.Duration
		want bool
	}{
		{"root, new", 365 * day, 0, false},
		{"root, just over a third left", 365 * day, 243 * day, false},
		{"root, less than a third left", 365 * day, 244 * day, true},
		{"intermediate at half life", 7 * day, 84 * time.Hour, false},
		{"intermediate, less than a third left", 7 * day, 113 * time.Hour, true},
		{"intermediate, not flagged for 30 days", 7 * day, time.Hour, false},
		{"long life, a third left", 3650 * day, 2434 * day, true},
		{"60 days, 31 days left", 60 * day, 29 * day, false},
		{"60 days, 29 days left", 60 * day, 31 * day, true},
		{"30 days, 20 days left", 30 * day, 10 * day, false},
		{"expired", 7 * day, 8 * day, true},
	} {
		if got := rotation.ExpiringSoon(start.Add(tc.at), start, start.Add(tc.life)); got != tc.want {
			t.Errorf("%s: ExpiringSoon = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestSecondsToExpiry(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	in := e.startMemKeys(t, newMemKeys(), rotation.Config{IntermediateTTL: 6 * time.Hour})
	e.clock.Advance(5 * time.Hour) // the intermediate is past two thirds, not yet rotated
	exps, err := in.m.SecondsToExpiry(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got := map[store.AuthorityKind]rotation.AuthorityExpiry{}
	for _, x := range exps {
		got[x.Kind] = x
	}
	if len(exps) != 3 {
		t.Fatalf("%d authorities, want root, intermediate, JWT key: %+v", len(exps), exps)
	}
	if x := got[store.KindIntermediate]; x.Seconds != time.Hour.Seconds() || !x.ExpiringSoon {
		t.Errorf("intermediate: %+v, want 3600 s and expiring soon", x)
	}
	if x := got[store.KindRoot]; x.ExpiringSoon || x.Seconds < (364*24*time.Hour).Seconds() {
		t.Errorf("root: %+v", x)
	}
}

// TestManyRotationsSVIDsNeverLapse runs six hours of fake time in
// one-minute steps: a dozen intermediate rotations and two root rotations
// in a row (the first with rotate-now, the second at half-life), with two
// simulated agents that apply each bundle one step late and renew their
// SVIDs at half-life. At every step each workload's SVID verifies against
// the other agent's bundle, each node SVID against the server's bundle,
// and the server's certificate against every agent's bundle.
func TestManyRotationsSVIDsNeverLapse(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	in := e.startMemKeys(t, newMemKeys(), rotation.Config{IntermediateTTL: time.Hour})

	type agent struct {
		node, entry string
		id          spiffeid.ID
		svid, nodeS *ca.X509SVID
		svidAt      time.Time // when the SVID was received
		nodeAt      time.Time
		bundle      *bundle.Bundle // applied
		next        *bundle.Bundle // received, applied next step
	}
	const svidTTL = 10 * time.Minute
	var agents []*agent
	for i, n := range []string{nodeA, nodeB} {
		a := &agent{node: n, entry: fmt.Sprintf("e%d", i), id: spiffeid.RequireFromPath(td, fmt.Sprintf("/w%d", i))}
		register(t, in, a.node, a.entry, a.id, e.clock.Now())
		a.svid, a.svidAt = issue(t, in, a.id, svidTTL, a.node, a.entry), e.clock.Now()
		a.nodeS, a.nodeAt = issue(t, in, spiffeid.RequireFromString(a.node), time.Hour, a.node, ""), e.clock.Now()
		a.bundle = readBundle(t, in)
		a.next = a.bundle
		agents = append(agents, a)
	}
	applied := func() map[string]int64 {
		out := map[string]int64{}
		for _, a := range agents {
			out[a.node] = a.bundle.Revision
		}
		return out
	}

	type phase int
	const (
		idle phase = iota
		prepared
		activated
	)
	var (
		state          = idle
		rotations      int // root rotations completed
		rotateNow      bool
		refusedAct     bool
		refusedRetire  bool
		intermediates  = map[string]bool{}
		nextRotationAt = 60
	)
	for step := 1; step <= 360; step++ {
		e.clock.Advance(time.Minute)
		now := e.clock.Now()
		if err := in.m.Init(ctx); err != nil { // what Run's tick does
			t.Fatalf("step %d: %v", step, err)
		}
		intermediates[in.ca.X509Authority().ID] = true

		// The operator.
		switch {
		case state == idle && rotations < 2 && step >= nextRotationAt:
			if _, err := in.m.PrepareRoot(ctx, rotation.PrepareParams{}); err != nil {
				t.Fatalf("step %d: prepare: %v", step, err)
			}
			state = prepared
		case state == prepared:
			_, err := in.m.ActivateRoot(ctx, rotation.ActivateParams{Agents: applied(), RotateNow: rotations == 0})
			if errors.Is(err, rotation.ErrUnsafe) {
				refusedAct = true
				break
			}
			if err != nil {
				t.Fatalf("step %d: activate: %v", step, err)
			}
			state, rotateNow = activated, rotations == 0
		case state == activated:
			_, err := in.m.RetireRoot(ctx, rotation.RetireParams{})
			if errors.Is(err, rotation.ErrUnsafe) {
				refusedRetire = true
				break
			}
			if err != nil {
				t.Fatalf("step %d: retire: %v", step, err)
			}
			state, rotations, nextRotationAt = idle, rotations+1, step+30
		}

		// The agents.
		server := readBundle(t, in)
		for _, a := range agents {
			a.bundle, a.next = a.next, server
			if rotateNow || !now.Before(a.svidAt.Add(svidTTL/2)) {
				a.svid, a.svidAt = issue(t, in, a.id, svidTTL, a.node, a.entry), now
			}
			if rotateNow || !now.Before(a.nodeAt.Add(30*time.Minute)) {
				a.nodeS, a.nodeAt = issue(t, in, spiffeid.RequireFromString(a.node), time.Hour, a.node, ""), now
			}
		}
		rotateNow = false

		// Nothing lapses, nothing breaks.
		srv, err := in.srv.Certificate()
		if err != nil {
			t.Fatal(err)
		}
		srvChain := []*x509.Certificate{srv.Leaf, mustParse(t, srv.Certificate[1])}
		for i, a := range agents {
			peer := agents[1-i]
			if err := verifyAt(a.svid.Chain, peer.bundle, now); err != nil {
				t.Fatalf("step %d: %s's SVID fails at %s: %v", step, a.id, peer.node, err)
			}
			if err := verifyAt(a.nodeS.Chain, server, now); err != nil {
				t.Fatalf("step %d: node SVID of %s fails at the server: %v", step, a.node, err)
			}
			if err := verifyAt(srvChain, a.bundle, now); err != nil {
				t.Fatalf("step %d: server certificate fails at %s: %v", step, a.node, err)
			}
		}
	}

	if rotations != 2 || !refusedAct || !refusedRetire {
		t.Errorf("%d root rotations (want 2); an activation refused: %v; a retirement refused: %v", rotations, refusedAct, refusedRetire)
	}
	if len(intermediates) < 10 {
		t.Errorf("%d intermediates signed over six hours, want at least 10", len(intermediates))
	}
	b := readBundle(t, in)
	roots := 0
	for _, a := range authorities(t, in.store) {
		if a.Kind == store.KindRoot && a.State != store.StateRetired {
			roots++
		}
	}
	if len(b.X509Authorities) != 1 || roots != 1 {
		t.Errorf("bundle holds %d roots (%d not retired), want 1", len(b.X509Authorities), roots)
	}
	for _, a := range agents {
		if err := verifyAt(a.svid.Chain, b, e.clock.Now()); err != nil {
			t.Errorf("%s does not chain to the last root: %v", a.id, err)
		}
	}
}

// memKeys is an in-memory keys.Manager: these tests create many keys,
// which encrypted soft keys would make slow for nothing (import_test.go
// covers soft keys).
type memKeys struct {
	mu   sync.Mutex
	keys map[string]crypto.Signer
}

func (k *memKeys) Create(_ context.Context, name string, kt keys.KeyType) (crypto.Signer, string, error) {
	s, err := keys.GenerateSigner(kt)
	if err != nil {
		return nil, "", err
	}
	return s, name, k.put(name, s)
}

func (k *memKeys) Import(_ context.Context, name string, s crypto.Signer) (string, error) {
	return name, k.put(name, s)
}

func (k *memKeys) put(name string, s crypto.Signer) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.keys[name]; ok {
		return keys.ErrKeyExists
	}
	k.keys[name] = s
	return nil
}

func (k *memKeys) Load(_ context.Context, ref string) (crypto.Signer, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	s, ok := k.keys[ref]
	if !ok {
		return nil, keys.ErrKeyNotFound
	}
	return s, nil
}

func (k *memKeys) Delete(_ context.Context, ref string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.keys[ref]; !ok {
		return keys.ErrKeyNotFound
	}
	delete(k.keys, ref)
	return nil
}

func (k *memKeys) Close() error { return nil }

func newMemKeys() *memKeys { return &memKeys{keys: map[string]crypto.Signer{}} }

// startMemKeys is env.start with in-memory keys, which km keeps across
// restarts.
func (e *env) startMemKeys(t testing.TB, km *memKeys, cfg rotation.Config) *instance {
	t.Helper()
	return e.startMemKeysWrapped(t, km, cfg, func(s store.Store) store.Store { return s })
}

// startMemKeysWrapped is startMemKeys on a store wrapped by wrap.
func (e *env) startMemKeysWrapped(t testing.TB, km *memKeys, cfg rotation.Config, wrap func(store.Store) store.Store) *instance {
	t.Helper()
	bolt, err := store.Open(filepath.Join(e.dir, "signet.db"), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bolt.Close() })
	st := wrap(bolt)
	c := ca.New(ca.Config{TrustDomain: td, Clock: e.clock})
	cfg.Store, cfg.Keys, cfg.CA, cfg.TrustDomain, cfg.Clock = st, km, c, td, e.clock
	m, err := rotation.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	return &instance{m: m, ca: c, store: st, srv: newServerCert(t, c)}
}

// TestCrossSignedIntermediate: while the old root is retiring, every SVID
// carries its intermediate cross-signed by the old root too, so that a
// peer still trusting only the old root accepts SVIDs from the new one;
// intermediate rotations keep it, a restart reuses it, and once the old
// root is retired it is no longer sent.
func TestCrossSignedIntermediate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	km := newMemKeys()
	in := e.startMemKeys(t, km, rotation.Config{IntermediateTTL: time.Hour})
	oldRoot := mustParse(t, find(authorities(t, in.store), store.KindRoot, store.StateActive).CertDER)
	if n := len(mint(t, in.ca).Chain); n != 2 {
		t.Fatalf("chain before any rotation has %d certificates, want leaf and intermediate", n)
	}
	onlyOld := &bundle.Bundle{X509Authorities: []*x509.Certificate{oldRoot}}

	if _, err := in.m.PrepareRoot(ctx, rotation.PrepareParams{}); err != nil {
		t.Fatal(err)
	}
	if _, err := in.m.ActivateRoot(ctx, rotation.ActivateParams{}); err != nil {
		t.Fatal(err)
	}
	newRoot := mustParse(t, find(authorities(t, in.store), store.KindRoot, store.StateActive).CertDER)
	onlyNew := &bundle.Bundle{X509Authorities: []*x509.Certificate{newRoot}}
	checkCross := func(when string) *x509.Certificate {
		t.Helper()
		svid := mint(t, in.ca)
		if len(svid.Chain) != 3 {
			t.Fatalf("%s: chain has %d certificates, want leaf, intermediate, cross-signed intermediate", when, len(svid.Chain))
		}
		inter, cross := svid.Chain[1], svid.Chain[2]
		if !bytes.Equal(cross.RawSubject, inter.RawSubject) || !bytes.Equal(cross.RawSubjectPublicKeyInfo, inter.RawSubjectPublicKeyInfo) {
			t.Errorf("%s: cross-signed certificate has another subject or key than the intermediate", when)
		}
		if cross.CheckSignatureFrom(oldRoot) != nil || cross.NotAfter.After(oldRoot.NotAfter) {
			t.Errorf("%s: cross-signed certificate is not issued by the old root within its life", when)
		}
		for name, b := range map[string]*bundle.Bundle{"only the old root": onlyOld, "only the new root": onlyNew} {
			if err := verifyAt(svid.Chain, b, e.clock.Now()); err != nil {
				t.Errorf("%s: a peer trusting %s rejects the SVID: %v", when, name, err)
			}
		}
		return cross
	}
	first := checkCross("after activation")

	// The intermediate rotates while the old root is still retiring.
	e.clock.Advance(31 * time.Minute)
	if err := in.m.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if second := checkCross("after an intermediate rotation"); second.Equal(first) {
		t.Error("the new intermediate kept the previous one's cross-signed certificate")
	}

	// A restart reuses the stored cross-signed certificate.
	before := mint(t, in.ca).Chain[2]
	if err := in.store.Close(); err != nil {
		t.Fatal(err)
	}
	in = e.startMemKeys(t, km, rotation.Config{IntermediateTTL: time.Hour})
	if after := checkCross("after a restart"); !after.Equal(before) {
		t.Error("a restart issued a new cross-signed certificate")
	}

	// Retired: SVIDs chain to the new root only.
	if _, err := in.m.RetireRoot(ctx, rotation.RetireParams{Force: true}); err != nil {
		t.Fatal(err)
	}
	svid := mint(t, in.ca)
	if len(svid.Chain) != 2 {
		t.Errorf("after retirement the chain has %d certificates, want leaf and intermediate", len(svid.Chain))
	}
	if verifyAt(svid.Chain, onlyOld, e.clock.Now()) == nil {
		t.Error("after retirement an SVID still chains to the old root")
	}
}
