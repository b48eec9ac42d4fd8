package cache_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/signet-mesh/signet/agent/cache"
)

// BenchmarkSetSVID measures one renewal on a busy node: 1000 entries over
// 100 uids, and 5000 subscribers with 1000 distinct selector sets. Only the
// subscribers matching the renewed entry's uid are woken.
func BenchmarkSetSVID(b *testing.B) {
	c, _ := newCache(b)
	var entries []cache.Entry
	for i := 0; i < 1000; i++ {
		entries = append(entries, entry(fmt.Sprintf("e%04d", i), fmt.Sprintf("/w%d", i), fmt.Sprintf("unix:uid:%d", i%100)))
	}
	c.ApplyEntries(true, entries, nil)
	for _, e := range entries {
		if err := c.SetSVID(e.ID, svid(e.SPIFFEID, 1, start.Add(time.Hour))); err != nil {
			b.Fatal(err)
		}
	}
	if err := c.SetBundle(bundle(1), nil, 1); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < 5000; i++ {
		sub := c.Subscribe([]string{fmt.Sprintf("unix:uid:%d", i%100), fmt.Sprintf("unix:path:/bin/%d", i%1000)})
		defer sub.Close()
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e := entries[i%len(entries)]
		if err := c.SetSVID(e.ID, svid(e.SPIFFEID, int64(i), start.Add(time.Hour))); err != nil {
			b.Fatal(err)
		}
	}
}
