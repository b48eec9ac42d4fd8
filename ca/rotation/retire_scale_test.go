package rotation_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/signet-mesh/signet/ca/rotation"
	"github.com/signet-mesh/signet/ca/store"
	"github.com/signet-mesh/signet/internal/clock"
)

// TestRetireCheckScales: `root retire` decides from the current SVID of
// each entry and node, so on a store that has recorded a million SVIDs
// (a fleet's history) its check still answers in well under 100 ms.
//
// Under the race detector, writing a million records takes about a minute
// on two cores, so the test writes a tenth of them there; the check reads
// the same thousand current SVIDs either way. BenchmarkRetireCheck1M
// measures the million-record case in any build.
func TestRetireCheckScales(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a million SVID records")
	}
	t.Parallel()
	records := 1_000_000
	if raceEnabled {
		records = 100_000
	}
	limit := 100 * time.Millisecond
	if raceEnabled {
		limit *= 4 // the detector slows the decoding of every record read
	}
	e := newEnv(t)
	in := e.startMemKeys(t, newMemKeys(), rotation.Config{})
	start := time.Now()
	recordHistory(t, in, e.clock.Now(), records)
	t.Logf("recorded %d SVIDs in %v", records, time.Since(start).Round(time.Millisecond))
	took := retireCheck(t, in)
	t.Logf("retire check over %d SVID records: %v", records, took)
	if took > limit {
		t.Errorf("retire check took %v on %d SVID records, want under %v", took, records, limit)
	}
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
