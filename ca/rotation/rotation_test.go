package rotation_test

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/signet-mesh/signet/ca"
	"github.com/signet-mesh/signet/ca/bundle"
	"github.com/signet-mesh/signet/ca/catest"
	"github.com/signet-mesh/signet/ca/keys"
	"github.com/signet-mesh/signet/ca/rotation"
	"github.com/signet-mesh/signet/ca/servercert"
	"github.com/signet-mesh/signet/ca/store"
	"github.com/signet-mesh/signet/internal/clock"
)

var (
	td         = spiffeid.RequireTrustDomainFromString("example.org")
	workloadID = spiffeid.RequireFromPath(td, "/web")
	passphrase = []byte("test passphrase")
)

// testKDFIterations is the PBKDF2 iteration count of the keys these tests
// write (keys.Config.KDFIterations): at the default of 600,000 each is
// about 2 s of CPU under the race detector. ca/keys tests the default.
const testKDFIterations = 1000

// env is one CA's data directory and clock; start opens the store and
// builds a Manager over it, as a server process would.
type env struct {
	dir   string
	clock *clock.Fake
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return &env{dir: t.TempDir(), clock: clock.NewFake(time.Now().Truncate(time.Second))}
}

type instance struct {
	m     *rotation.Manager
	ca    *ca.CA
	store store.Store
	srv   *servercert.Manager // the CA server's TLS certificate, which follows the intermediate
}

func newServerCert(t testing.TB, c *ca.CA) *servercert.Manager {
	t.Helper()
	sc, err := servercert.New(servercert.Config{CA: c})
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

// initErr is start for an Init expected to fail: it returns Init's error.
func (e *env) initErr(t *testing.T, cfg rotation.Config) error {
	t.Helper()
	st, err := store.Open(filepath.Join(e.dir, "signet.db"), store.Options{NoSync: true})
	if err != nil {
		t.Fatalf("store.Open: %v", err)
	}
	defer st.Close()
	km, err := keys.New(context.Background(), keys.Config{Dir: filepath.Join(e.dir, "keys"), Passphrase: passphrase, KDFIterations: testKDFIterations})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Store, cfg.Keys, cfg.CA, cfg.TrustDomain, cfg.Clock = st, km, ca.New(ca.Config{TrustDomain: td, Clock: e.clock}), td, e.clock
	m, err := rotation.New(cfg)
	if err != nil {
		t.Fatalf("rotation.New: %v", err)
	}
	return m.Init(context.Background())
}

// start opens the env's store and key directory and returns an
// initialised Manager; cfg's zero fields are filled in. The store closes
// at cleanup unless stop is called first.
func (e *env) start(t *testing.T, cfg rotation.Config) *instance {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(filepath.Join(e.dir, "signet.db"), store.Options{NoSync: true})
	if err != nil {
		t.Fatalf("store.Open: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	km, err := keys.New(ctx, keys.Config{Dir: filepath.Join(e.dir, "keys"), Passphrase: passphrase, KDFIterations: testKDFIterations})
	if err != nil {
		t.Fatal(err)
	}
	c := ca.New(ca.Config{TrustDomain: td, Clock: e.clock})
	cfg.Store, cfg.Keys, cfg.CA, cfg.TrustDomain, cfg.Clock = st, km, c, td, e.clock
	m, err := rotation.New(cfg)
	if err != nil {
		t.Fatalf("rotation.New: %v", err)
	}
	if err := m.Init(ctx); err != nil {
		t.Fatalf("Init: %v", err)
	}
	return &instance{m: m, ca: c, store: st, srv: newServerCert(t, c)}
}

// run starts m.Run and waits until its ticker is armed, so the clock can
// be advanced. The returned function stops it and checks it returned nil.
func (e *env) run(t *testing.T, in *instance) func() {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.m.Run(ctx) }()
	waitFor(t, "Run to arm its ticker", func() bool { return e.clock.Waiters() > 0 })
	stop := func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v, want nil on cancellation", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancellation")
		}
	}
	t.Cleanup(func() {
		if ctx.Err() == nil {
			stop()
		}
	})
	return stop
}

// waitFor polls cond until it holds or a deadline passes. Run works in its
// own goroutine, so tests wait for its effects rather than sleeping.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

func authorities(t testing.TB, st store.Store) []*store.Authority {
	t.Helper()
	var out []*store.Authority
	if err := st.View(context.Background(), func(tx store.Tx) error {
		var err error
		out, err = tx.ListAuthorities()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// states summarises authorities as sorted "kind:state" strings
// (authorities created in the same transaction have no defined order).
func states(auths []*store.Authority) []string {
	var out []string
	for _, a := range auths {
		out = append(out, string(a.Kind)+":"+string(a.State))
	}
	slices.Sort(out)
	return out
}

func find(auths []*store.Authority, kind store.AuthorityKind, state store.AuthorityState) *store.Authority {
	for _, a := range auths {
		if a.Kind == kind && a.State == state {
			return a
		}
	}
	return nil
}

func readBundle(t *testing.T, in *instance) *bundle.Bundle {
	t.Helper()
	b, err := bundle.Read(context.Background(), in.store, td)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mint(t *testing.T, c *ca.CA) *ca.X509SVID {
	t.Helper()
	svid, err := c.SignX509SVID(context.Background(), ca.X509SVIDParams{SPIFFEID: workloadID, PublicKey: catest.NewKey(t).Public()})
	if err != nil {
		t.Fatalf("SignX509SVID: %v", err)
	}
	return svid
}

// verifyAt checks chain against the bundle at the fake clock's time, which
// x509svid.Verify (wall clock) cannot.
func verifyAt(chain []*x509.Certificate, b *bundle.Bundle, now time.Time) error {
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	for _, c := range b.X509Authorities {
		roots.AddCert(c)
	}
	for _, c := range chain[1:] {
		inters.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, CurrentTime: now})
	return err
}

func samePublicKey(a, b crypto.PublicKey) bool {
	return a.(interface{ Equal(crypto.PublicKey) bool }).Equal(b)
}

func TestInitCreatesAuthorities(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	in := e.start(t, rotation.Config{})
	auths := authorities(t, in.store)
	if diff := cmp.Diff([]string{"intermediate:active", "jwt:active", "root:active"}, states(auths)); diff != "" {
		t.Fatalf("authorities (-want +got):\n%s", diff)
	}
	root := find(auths, store.KindRoot, store.StateActive)
	inter := find(auths, store.KindIntermediate, store.StateActive)
	jwt := find(auths, store.KindJWT, store.StateActive)
	if inter.ParentID != root.ID {
		t.Errorf("intermediate parent = %q, want root %q", inter.ParentID, root.ID)
	}
	for _, a := range auths {
		if a.KeyType != string(keys.KeyTypeECP256) {
			t.Errorf("%s key type %q, want EC-P256", a.Kind, a.KeyType)
		}
		if _, err := os.Stat(filepath.Join(e.dir, "keys", a.KeyRef)); err != nil {
			t.Errorf("%s key file: %v", a.Kind, err)
		}
	}
	rootCert, err := x509.ParseCertificate(root.CertDER)
	if err != nil {
		t.Fatal(err)
	}
	if got := rootCert.NotAfter.Sub(rootCert.NotBefore); got != rotation.DefaultRootTTL+ca.Backdate {
		t.Errorf("root lifetime %v, want %v", got, rotation.DefaultRootTTL)
	}

	xa := in.ca.X509Authority()
	if xa == nil || xa.ID != inter.ID || len(xa.UpstreamChain) != 0 || len(xa.Roots) != 1 || !xa.Roots[0].Equal(rootCert) {
		t.Fatalf("CA authority = %+v, want intermediate %s under root %s", xa, inter.ID, root.ID)
	}
	if jk := in.ca.JWTKey(); jk == nil || jk.ID != jwt.ID || !jk.NotAfter.Equal(e.clock.Now().Add(rotation.DefaultJWTKeyTTL)) {
		t.Fatalf("CA JWT key = %+v, want %s", jk, jwt.ID)
	}

	b := readBundle(t, in)
	if len(b.X509Authorities) != 1 || !b.X509Authorities[0].Equal(rootCert) {
		t.Errorf("bundle roots = %d certs, want the root", len(b.X509Authorities))
	}
	if len(b.JWTAuthorities) != 1 || b.JWTAuthorities[0].ID != jwt.ID || !samePublicKey(b.JWTAuthorities[0].PublicKey, in.ca.JWTKey().Signer.Public()) {
		t.Errorf("bundle JWT keys = %+v", b.JWTAuthorities)
	}
	if b.Revision <= 0 {
		t.Errorf("bundle revision = %d, want > 0", b.Revision)
	}

	svid := mint(t, in.ca)
	if _, _, err := x509svid.Verify(svid.Chain, b.X509Bundle()); err != nil {
		t.Errorf("SVID does not verify against the bundle: %v", err)
	}
}

func TestRestartReusesAuthorities(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	first := e.start(t, rotation.Config{})
	before := authorities(t, first.store)
	rev := readBundle(t, first).Revision
	firstAuth, firstJWT := first.ca.X509Authority(), first.ca.JWTKey()
	if err := first.store.Close(); err != nil {
		t.Fatal(err)
	}

	second := e.start(t, rotation.Config{})
	if diff := cmp.Diff(before, authorities(t, second.store)); diff != "" {
		t.Errorf("authorities changed across restart (-before +after):\n%s", diff)
	}
	xa, jk := second.ca.X509Authority(), second.ca.JWTKey()
	if xa.ID != firstAuth.ID || !xa.Certificate.Equal(firstAuth.Certificate) || !samePublicKey(xa.Signer.Public(), firstAuth.Signer.Public()) {
		t.Errorf("intermediate after restart differs")
	}
	if jk.ID != firstJWT.ID || !samePublicKey(jk.Signer.Public(), firstJWT.Signer.Public()) {
		t.Errorf("JWT key after restart differs")
	}
	if got := readBundle(t, second).Revision; got != rev {
		t.Errorf("bundle revision %d after restart, want %d", got, rev)
	}
}

func TestRunRotatesIntermediate(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// A JWT key that is not due, to see the intermediate alone.
	in := e.start(t, rotation.Config{IntermediateTTL: 4 * time.Hour, JWTKeyTTL: 30 * 24 * time.Hour})
	old := in.ca.X509Authority()
	rev := readBundle(t, in).Revision
	oldServer, err := in.srv.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	stop := e.run(t, in)

	// Just before half-life nothing happens...
	e.clock.Advance(2*time.Hour - time.Minute)
	// ...at half-life the intermediate rotates.
	e.clock.Advance(time.Minute)
	waitFor(t, "the intermediate to rotate", func() bool { return in.ca.X509Authority().ID != old.ID })
	stop()

	cur := in.ca.X509Authority()
	auths := authorities(t, in.store)
	if diff := cmp.Diff([]string{"intermediate:active", "intermediate:retired", "jwt:active", "root:active"}, states(auths)); diff != "" {
		t.Errorf("authorities (-want +got):\n%s", diff)
	}
	root := find(auths, store.KindRoot, store.StateActive)
	if a := find(auths, store.KindIntermediate, store.StateActive); a.ID != cur.ID || a.ParentID != root.ID {
		t.Errorf("active intermediate %s (parent %s), CA uses %s", a.ID, a.ParentID, cur.ID)
	}
	if !cur.Certificate.NotAfter.After(old.Certificate.NotAfter) {
		t.Errorf("new intermediate expires %v, not after the old %v", cur.Certificate.NotAfter, old.Certificate.NotAfter)
	}

	svid := mint(t, in.ca)
	if !svid.Chain[1].Equal(cur.Certificate) || svid.AuthorityID != cur.ID {
		t.Errorf("new SVIDs are not signed by the new intermediate")
	}
	b := readBundle(t, in)
	if err := verifyAt(svid.Chain, b, e.clock.Now()); err != nil {
		t.Errorf("new SVID does not verify: %v", err)
	}
	if b.Revision != rev {
		t.Errorf("bundle revision went from %d to %d on an intermediate rotation", rev, b.Revision)
	}

	// The server certificate follows the intermediate.
	srv, err := in.srv.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	if srv == oldServer || srv.Leaf.CheckSignatureFrom(cur.Certificate) != nil {
		t.Errorf("server certificate was not re-signed by the new intermediate")
	}
}

func TestRunRotatesJWTKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const ttl = 4 * time.Hour
	in := e.start(t, rotation.Config{JWTKeyTTL: ttl, IntermediateTTL: 30 * 24 * time.Hour})
	first := in.ca.JWTKey()
	rev0 := readBundle(t, in).Revision
	e.run(t, in)

	jwtIDs := func(b *bundle.Bundle) []string {
		var ids []string
		for _, k := range b.JWTAuthorities {
			ids = append(ids, k.ID)
		}
		return ids
	}

	// Half-life: a successor is prepared and published, but does not sign.
	e.clock.Advance(ttl / 2)
	waitFor(t, "a prepared JWT key", func() bool { return len(readBundle(t, in).JWTAuthorities) == 2 })
	b1 := readBundle(t, in)
	if b1.Revision <= rev0 {
		t.Errorf("bundle revision %d after a JWT key was added, want > %d", b1.Revision, rev0)
	}
	if in.ca.JWTKey().ID != first.ID {
		t.Errorf("prepared key signs before it was published long enough")
	}
	next := b1.JWTAuthorities[1].ID

	// Three quarters: the successor signs; the old key stays in the bundle.
	e.clock.Advance(ttl / 4)
	waitFor(t, "the JWT key to activate", func() bool { return in.ca.JWTKey().ID == next })
	b2 := readBundle(t, in)
	if diff := cmp.Diff([]string{first.ID, next}, jwtIDs(b2)); diff != "" {
		t.Errorf("bundle JWT keys while the old key retires (-want +got):\n%s", diff)
	}
	if b2.Revision != b1.Revision {
		t.Errorf("bundle revision changed on activation, though its keys did not")
	}
	if old := find(authorities(t, in.store), store.KindJWT, store.StateRetiring); old == nil || old.ID != first.ID {
		t.Errorf("old JWT key is not retiring")
	}

	// Tokens signed by the old key never outlive it, so at its NotAfter it
	// leaves the bundle. That is also the new key's half-life, so its own
	// successor is prepared at the same time.
	e.clock.Advance(ttl / 4)
	waitFor(t, "the old JWT key to retire", func() bool { return !slices.Contains(jwtIDs(readBundle(t, in)), first.ID) })
	b3 := readBundle(t, in)
	if ids := jwtIDs(b3); len(ids) != 2 || ids[0] != next {
		t.Errorf("bundle JWT keys = %v, want %s and its prepared successor", ids, next)
	}
	if in.ca.JWTKey().ID != next {
		t.Errorf("JWT key %s signs, want %s", in.ca.JWTKey().ID, next)
	}
	if b3.Revision <= b2.Revision {
		t.Errorf("bundle revision %d after a JWT key left, want > %d", b3.Revision, b2.Revision)
	}
}

func TestRunBeforeInit(t *testing.T) {
	t.Parallel()
	st, err := store.Open(filepath.Join(t.TempDir(), "db"), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	km, err := keys.New(context.Background(), keys.Config{Dir: t.TempDir(), Passphrase: passphrase, KDFIterations: testKDFIterations})
	if err != nil {
		t.Fatal(err)
	}
	m, err := rotation.New(rotation.Config{Store: st, Keys: km, CA: ca.New(ca.Config{TrustDomain: td}), TrustDomain: td})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Run(context.Background()); !errors.Is(err, rotation.ErrNotInitialized) {
		t.Errorf("Run before Init = %v, want ErrNotInitialized", err)
	}
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	st, err := store.Open(filepath.Join(t.TempDir(), "db"), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	km, err := keys.New(context.Background(), keys.Config{Dir: t.TempDir(), Passphrase: passphrase, KDFIterations: testKDFIterations})
	if err != nil {
		t.Fatal(err)
	}
	c := ca.New(ca.Config{TrustDomain: td})
	valid := func() rotation.Config {
		return rotation.Config{Store: st, Keys: km, CA: c, TrustDomain: td}
	}
	tests := []struct {
		name    string
		mod     func(*rotation.Config)
		wantErr string
	}{
		{"no store", func(c *rotation.Config) { c.Store = nil }, "Store is required"},
		{"no keys", func(c *rotation.Config) { c.Keys = nil }, "Keys is required"},
		{"no CA", func(c *rotation.Config) { c.CA = nil }, "CA is required"},
		{"no trust domain", func(c *rotation.Config) { c.TrustDomain = spiffeid.TrustDomain{} }, "TrustDomain is required"},
		{"trust domain differs from CA's", func(c *rotation.Config) { c.TrustDomain = spiffeid.RequireTrustDomainFromString("other.org") }, "differs"},
		{"both imports", func(c *rotation.Config) { c.ImportRoot, c.ImportIntermediate = &rotation.Import{}, &rotation.Import{} }, "exclusive"},
		{"negative TTL", func(c *rotation.Config) { c.IntermediateTTL = -time.Hour }, "negative"},
		{"bad key type", func(c *rotation.Config) { c.KeyType = "DSA" }, "unknown key type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := valid()
			tt.mod(&cfg)
			_, err := rotation.New(cfg)
			if !errors.Is(err, rotation.ErrInvalidConfig) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want ErrInvalidConfig containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestShouldRotate(t *testing.T) {
	t.Parallel()
	var m rotation.Manager
	nb := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	na := nb.Add(2 * time.Hour)
	tests := []struct {
		now  time.Time
		want bool
	}{
		{nb.Add(-time.Hour), false},
		{nb, false},
		{nb.Add(time.Hour - time.Nanosecond), false},
		{nb.Add(time.Hour), true},
		{na, true},
		{na.Add(time.Hour), true},
	}
	for _, tt := range tests {
		if got := m.ShouldRotate(tt.now, nb, na); got != tt.want {
			t.Errorf("ShouldRotate(%v) = %v, want %v", tt.now.Sub(nb), got, tt.want)
		}
	}
}

func TestSPIFFEBundle(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	in := e.start(t, rotation.Config{})
	b := readBundle(t, in)
	data, err := b.SPIFFEBundle().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"use":"x509-svid"`, `"use":"jwt-svid"`, `"spiffe_sequence"`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("SPIFFE bundle lacks %s:\n%s", want, data)
		}
	}
	parsed, err := spiffebundle.Parse(td, data)
	if err != nil {
		t.Fatalf("spiffebundle.Parse: %v", err)
	}
	if !parsed.X509Bundle().Equal(b.X509Bundle()) {
		t.Errorf("X.509 authorities do not round-trip")
	}
	if _, ok := parsed.FindJWTAuthority(b.JWTAuthorities[0].ID); !ok {
		t.Errorf("JWT authority %s missing after round trip", b.JWTAuthorities[0].ID)
	}
	if seq, ok := parsed.SequenceNumber(); !ok || seq != uint64(b.Revision) {
		t.Errorf("sequence number = %d, want revision %d", seq, b.Revision)
	}
}
