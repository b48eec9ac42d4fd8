package store

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/signet-mesh/signet/internal/clock"
)

// TestCommitsReleasePages: commits give back the store map's pages at
// most every pageReleaseEvery (bolt_pages.go), through both Update and
// Batch, and every record still reads back whole afterwards: a released
// page faults back in from the page cache.
func TestCommitsReleasePages(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	st, err := Open(filepath.Join(t.TempDir(), "signet.db"), Options{NoSync: true, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	var want []*Entry
	create := func(i int) func(Tx) error {
		e := &Entry{ID: fmt.Sprintf("e%04d", i), SPIFFEID: fmt.Sprintf("spiffe://example.org/w/%d", i), ParentID: "spiffe://example.org/n1",
			Selectors: []string{"unix:uid:1000"}, X509TTL: time.Hour, CreatedAt: clk.Now()}
		want = append(want, e)
		return func(tx Tx) error {
			if _, err := tx.NextRevision(); err != nil {
				return err
			}
			return tx.CreateEntry(e)
		}
	}
	steps := []struct {
		name    string
		advance time.Duration
		batch   bool
		want    int64 // releases so far
	}{
		{name: "first commit", want: 1},
		{name: "within the interval", advance: time.Second, want: 1},
		{name: "batch within the interval", advance: time.Second, batch: true, want: 1},
		{name: "interval passed", advance: pageReleaseEvery, want: 2},
		{name: "batch after the interval", advance: pageReleaseEvery, batch: true, want: 3},
	}
	for i, s := range steps {
		clk.Advance(s.advance)
		for j := range 50 {
			fn := create(i*100 + j)
			if s.batch {
				err = st.Batch(ctx, fn)
			} else {
				err = st.Update(ctx, fn)
			}
			if err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
		}
		if got := st.pageReleases.Load(); got != s.want {
			t.Errorf("%s: %d page releases, want %d", s.name, got, s.want)
		}
	}
	err = st.View(ctx, func(tx Tx) error {
		got, err := tx.ListEntries(EntryFilter{ParentID: "spiffe://example.org/n1"})
		if err != nil {
			return err
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("entries after page releases (-want +got):\n%s", diff)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
