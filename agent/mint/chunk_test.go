package mint

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/signet-mesh/signet/agent/cache"
	"github.com/signet-mesh/signet/agent/client"
	"github.com/signet-mesh/signet/internal/clock"
)

// chunkCA signs every request with one issuer key, and fails the call
// numbered failCall (from 1; 0 never fails). It records, at each call,
// how many requests it got and how many SVIDs the cache already held.
type chunkCA struct {
	t        *testing.T
	cache    *cache.Cache
	key      crypto.Signer
	failCall int

	mu    sync.Mutex
	calls []chunkCall
}

type chunkCall struct{ reqs, cached int }

func (ca *chunkCA) MintX509SVIDs(_ context.Context, reqs []client.MintRequest) ([]client.MintResult, error) {
	held, _ := ca.cache.Stats()
	ca.mu.Lock()
	ca.calls = append(ca.calls, chunkCall{reqs: len(reqs), cached: held})
	n := len(ca.calls)
	ca.mu.Unlock()
	if n == ca.failCall {
		return nil, errors.New("CA unreachable")
	}
	out := make([]client.MintResult, 0, len(reqs))
	for i, r := range reqs {
		id := spiffeid.RequireFromPath(td, "/"+r.EntryID)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(n*100000 + i)), URIs: []*url.URL{id.URL()},
			NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, r.Key.Public(), ca.key)
		if err != nil {
			ca.t.Error(err)
			return nil, err
		}
		leaf, err := x509.ParseCertificate(der)
		if err != nil {
			ca.t.Error(err)
			return nil, err
		}
		out = append(out, client.MintResult{EntryID: r.EntryID, SVID: &x509svid.SVID{ID: id, Certificates: []*x509.Certificate{leaf}, PrivateKey: r.Key}})
	}
	return out, nil
}

type nopScheduler struct{}

func (nopScheduler) Schedule(string, *x509.Certificate) {}

// TestMintInChunks: a burst of entries is minted and published a chunk at
// a time, so the agent never holds keys and responses for all of them at
// once (issue 16); after a failed call the chunks not yet minted are
// queued again, and what was minted before it is served.
func TestMintInChunks(t *testing.T) {
	const entries = 2*mintChunk + 500
	tests := []struct {
		name       string
		failCall   int
		failKey    int // the key, numbered from 1, that NewKey fails to make
		wantCalls  []chunkCall
		wantHeld   int
		wantQueued int
		wantErr    string
	}{
		{name: "all minted", wantCalls: []chunkCall{{mintChunk, 0}, {mintChunk, mintChunk}, {500, 2 * mintChunk}}, wantHeld: entries},
		{name: "second call fails", failCall: 2, wantCalls: []chunkCall{{mintChunk, 0}, {mintChunk, mintChunk}},
			wantHeld: mintChunk, wantQueued: mintChunk + 500, wantErr: "CA unreachable"},
		{name: "a key of the second chunk fails", failKey: mintChunk + 10, wantCalls: []chunkCall{{mintChunk, 0}},
			wantHeld: mintChunk, wantQueued: mintChunk + 500, wantErr: "generating key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := clock.NewFake(time.Now())
			c := cache.New(cache.Config{TrustDomain: td, Clock: clk})
			var es []cache.Entry
			var ids []string
			for i := range entries {
				id := fmt.Sprintf("e%05d", i)
				es = append(es, cache.Entry{ID: id, SPIFFEID: spiffeid.RequireFromPath(td, "/"+id), Selectors: []string{"unix:uid:1"}, X509TTL: time.Hour})
				ids = append(ids, id)
			}
			c.ApplyEntries(true, es, nil)
			key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			ca := &chunkCA{t: t, cache: c, key: key, failCall: tt.failCall}
			var keys atomic.Int64
			m := New(Config{Cache: c, CA: ca, Scheduler: nopScheduler{}, Clock: clk,
				NewKey: func() (crypto.Signer, error) {
					if keys.Add(1) == int64(tt.failKey) {
						return nil, errors.New("no entropy")
					}
					return key, nil
				}})
			err = m.mint(context.Background(), ids)
			if (err == nil) != (tt.wantErr == "") || (err != nil && !errorContains(err, tt.wantErr)) {
				t.Errorf("mint error = %v, want %q", err, tt.wantErr)
			}
			if !slices.Equal(ca.calls, tt.wantCalls) {
				t.Errorf("CA calls (requests, SVIDs already cached) = %v, want %v", ca.calls, tt.wantCalls)
			}
			if held, _ := c.Stats(); held != tt.wantHeld {
				t.Errorf("cache holds %d SVIDs, want %d", held, tt.wantHeld)
			}
			if queued := len(m.take()); queued != tt.wantQueued {
				t.Errorf("%d entries queued again, want %d", queued, tt.wantQueued)
			}
		})
	}
}

func errorContains(err error, s string) bool {
	return err != nil && strings.Contains(err.Error(), s)
}
