package server

import (
	"context"
	"crypto/x509"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/signet-mesh/signet/internal/nodeapi"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
	nodev1 "github.com/signet-mesh/signet/proto/signet/node/v1"
)

// TestMintSeesStoreChanges: the store serves the node and entry reads of
// repeated mints from a cache of decoded records. Each change made between
// two mints decides the second: a new TTL applies, a deleted entry is not
// minted, an evicted node is refused, and after it attests again the SVID
// of its earlier attestation is refused as superseded.
func TestMintSeesStoreChanges(t *testing.T) {
	c := startCA(t, testOpts{})
	ctx := context.Background()
	n := c.attest(t, "cache-1")
	entry := c.entry(t, "spiffe://example.org/cached", n.id.String())
	mint := func() (*nodev1.MintX509SVIDResult, error) {
		t.Helper()
		resp, err := n.client.MintX509SVIDs(ctx, &nodev1.MintX509SVIDsRequest{Params: []*nodev1.MintX509SVIDParams{{EntryId: entry, Csr: csr(t, newKey(t))}}})
		if err != nil {
			return nil, err
		}
		return resp.Results[0], nil
	}
	lifetime := func(r *nodev1.MintX509SVIDResult) time.Duration {
		t.Helper()
		leaf, err := x509.ParseCertificate(r.GetSvid().GetCertChain()[0])
		if err != nil {
			t.Fatal(err)
		}
		return leaf.NotAfter.Sub(leaf.NotBefore)
	}

	for range 2 { // the second read is the cached one
		r, err := mint()
		if err != nil || codes.Code(r.Code) != codes.OK {
			t.Fatalf("mint: %v %v", r, err)
		}
	}

	ttl := int64(600)
	if _, err := c.admin.UpdateEntry(ctx, &adminv1.UpdateEntryRequest{Id: entry, X509TtlSeconds: &ttl}); err != nil {
		t.Fatal(err)
	}
	r, err := mint()
	if err != nil || codes.Code(r.Code) != codes.OK {
		t.Fatalf("mint after the update: %v %v", r, err)
	}
	// NotBefore is backdated (ca.Backdate).
	if got := lifetime(r); got > 11*time.Minute {
		t.Errorf("SVID lifetime after the TTL was set to 10m: %v", got)
	}

	if _, err := c.admin.DeleteEntry(ctx, &adminv1.DeleteEntryRequest{Id: entry}); err != nil {
		t.Fatal(err)
	}
	if r, err := mint(); err != nil || codes.Code(r.Code) != codes.NotFound {
		t.Fatalf("mint of a deleted entry: %v %v, want NotFound", r, err)
	}

	entry = c.entry(t, "spiffe://example.org/cached-2", n.id.String())
	if r, err := mint(); err != nil || codes.Code(r.Code) != codes.OK {
		t.Fatalf("mint of a new entry: %v %v", r, err)
	}
	if _, err := c.admin.EvictNode(ctx, &adminv1.EvictNodeRequest{SpiffeId: n.id.String()}); err != nil {
		t.Fatal(err)
	}
	_, err = mint()
	wantRejection(t, "mint after eviction", err, nodeapi.ReasonEvicted)

	again := c.attest(t, "cache-1")
	entry = c.entry(t, "spiffe://example.org/cached-3", again.id.String())
	resp, err := again.client.MintX509SVIDs(ctx, &nodev1.MintX509SVIDsRequest{Params: []*nodev1.MintX509SVIDParams{{EntryId: entry, Csr: csr(t, newKey(t))}}})
	if err != nil || codes.Code(resp.Results[0].Code) != codes.OK {
		t.Fatalf("mint after attesting again: %v %v", resp, err)
	}
	_, err = mint()
	wantRejection(t, "mint with the SVID of the earlier attestation", err, nodeapi.ReasonSuperseded)
}
