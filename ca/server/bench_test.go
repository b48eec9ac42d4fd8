package server

import (
	"context"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc/codes"

	"github.com/signet-mesh/signet/ca/store/etcdstore/etcdtest"
	nodev1 "github.com/signet-mesh/signet/proto/signet/node/v1"
)

// BenchmarkMintRPC is the node API's minting throughput: one CSR per call
// through gRPC over TLS on loopback, 64 concurrent callers, every issued
// certificate committed durably to bbolt before it is returned (group
// commit shares one fsync among concurrent callers). Compare with
// BenchmarkMintInProcess in package ca, the in-process ceiling.
func BenchmarkMintRPC(b *testing.B) { benchmarkMintRPC(b, false) }

// BenchmarkMintRPCNoAudit is BenchmarkMintRPC with the audit records of
// issuance switched off, to measure what auditing costs (target: under
// 10%). Run both in one go:
//
//	go test -run '^$' -bench 'MintRPC' -count 5 ./ca/server/
func BenchmarkMintRPCNoAudit(b *testing.B) { benchmarkMintRPC(b, true) }

// BenchmarkMintRPCEtcd is BenchmarkMintRPC with the CA on etcd: a
// 3-member cluster on loopback, in this process, with fsync on as in
// production (issue 14's target: at least half of bbolt's throughput).
// Compare in one run:
//
//	go test -run '^$' -bench 'MintRPC(Etcd)?$' -count 5 ./ca/server/
func BenchmarkMintRPCEtcd(b *testing.B) {
	cluster, err := etcdtest.Start(b.TempDir(), 3, true)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(cluster.Close)
	benchmarkMintRPCWith(b, testOpts{nodeRate: -1, etcd: &EtcdConfig{Endpoints: cluster.Endpoints()}, serverName: "bench"})
}

func benchmarkMintRPC(b *testing.B, noAudit bool) {
	benchmarkMintRPCWith(b, testOpts{nodeRate: -1, noAudit: noAudit})
}

// benchCallers is the number of concurrent callers of the mint
// benchmarks: a fleet's worth of agents minting at once.
const benchCallers = 64

func benchmarkMintRPCWith(b *testing.B, o testOpts) {
	// Admission is the fleet's guard, not what is measured here: let
	// every caller in.
	o.admission.MaxMintBatches = benchCallers
	// Metrics on, as a production CA runs; they also tell how many calls
	// each group commit (one fsync) carried.
	o.metrics = NewMetrics(prometheus.NewRegistry())
	c := startCA(b, o)
	n := c.attest(b, "bench")
	entry := c.entry(b, "spiffe://example.org/bench", n.id.String())
	req := &nodev1.MintX509SVIDsRequest{Params: []*nodev1.MintX509SVIDParams{{EntryId: entry, Csr: csr(b, newKey(b))}}}
	// Warm the connection.
	if _, err := n.client.MintX509SVIDs(context.Background(), req); err != nil {
		b.Fatal(err)
	}
	b.SetParallelism(max(1, benchCallers/runtime.GOMAXPROCS(0)))
	var ru0, ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	commits0 := groupCommits(b, o.metrics)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := n.client.MintX509SVIDs(context.Background(), req)
			if err != nil {
				b.Error(err)
				return
			}
			if codes.Code(resp.Results[0].Code) != codes.OK {
				b.Errorf("mint failed: %s", resp.Results[0].Message)
				return
			}
		}
	})
	b.StopTimer()
	// CPU use tells a CPU-bound run from one waiting on commits.
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
	b.ReportMetric(cpu.Seconds()/b.Elapsed().Seconds(), "cpus")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/op")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "svids/s")
	if n := groupCommits(b, o.metrics) - commits0; n > 0 {
		b.ReportMetric(float64(b.N)/float64(n), "svids/commit")
	}
}

// groupCommits is the number of group commits m has counted.
func groupCommits(tb testing.TB, m *Metrics) uint64 {
	tb.Helper()
	var d dto.Metric
	if err := m.groupCommit.Write(&d); err != nil {
		tb.Fatal(err)
	}
	return d.GetHistogram().GetSampleCount()
}
