package mint

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/signet-mesh/signet/agent/cache"
	"github.com/signet-mesh/signet/agent/client"
	"github.com/signet-mesh/signet/internal/clock"
	"github.com/signet-mesh/signet/internal/nodeapi"
)

// refusingCA fills in a CSR for each request that has none, as
// client.Client does, records what each call carried, and fails the
// first call with err; later calls sign.
type refusingCA struct {
	chunkCA
	err  error
	sent [][]client.MintRequest
}

func (ca *refusingCA) MintX509SVIDs(ctx context.Context, reqs []client.MintRequest) ([]client.MintResult, error) {
	for i := range reqs {
		if reqs[i].CSR == nil {
			reqs[i].CSR = fmt.Appendf(nil, "csr of %s #%d", reqs[i].EntryID, len(ca.sent))
		}
	}
	ca.sent = append(ca.sent, append([]client.MintRequest(nil), reqs...))
	if len(ca.sent) == 1 {
		return nil, fmt.Errorf("client: minting SVIDs: %w", ca.err)
	}
	return ca.chunkCA.MintX509SVIDs(ctx, reqs)
}

// TestRefusedRequestsSentAgain: after a call the CA refused unseen
// (ResourceExhausted), the next mint sends the same keys and CSRs instead
// of making new ones, and the SVIDs it gets hold those keys; after any
// other failure (the call may have reached the CA), new ones are made.
func TestRefusedRequestsSentAgain(t *testing.T) {
	for _, tt := range []struct {
		name  string
		err   error
		reuse bool
	}{
		{name: "refused by admission control", err: nodeapi.Overloaded("the CA is at its limit", time.Second), reuse: true},
		{name: "CA unavailable", err: status.Error(codes.Unavailable, "connection refused")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			clk := clock.NewFake(time.Now())
			c := cache.New(cache.Config{TrustDomain: td, Clock: clk})
			ids := []string{"a", "b", "c"}
			var es []cache.Entry
			for _, id := range ids {
				es = append(es, cache.Entry{ID: id, SPIFFEID: spiffeid.RequireFromPath(td, "/"+id), Selectors: []string{"unix:uid:1"}, X509TTL: time.Hour})
			}
			c.ApplyEntries(true, es, nil)
			issuer, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			ca := &refusingCA{chunkCA: chunkCA{t: t, cache: c, key: issuer}, err: tt.err}
			made := 0
			m := New(Config{Cache: c, CA: ca, Scheduler: nopScheduler{}, Clock: clk,
				NewKey: func() (crypto.Signer, error) {
					made++
					return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
				}})
			if err := m.mint(context.Background(), ids); status.Code(err) != status.Code(tt.err) {
				t.Fatalf("first mint = %v, want %v", err, tt.err)
			}
			if err := m.mint(context.Background(), m.take()); err != nil {
				t.Fatalf("second mint = %v", err)
			}
			if len(ca.sent) != 2 {
				t.Fatalf("%d calls, want 2", len(ca.sent))
			}
			first := map[string]client.MintRequest{}
			for _, r := range ca.sent[0] {
				first[r.EntryID] = r
			}
			for _, r := range ca.sent[1] {
				same := r.Key == first[r.EntryID].Key && string(r.CSR) == string(first[r.EntryID].CSR)
				if same != tt.reuse {
					t.Errorf("entry %s sent again with the same key and CSR: %v, want %v", r.EntryID, same, tt.reuse)
				}
				svid := c.SVID(r.EntryID)
				if svid == nil {
					t.Fatalf("entry %s has no SVID", r.EntryID)
				}
				leaf, err := x509.ParseCertificate(svid.LeafDER())
				if err != nil {
					t.Fatal(err)
				}
				if !leaf.PublicKey.(*ecdsa.PublicKey).Equal(r.Key.Public()) {
					t.Errorf("entry %s: SVID's key is not the key sent", r.EntryID)
				}
			}
			if want := map[bool]int{true: 3, false: 6}[tt.reuse]; made != want {
				t.Errorf("%d keys made, want %d", made, want)
			}
		})
	}
}
