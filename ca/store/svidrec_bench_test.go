package store_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/signet-mesh/signet/ca/store"
)

// issuedSVID is an SVID index record as the CA writes one per workload
// SVID: a 128-bit serial, an entry ID of the admin API's form, a 1 hour
// TTL, times to the second.
func issuedSVID(i int) *store.SVIDRecord {
	nb := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC).Add(time.Duration(i) * time.Second)
	return &store.SVIDRecord{Serial: fmt.Sprintf("%032x", 0x5eed0000+i), SPIFFEID: fmt.Sprintf("spiffe://example.org/ns/default/sa/w%d", i%10),
		NodeID: fmt.Sprintf("spiffe://example.org/signet/agent/join_token/node-%05d", i/10), EntryID: fmt.Sprintf("0190e6c8-%04x-7000-8000-%012x", i%0x10000, i),
		AuthorityID: "7cf32b56e6b2158d", NotBefore: nb, NotAfter: nb.Add(time.Hour)}
}

// BenchmarkSVIDIndex measures the SVID index's cost per SVID in CPU and
// allocations, without fsync: recording SVIDs as the CA does (100 a
// transaction, as a group commit carries them under load) and walking
// the index (svid list, pruning, GetSVID).
func BenchmarkSVIDIndex(b *testing.B) {
	open := func(b *testing.B) *store.Bolt {
		st, err := store.Open(filepath.Join(b.TempDir(), "signet.db"), store.Options{NoSync: true})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { st.Close() })
		return st
	}
	put := func(b *testing.B, st *store.Bolt, from, n int) {
		for i := from; i < from+n; i += 100 {
			err := st.Update(context.Background(), func(tx store.Tx) error {
				for j := i; j < min(i+100, from+n); j++ {
					if err := tx.PutSVID(issuedSVID(j)); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("Put", func(b *testing.B) {
		st := open(b)
		b.ReportAllocs()
		b.ResetTimer()
		put(b, st, 0, b.N)
	})
	b.Run("Walk", func(b *testing.B) {
		st := open(b)
		const n = 10000
		put(b, st, 0, n)
		b.ReportAllocs()
		b.ResetTimer()
		walked := 0
		for walked < b.N {
			err := st.View(context.Background(), func(tx store.Tx) error {
				return tx.ForEachSVID(func(*store.SVIDRecord) error {
					walked++
					if walked == b.N {
						return errStop
					}
					return nil
				})
			})
			if err != nil && !errors.Is(err, errStop) {
				b.Fatal(err)
			}
		}
	})
}

var errStop = errors.New("stop")
