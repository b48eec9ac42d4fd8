package sync_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"slices"
	gosync "sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"

	"github.com/signet-mesh/signet/agent/cache"
	"github.com/signet-mesh/signet/agent/client"
	agentsync "github.com/signet-mesh/signet/agent/sync"
	"github.com/signet-mesh/signet/internal/backoff"
	"github.com/signet-mesh/signet/internal/nodeapi"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
	nodev1 "github.com/signet-mesh/signet/proto/signet/node/v1"
	"github.com/signet-mesh/signet/test/testserver"
)

// recorder stands in for the other tasks: it records what the Syncer hands
// them.
type recorder struct {
	mu gosync.Mutex
	recorded
}

// recorded is what a recorder holds.
type recorded struct {
	queued     []string
	reachable  int
	forgotten  []string
	gens       []int64
	bundles    int
	applied    int
	policySets int
}

func (r *recorder) Queue(ids ...string) {
	r.mu.Lock()
	r.queued = append(r.queued, ids...)
	r.mu.Unlock()
}
func (r *recorder) CAReachable() { r.mu.Lock(); r.reachable++; r.mu.Unlock() }
func (r *recorder) Forget(ids ...string) {
	r.mu.Lock()
	r.forgotten = append(r.forgotten, ids...)
	r.mu.Unlock()
}
func (r *recorder) ApplyGeneration(gen int64) {
	r.mu.Lock()
	r.gens = append(r.gens, gen)
	r.mu.Unlock()
}

func (r *recorder) snapshot() recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	return recorded{queued: slices.Clone(r.queued), reachable: r.reachable, forgotten: slices.Clone(r.forgotten),
		gens: slices.Clone(r.gens), bundles: r.bundles, applied: r.applied, policySets: r.policySets}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSyncer follows a real CA's stream: entries reach the cache and the
// mint queue, deletions reach the cache and the schedule, the bundle
// reaches the cache and its listeners; an evicted node ends Run with the
// rejection.
func TestSyncer(t *testing.T) {
	s := testserver.Start(t)
	tok := s.JoinToken(t, "node1")
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	svid, b, err := client.Attest(ctx, client.AttestParams{Address: s.Addr, TrustDomain: testserver.TrustDomain, Bootstrap: s.Roots(t), JoinToken: tok.GetToken(), Key: key})
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := client.BundleFromProto(testserver.TrustDomain, b)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Dial(s.Addr, testserver.TrustDomain, client.NewSource(svid, bundle))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	web := s.Entry(t, svid.ID.String(), "spiffe://example.org/web", "unix:uid:1000")

	rec := &recorder{}
	ch := cache.New(cache.Config{TrustDomain: testserver.TrustDomain})
	syncer := agentsync.New(agentsync.Config{
		TrustDomain: testserver.TrustDomain, Cache: ch, CA: c, Minter: rec, Scheduler: rec,
		BundleChanged: func(*x509bundle.Bundle) { rec.mu.Lock(); rec.bundles++; rec.mu.Unlock() },
		BundleApplied: func() { rec.mu.Lock(); rec.applied++; rec.mu.Unlock() },
		Policies:      func(*nodev1.MTLSPolicies) { rec.mu.Lock(); rec.policySets++; rec.mu.Unlock() },
		Backoff:       backoff.Config{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond},
	})
	done := make(chan error, 1)
	go func() { done <- syncer.Run(ctx) }()

	waitFor(t, "the first sync", func() bool { return len(ch.Entries()) == 1 && ch.Ready() })
	got := rec.snapshot()
	if !slices.Contains(got.queued, web) || got.reachable != 1 || got.bundles != 1 || got.applied != 1 || got.policySets != 1 || len(got.gens) != 1 {
		t.Fatalf("after the first message: %+v; want the entry queued, the CA reachable once, one bundle, one policy set, one generation", got)
	}

	api := s.Entry(t, svid.ID.String(), "spiffe://example.org/api", "unix:uid:1001")
	waitFor(t, "a new entry", func() bool { return slices.Contains(rec.snapshot().queued, api) })
	if _, err := s.Admin.DeleteEntry(ctx, &adminv1.DeleteEntryRequest{Id: web}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a deleted entry", func() bool { return slices.Contains(rec.snapshot().forgotten, web) })
	if es := ch.Entries(); len(es) != 1 || es[0].ID != api {
		t.Errorf("cache entries %v, want only %s", es, api)
	}

	s.Evict(t, svid.ID.String())
	select {
	case err := <-done:
		if reason, ok := nodeapi.NodeRejection(err); !ok || reason != nodeapi.ReasonEvicted {
			t.Fatalf("Run after eviction = %v, want the node rejection", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run went on after the node was evicted")
	}
}
