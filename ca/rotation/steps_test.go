package rotation_test

import (
	"context"
	"crypto"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signet-mesh/signet/ca"
	"github.com/signet-mesh/signet/ca/audit"
	"github.com/signet-mesh/signet/ca/catest"
	"github.com/signet-mesh/signet/ca/keys"
	"github.com/signet-mesh/signet/ca/rotation"
	"github.com/signet-mesh/signet/ca/store"
)

// hookKeys is a keys.Manager that calls onCreate with each new key's name
// before creating it: tests use it to act while a step is being prepared.
type hookKeys struct {
	keys.Manager
	onCreate func(name string)
}

func (k *hookKeys) Create(ctx context.Context, name string, kt keys.KeyType) (crypto.Signer, string, error) {
	if k.onCreate != nil {
		k.onCreate(name)
	}
	return k.Manager.Create(ctx, name, kt)
}

// startKeys is env.start with the key manager km.
func (e *env) startKeys(t *testing.T, st store.Store, km keys.Manager, cfg rotation.Config) *instance {
	t.Helper()
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

func (e *env) openStore(t *testing.T) store.Store {
	t.Helper()
	st, err := store.Open(filepath.Join(e.dir, "signet.db"), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// softHSMKeys returns a PKCS#11 key manager on a fresh SoftHSM token, or
// skips the test when SoftHSM is not installed (or cgo is off).
func softHSMKeys(t *testing.T) keys.Manager {
	t.Helper()
	const module = "/usr/lib/softhsm/libsofthsm2.so"
	util, err := exec.LookPath("softhsm2-util")
	if err != nil {
		t.Skip("softhsm2-util not on PATH")
	}
	if _, err := os.Stat(module); err != nil {
		t.Skip("SoftHSM module not installed")
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "softhsm2.conf")
	if err := os.MkdirAll(filepath.Join(dir, "tokens"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, []byte("directories.tokendir = "+filepath.Join(dir, "tokens")+"\nobjectstore.backend = file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", conf)
	if out, err := exec.Command(util, "--init-token", "--free", "--label", "signet", "--pin", "1234", "--so-pin", "5678").CombinedOutput(); err != nil {
		t.Fatalf("softhsm2-util: %v\n%s", err, out)
	}
	km, err := keys.New(context.Background(), keys.Config{KMSURI: "pkcs11:module-path=" + module + ";token=signet?pin-value=1234"})
	if err != nil {
		if strings.Contains(err.Error(), "cgo") {
			t.Skip("built without cgo: ", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { km.Close() })
	return km
}

// TestConflictingCommitLeavesNoKey: while a root is being prepared (its key
// made, its certificate signed, no transaction open), another server on the
// same store prepares a root and commits first. The first step's commit
// finds the authorities changed: it throws its work away, deletes the key
// it made and caches nothing, plans again from the new state, and is then
// refused because a root is already prepared. No key is left that no
// authority refers to.
//
// Not parallel: the SoftHSM case sets SOFTHSM2_CONF.
func TestConflictingCommitLeavesNoKey(t *testing.T) {
	for _, kms := range []struct {
		name string
		new  func(t *testing.T, e *env) (keys.Manager, string) // the manager and its key dir ("" for a KMS)
	}{
		{"soft keys", func(t *testing.T, e *env) (keys.Manager, string) {
			dir := filepath.Join(e.dir, "keys-a")
			km, err := keys.New(context.Background(), keys.Config{Dir: dir, Passphrase: passphrase, KDFIterations: testKDFIterations})
			if err != nil {
				t.Fatal(err)
			}
			return km, dir
		}},
		{"PKCS11 SoftHSM", func(t *testing.T, _ *env) (keys.Manager, string) { return softHSMKeys(t), "" }},
	} {
		t.Run(kms.name, func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t)
			st := e.openStore(t)
			km, dir := kms.new(t, e)
			hooked := &hookKeys{Manager: km}
			a := e.startKeys(t, st, hooked, rotation.Config{})
			// Server b shares the key backend (the root's key must be
			// reachable by every server that signs intermediates).
			b := e.startKeys(t, st, km, rotation.Config{ServerName: "b"})

			var discarded string
			var once sync.Once
			hooked.onCreate = func(name string) {
				if !strings.HasPrefix(name, "root-") {
					return
				}
				once.Do(func() {
					discarded = name
					// Another server wins the race while a's step is
					// being prepared.
					if _, err := b.m.PrepareRoot(ctx, rotation.PrepareParams{Actor: "b"}); err != nil {
						t.Errorf("b's PrepareRoot: %v", err)
					}
				})
			}
			_, err := a.m.PrepareRoot(ctx, rotation.PrepareParams{Actor: "a"})
			wantErr(t, err, rotation.ErrRefused, "is already prepared")
			if discarded == "" {
				t.Fatal("a's PrepareRoot made no root key")
			}

			auths := authorities(t, st)
			if got := len(rootsOf(auths, store.StatePrepared)); got != 1 {
				t.Errorf("%d prepared roots, want b's only", got)
			}
			var refs []string
			for _, x := range auths {
				refs = append(refs, x.KeyRef)
				if strings.Contains(x.KeyRef, discarded) {
					t.Errorf("authority %s refers to the discarded key %s", x.ID, x.KeyRef)
				}
			}
			ref := discarded + ".pem"
			if dir == "" {
				ref = "" // the KMS names it; check every key a made instead
			}
			if dir != "" {
				if a.m.CachesSigner(ref) {
					t.Errorf("the signer of the discarded key %s is cached", ref)
				}
				files, err := os.ReadDir(dir)
				if err != nil {
					t.Fatal(err)
				}
				for _, f := range files {
					if !slices.Contains(refs, f.Name()) {
						t.Errorf("key file %s is referenced by no authority (orphan)", f.Name())
					}
				}
			}
			// Whatever the backend, every authority's key is there, and
			// the discarded one is gone.
			for _, x := range auths {
				if _, err := km.Load(ctx, x.KeyRef); err != nil {
					t.Errorf("key of %s %s: %v", x.Kind, x.ID, err)
				}
			}
			if dir == "" {
				if _, err := km.Load(ctx, "pkcs11:object="+discarded); !errors.Is(err, keys.ErrKeyNotFound) {
					t.Errorf("Load of the discarded key = %v, want ErrKeyNotFound", err)
				}
			}
		})
	}
}

func rootsOf(auths []*store.Authority, state store.AuthorityState) []*store.Authority {
	var out []*store.Authority
	for _, a := range auths {
		if a.Kind == store.KindRoot && a.State == state {
			out = append(out, a)
		}
	}
	return out
}

// TestMintNotBlockedByKeyGeneration: a rotation step generates its key
// with no store transaction open, so SVIDs keep being signed and recorded
// (the node API's View, sign, Batch) while the key generator is held.
func TestMintNotBlockedByKeyGeneration(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	st := e.openStore(t)
	hooked := &hookKeys{Manager: newMemKeys()}
	in := e.startKeys(t, st, hooked, rotation.Config{})
	register(t, in, nodeA, "e1", workloadID, e.clock.Now())

	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	hooked.onCreate = func(name string) {
		if strings.HasPrefix(name, "root-") {
			once.Do(func() { close(entered) })
			<-release
		}
	}
	prepared := make(chan error, 1)
	go func() {
		_, err := in.m.PrepareRoot(ctx, rotation.PrepareParams{Actor: "test"})
		prepared <- err
	}()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("PrepareRoot never reached key generation")
	}

	// The generator is held: mint and record, each with a deadline.
	for i := range 20 {
		mctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := st.View(mctx, func(tx store.Tx) error { _, err := tx.GetEntry("e1"); return err })
		if err != nil {
			cancel()
			t.Fatalf("mint %d: reading the entry: %v", i, err)
		}
		svid, err := in.ca.SignX509SVID(mctx, ca.X509SVIDParams{SPIFFEID: workloadID, PublicKey: catest.NewKey(t).Public()})
		if err != nil {
			cancel()
			t.Fatalf("mint %d: %v", i, err)
		}
		leaf := svid.Chain[0]
		err = st.Batch(mctx, func(tx store.Tx) error {
			if err := tx.PutSVID(&store.SVIDRecord{Serial: ca.FormatSerial(leaf.SerialNumber), SPIFFEID: workloadID.String(), NodeID: nodeA, EntryID: "e1",
				AuthorityID: svid.AuthorityID, NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter}); err != nil {
				return err
			}
			_, err := audit.Append(tx, audit.Record{Type: audit.TypeSVIDIssued, Outcome: audit.OutcomeSuccess, Subject: workloadID.String()}, e.clock.Now())
			return err
		})
		cancel()
		if err != nil {
			t.Fatalf("mint %d: recording: %v (blocked behind the rotation step?)", i, err)
		}
	}
	select {
	case err := <-prepared:
		t.Fatalf("PrepareRoot returned (%v) while its key generator was held", err)
	default:
	}
	close(release)
	select {
	case err := <-prepared:
		if err != nil {
			t.Fatalf("PrepareRoot: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("PrepareRoot did not finish after the key generator was released")
	}
}
