package rotation_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signet-mesh/signet/ca/rotation"
	"github.com/signet-mesh/signet/ca/store"
	"github.com/signet-mesh/signet/internal/clock"
)

// TestRetireCheckScales: `root retire` decides from the current SVID of
// each entry and node, so its cost grows with the registry, not with the
// SVIDs ever issued. The test counts the SVID records the check reads on a
// store with a long history: one per entry and node, whatever the history.
// (BenchmarkRetireCheck1M measures the time on a million records.)
func TestRetireCheckScales(t *testing.T) {
	t.Parallel()
	const records = 20 * scaleEntries // twenty SVIDs per entry
	e := newEnv(t)
	var reads atomic.Int64
	in := e.startMemKeysWrapped(t, newMemKeys(), rotation.Config{}, func(s store.Store) store.Store {
		return svidReadCounter{Store: s, reads: &reads}
	})
	recordHistory(t, in, e.clock.Now(), records)
	reads.Store(0)
	retireCheck(t, in)
	if got, most := reads.Load(), int64(scaleEntries+2*scaleNodes); got > most {
		t.Errorf("retire check read %d SVID records of %d, want at most %d (one per entry and node)", got, records, most)
	}
}

// svidReadCounter counts the SVID records its transactions hand out.
type svidReadCounter struct {
	store.Store
	reads *atomic.Int64
}

func (s svidReadCounter) View(ctx context.Context, fn func(store.Tx) error) error {
	return s.Store.View(ctx, func(tx store.Tx) error { return fn(countingTx{tx, s.reads}) })
}

func (s svidReadCounter) Update(ctx context.Context, fn func(store.Tx) error) error {
	return s.Store.Update(ctx, func(tx store.Tx) error { return fn(countingTx{tx, s.reads}) })
}

func (s svidReadCounter) Batch(ctx context.Context, fn func(store.Tx) error) error {
	return s.Store.Batch(ctx, func(tx store.Tx) error { return fn(countingTx{tx, s.reads}) })
}

type countingTx struct {
	store.Tx
	reads *atomic.Int64
}

func (tx countingTx) count(fn func(*store.SVIDRecord) error) func(*store.SVIDRecord) error {
	return func(r *store.SVIDRecord) error { tx.reads.Add(1); return fn(r) }
}

func (tx countingTx) ForEachSVID(fn func(*store.SVIDRecord) error) error {
	return tx.Tx.ForEachSVID(tx.count(fn))
}

func (tx countingTx) ForEachCurrentSVID(fn func(*store.SVIDRecord) error) error {
	return tx.Tx.ForEachCurrentSVID(tx.count(fn))
}

func (tx countingTx) GetSVID(serial string) (*store.SVIDRecord, error) {
	tx.reads.Add(1)
	return tx.Tx.GetSVID(serial)
}

// BenchmarkRetireCheck1M is the retire check on a store that recorded a
// million SVIDs (ns/op is one check).
func BenchmarkRetireCheck1M(b *testing.B) {
	e := &env{dir: b.TempDir(), clock: clock.NewFake(time.Now().Truncate(time.Second))}
	in := e.startMemKeys(b, newMemKeys(), rotation.Config{})
	recordHistory(b, in, e.clock.Now(), 1_000_000)
	b.ResetTimer()
	for b.Loop() {
		retireCheck(b, in)
	}
}

const (
	scaleNodes   = 10
	scaleEntries = 1000 // 100 per node
)

// recordHistory registers scaleEntries entries on scaleNodes nodes and
// records n SVIDs by the active intermediate: each entry's history, one
// an hour going back, the newest still valid.
func recordHistory(tb testing.TB, in *instance, now time.Time, records int) {
	tb.Helper()
	const (
		nodes   = scaleNodes
		entries = scaleEntries
		perTx   = 100_000
	)
	ctx := context.Background()
	oldInter := in.ca.X509Authority().ID
	nodeID := func(n int) string { return fmt.Sprintf("spiffe://example.org/signet/agent/join_token/n%d", n) }
	err := in.store.Update(ctx, func(tx store.Tx) error {
		for n := range nodes {
			if err := tx.PutNode(&store.Node{SPIFFEID: nodeID(n), Attestor: "join_token", AttestedAt: now}); err != nil {
				return err
			}
		}
		for i := range entries {
			if err := tx.CreateEntry(&store.Entry{ID: fmt.Sprintf("e%04d", i), SPIFFEID: fmt.Sprintf("spiffe://example.org/w%d", i),
				ParentID: nodeID(i % nodes), Selectors: []string{fmt.Sprintf("unix:uid:%d", i)}, X509TTL: time.Hour}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	// SVIDs by the active intermediate: each entry's history,
	// one an hour going back, the newest still valid.
	ids, entryIDs := make([]string, entries), make([]string, entries)
	for i := range entries {
		ids[i], entryIDs[i] = fmt.Sprintf("spiffe://example.org/w%d", i), fmt.Sprintf("e%04d", i)
	}
	nodeIDs := make([]string, nodes)
	for n := range nodes {
		nodeIDs[n] = nodeID(n)
	}
	for base := 0; base < records; base += perTx {
		err := in.store.Update(ctx, func(tx store.Tx) error {
			for i := base; i < min(base+perTx, records); i++ {
				entry, age := i%entries, records/entries-1-i/entries
				nb := now.Add(-time.Duration(age) * time.Hour)
				if err := tx.PutSVID(&store.SVIDRecord{Serial: serial(i), SPIFFEID: ids[entry],
					NodeID: nodeIDs[entry%nodes], EntryID: entryIDs[entry], AuthorityID: oldInter, NotBefore: nb, NotAfter: nb.Add(time.Hour + time.Minute)}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
}

// retireCheck activates a new root and times `root retire` of the old
// one, which every entry's current SVID still chains to: refused.
func retireCheck(tb testing.TB, in *instance) time.Duration {
	tb.Helper()
	ctx := context.Background()
	if len(rootsOf(authorities(tb, in.store), store.StateRetiring)) == 0 {
		prep, err := in.m.PrepareRoot(ctx, rotation.PrepareParams{})
		if err != nil {
			tb.Fatal(err)
		}
		if _, err := in.m.ActivateRoot(ctx, rotation.ActivateParams{ID: prep.Authority.ID}); err != nil {
			tb.Fatal(err)
		}
	}
	begin := time.Now()
	_, err := in.m.RetireRoot(ctx, rotation.RetireParams{})
	took := time.Since(begin)
	if want := fmt.Sprintf("%d current SVIDs still chain to root", scaleEntries); !errors.Is(err, rotation.ErrUnsafe) || !strings.Contains(fmt.Sprint(err), want) {
		tb.Fatalf("RetireRoot = %v, want ErrUnsafe containing %q", err, want)
	}
	return took
}

// serial is a 32-digit hex serial for n, cheaper than fmt's.
func serial(n int) string {
	h := strconv.FormatUint(uint64(n), 16)
	return strings.Repeat("0", 32-len(h)) + h
}
