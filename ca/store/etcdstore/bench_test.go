package etcdstore_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signet-mesh/signet/ca/store"
	"github.com/signet-mesh/signet/ca/store/etcdstore"
	"github.com/signet-mesh/signet/ca/store/etcdstore/etcdtest"
)

// benchCluster is a 3-member etcd on loopback with fsync on, as
// production runs it, started on first use and stopped by TestMain.
var (
	benchOnce    sync.Once
	benchCluster *etcdtest.Cluster
	benchErr     error
	benchDir     string
)

func startBenchCluster(b *testing.B) *etcdtest.Cluster {
	benchOnce.Do(func() {
		benchDir, benchErr = os.MkdirTemp("", "etcdstore-bench-")
		if benchErr == nil {
			benchCluster, benchErr = etcdtest.Start(benchDir, 3, true)
		}
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchCluster
}

func stopBenchCluster() {
	if benchCluster != nil {
		benchCluster.Close()
	}
	if benchDir != "" {
		os.RemoveAll(benchDir)
	}
}

// BenchmarkMintBatch is the store's part of minting: 64 concurrent
// callers, each Batch recording one issued SVID in the index and its
// audit record after the head, which is what the node API commits per
// certificate. bolt is one bbolt file with fsync; etcd3 is a 3-member
// etcd cluster on loopback, every member with fsync, in this process.
// Compare their svids/s in one run:
//
//	go test -run '^$' -bench MintBatch -count 3 ./ca/store/etcdstore/
func BenchmarkMintBatch(b *testing.B) {
	b.Run("bolt", func(b *testing.B) {
		st, err := store.Open(filepath.Join(b.TempDir(), "signet.db"), store.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		benchmarkMint(b, st)
	})
	b.Run("etcd3", func(b *testing.B) {
		c := startBenchCluster(b)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		st, err := etcdstore.Open(ctx, etcdstore.Options{Endpoints: c.Endpoints(), Prefix: newPrefix(b)})
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		benchmarkMint(b, st)
	})
}

func benchmarkMint(b *testing.B, st store.Store) {
	var serial atomic.Uint64
	detail := func(n int) string { return fmt.Sprintf("%064x", n) }
	mint := func() error {
		n := serial.Add(1)
		now := time.Now()
		rec := &store.SVIDRecord{
			Serial:      fmt.Sprintf("%032x", n),
			SPIFFEID:    "spiffe://example.org/ns/payments/sa/checkout",
			NodeID:      "spiffe://example.org/signet/agent/join_token/node-0001",
			EntryID:     "0f8e2c4a-entry",
			AuthorityID: "intermediate-2030-01-02",
			NotBefore:   now.Add(-time.Minute),
			NotAfter:    now.Add(time.Hour),
		}
		return st.Batch(context.Background(), func(tx store.Tx) error {
			if err := tx.PutSVID(rec); err != nil {
				return err
			}
			seq, hash, err := tx.AuditHead()
			if err != nil {
				return err
			}
			return tx.AppendAudit(&store.AuditRecord{
				Seq: seq + 1, Time: now, Type: "svid.issued", Outcome: "success",
				Actor: rec.NodeID, Subject: rec.SPIFFEID,
				Details: map[string]string{
					"serial": rec.Serial, "entry_id": rec.EntryID, "authority_id": rec.AuthorityID,
					"not_after": rec.NotAfter.UTC().Format(time.RFC3339), "csr_sha256": detail(int(n)),
				},
				PrevHash: hash, Hash: detail(int(seq + 1)),
			})
		})
	}
	if err := mint(); err != nil { // warm up
		b.Fatal(err)
	}
	b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := mint(); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "svids/s")
}
