package bundle_test

import (
	"context"
	"crypto/x509"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-mesh/signet/ca/bundle"
	"github.com/signet-mesh/signet/ca/catest"
	"github.com/signet-mesh/signet/ca/store"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

func openStore(t *testing.T) store.Store {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "signet.db"), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// TestFromTx: the bundle holds the roots and JWT keys that are not
// retired, and the revision the last BumpRevision took.
func TestFromTx(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := openStore(t)
	now := time.Now()
	a, b := catest.NewCA(t, td), catest.NewCA(t, td)
	jwtPub, err := x509.MarshalPKIXPublicKey(a.JWTKey.Signer.Public())
	if err != nil {
		t.Fatal(err)
	}
	auths := []*store.Authority{
		{ID: "r1", Kind: store.KindRoot, State: store.StateRetiring, CertDER: a.Root.Raw, CreatedAt: now},
		{ID: "r2", Kind: store.KindRoot, State: store.StateRetired, CertDER: b.Root.Raw, CreatedAt: now},
		{ID: "i1", Kind: store.KindIntermediate, State: store.StateActive, CertDER: a.Intermediate.Raw, ParentID: "r1", CreatedAt: now},
		{ID: "j1", Kind: store.KindJWT, State: store.StatePrepared, CertDER: jwtPub, CreatedAt: now},
	}
	var rev int64
	err = st.Update(ctx, func(tx store.Tx) error {
		for _, x := range auths {
			if err := tx.PutAuthority(x); err != nil {
				return err
			}
		}
		rev, err = bundle.BumpRevision(tx)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := bundle.Read(ctx, st, td)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.X509Authorities) != 1 || !got.X509Authorities[0].Equal(a.Root) {
		t.Errorf("X509Authorities = %d certificates, want only the retiring root (the retired one left)", len(got.X509Authorities))
	}
	if len(got.JWTAuthorities) != 1 || got.JWTAuthorities[0].ID != "j1" {
		t.Errorf("JWTAuthorities = %+v, want the prepared key j1", got.JWTAuthorities)
	}
	if got.Revision != rev || rev == 0 {
		t.Errorf("Revision = %d, want %d (taken by BumpRevision)", got.Revision, rev)
	}
	if seq, ok := got.SPIFFEBundle().SequenceNumber(); !ok || seq != uint64(rev) {
		t.Errorf("SPIFFE bundle sequence number does not carry revision %d", rev)
	}
}

func TestRotateGeneration(t *testing.T) {
	t.Parallel()
	st := openStore(t)
	var gens []int64
	for range 2 {
		err := st.Update(context.Background(), func(tx store.Tx) error {
			g, err := bundle.BumpRotateGeneration(tx)
			gens = append(gens, g)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	var cur int64
	if err := st.View(context.Background(), func(tx store.Tx) (err error) { cur, err = bundle.RotateGeneration(tx); return err }); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int64{1, 2}, gens); diff != "" || cur != 2 {
		t.Errorf("generations (-want +got):\n%s\ncurrent %d, want 2", diff, cur)
	}
}

// TestParseRoot: a self-signed root is its own anchor; an imported
// intermediate sends itself and the non-anchors above it, and its chain's
// self-signed certificates are the anchors.
func TestParseRoot(t *testing.T) {
	t.Parallel()
	org := catest.NewCA(t, td)
	self, err := bundle.ParseRoot(&store.Authority{ID: "r", CertDER: org.Root.Raw})
	if err != nil {
		t.Fatal(err)
	}
	if len(self.Anchors) != 1 || !self.Anchors[0].Equal(org.Root) || len(self.Upstream) != 0 {
		t.Errorf("self-signed root: anchors %d, upstream %d; want itself as the only anchor", len(self.Anchors), len(self.Upstream))
	}
	imported, err := bundle.ParseRoot(&store.Authority{ID: "i", CertDER: org.Intermediate.Raw, UpstreamChainDER: [][]byte{org.Root.Raw}})
	if err != nil {
		t.Fatal(err)
	}
	if len(imported.Anchors) != 1 || !imported.Anchors[0].Equal(org.Root) || len(imported.Upstream) != 1 || !imported.Upstream[0].Equal(org.Intermediate) {
		t.Errorf("imported intermediate: anchors %d, upstream %d; want the org root as anchor, itself upstream", len(imported.Anchors), len(imported.Upstream))
	}
	if _, err := bundle.ParseRoot(&store.Authority{ID: "bad", CertDER: []byte("junk")}); err == nil {
		t.Error("ParseRoot of junk succeeded")
	}
}
