package sync_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"slices"
	"strings"
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
	misordered []string // ordering violations seen by the callbacks
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
func (r *recorder) ApplyGeneration(gen int64, _ time.Duration) {
	r.mu.Lock()
	r.gens = append(r.gens, gen)
	r.mu.Unlock()
}

func (r *recorder) snapshot() recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	return recorded{queued: slices.Clone(r.queued), reachable: r.reachable, forgotten: slices.Clone(r.forgotten),
		gens: slices.Clone(r.gens), bundles: r.bundles, applied: r.applied, policySets: r.policySets,
		misordered: slices.Clone(r.misordered)}
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
		// The node trusts a bundle before the cache serves its revision
		// (agent/report reads that revision, then stores what the node
		// trusts), and the CA hears of it only after both.
		BundleChanged: func(b *x509bundle.Bundle) {
			rec.mu.Lock()
			defer rec.mu.Unlock()
			rec.bundles++
			if served := ch.Lookup(nil).Bundle; served != nil && served.Equal(b) {
				rec.misordered = append(rec.misordered, "a bundle served by the cache before the node trusted it")
			}
		},
		BundleApplied: func(spread time.Duration) {
			rec.mu.Lock()
			defer rec.mu.Unlock()
			rec.applied++
			// The CA's reconnect_spread_ms: one connected agent's share
			// of its reconnect rate, a few ms.
			if spread <= 0 || spread > time.Second {
				rec.misordered = append(rec.misordered, fmt.Sprintf("a bundle reported with a spread of %s, not the CA's", spread))
			}
			if rec.applied > rec.bundles {
				rec.misordered = append(rec.misordered, "a bundle reported before the node trusted it")
			}
			if ch.Lookup(nil).Bundle == nil {
				rec.misordered = append(rec.misordered, "a bundle reported before the cache served it")
			}
		},
		Policies: func(*nodev1.MTLSPolicies) { rec.mu.Lock(); rec.policySets++; rec.mu.Unlock() },
		Backoff:  backoff.Config{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond},
	})
	done := make(chan error, 1)
	go func() { done <- syncer.Run(ctx) }()

	waitFor(t, "the first sync", func() bool { return len(ch.Entries()) == 1 && ch.Ready() })
	got := rec.snapshot()
	if len(got.misordered) > 0 {
		t.Fatalf("bundle handed on out of order: %v", got.misordered)
	}
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

// TestSyncerLargeRegistry: a node whose entries add up to well over
// gRPC's 4 MiB message limit (here over 16 MiB, with SPIFFE IDs near their
// 2048-byte limit) gets them all through a real CA's stream, split across
// messages and applied as one update, and again on a new stream, as after
// an agent restart (issue 16).
func TestSyncerLargeRegistry(t *testing.T) {
	if testing.Short() {
		t.Skip("creates 16 MiB of entries")
	}
	s := testserver.Start(t)
	tok := s.JoinToken(t, "node1")
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
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

	const entries, perCall = 8400, 1200 // 8400 x ~2 KiB = ~17 MiB
	long := strings.Repeat("a", 1990)
	total := 0
	for n := 0; n < entries; n += perCall {
		req := &adminv1.CreateEntriesRequest{}
		for i := n; i < n+perCall; i++ {
			id := fmt.Sprintf("spiffe://example.org/w%05d/%s", i, long)
			total += len(id)
			req.Entries = append(req.Entries, &adminv1.Entry{SpiffeId: id, ParentId: svid.ID.String(), Selectors: []string{fmt.Sprintf("unix:uid:%d", i)}})
		}
		if _, err := s.Admin.CreateEntries(ctx, req); err != nil {
			t.Fatalf("creating entries: %v", err)
		}
	}
	if total <= 16<<20 {
		t.Fatalf("the entries' SPIFFE IDs add up to %d bytes, want over 16 MiB", total)
	}

	for _, run := range []string{"first start", "restart"} {
		rec := &recorder{}
		ch := cache.New(cache.Config{TrustDomain: testserver.TrustDomain})
		syncer := agentsync.New(agentsync.Config{
			TrustDomain: testserver.TrustDomain, Cache: ch, CA: c, Minter: rec, Scheduler: rec,
			BundleChanged: func(*x509bundle.Bundle) {},
			BundleApplied: func(time.Duration) {},
			Policies:      func(*nodev1.MTLSPolicies) {},
			Backoff:       backoff.Config{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond},
		})
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- syncer.Run(runCtx) }()
		waitFor(t, run+": every entry synced", func() bool {
			return ch.Ready() && len(ch.Entries()) == entries && distinct(rec.snapshot().queued) == entries
		})
		if got := rec.snapshot(); got.reachable != 1 {
			t.Errorf("%s: CA reachable %d times; want 1 (one stream, no reconnection)", run, got.reachable)
		}
		stop()
		if err := <-done; err != nil {
			t.Fatalf("%s: Run: %v", run, err)
		}
	}
}

// distinct counts the distinct strings of ids.
func distinct(ids []string) int {
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		seen[id] = true
	}
	return len(seen)
}

// TestSyncerSpreadsReconnection: when its stream breaks, the agent waits
// a random point of the window the CA asked for (reconnect_spread_ms,
// which grows with the connected fleet) before its first attempt, instead
// of coming back at once with the rest of the fleet.
func TestSyncerSpreadsReconnection(t *testing.T) {
	// One agent at half an agent per second: a 2 s window.
	s := testserver.StartWith(t, testserver.Options{ReconnectRate: 0.5})
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
	rec := &recorder{}
	ch := cache.New(cache.Config{TrustDomain: testserver.TrustDomain})
	var mu gosync.Mutex
	var delays []time.Duration
	syncer := agentsync.New(agentsync.Config{
		TrustDomain: testserver.TrustDomain, Cache: ch, CA: c, Minter: rec, Scheduler: rec,
		BundleChanged: func(*x509bundle.Bundle) {},
		BundleApplied: func(time.Duration) {},
		Policies:      func(*nodev1.MTLSPolicies) {},
		Backoff:       backoff.Config{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond, Rand: func() float64 { return 0.75 }},
		Metrics: agentsync.Metrics{Backoff: func(d time.Duration) {
			mu.Lock()
			delays = append(delays, d)
			mu.Unlock()
		}},
	})
	done := make(chan error, 1)
	go func() { done <- syncer.Run(ctx) }()
	waitFor(t, "the first sync", func() bool { return ch.Ready() })
	s.Stop(t)
	waitFor(t, "a retry after the CA stopped", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, d := range delays {
			if d > 0 {
				return true
			}
		}
		return false
	})
	mu.Lock()
	var first time.Duration
	for _, d := range delays {
		if d > 0 {
			first = d
			break
		}
	}
	mu.Unlock()
	if want := 1500 * time.Millisecond; first != want {
		t.Errorf("first reconnection after %s, want %s (0.75 of the CA's 2 s window, not the 50 ms backoff)", first, want)
	}
	cancel()
	<-done
}
