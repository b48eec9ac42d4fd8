package server

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	nodev1 "github.com/signet-mesh/signet/proto/signet/node/v1"
)

// BenchmarkIdleAgentMemory reports what an idle connected agent costs in
// this process: its mTLS connection and entry sync stream, once the GC
// has shrunk the stacks the first sync grew. Client and server share the
// process, so the figures hold both ends; they are for comparing one
// change with the next (signet bench fleet measures the server alone).
// Run it with -benchtime=1x: every run connects the same fleet.
func BenchmarkIdleAgentMemory(b *testing.B) {
	const agents, workloads = 200, 10
	c := startCA(b, testOpts{noSync: true})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	nodes := make([]*node, agents)
	for i := range nodes {
		nodes[i] = c.attest(b, fmt.Sprintf("mem-%03d", i))
		for w := range workloads {
			c.entry(b, fmt.Sprintf("spiffe://example.org/mem/%d/%d", i, w), nodes[i].id.String())
		}
	}
	before := settledMemStats()
	for _, n := range nodes {
		stream, err := n.client.SyncEntries(ctx, &nodev1.SyncEntriesRequest{})
		if err != nil {
			b.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			b.Fatal(err)
		}
		if len(resp.GetEntries()) != workloads {
			b.Fatalf("first sync has %d entries, want %d", len(resp.GetEntries()), workloads)
		}
		go func() {
			for {
				if _, err := stream.Recv(); err != nil {
					return
				}
			}
		}()
	}
	after := settledMemStats()
	for b.Loop() {
	}
	b.ReportMetric(float64(int64(after.StackInuse)-int64(before.StackInuse))/agents, "stack-B/agent")
	b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/agents, "heap-B/agent")
}

// settledMemStats reads the memory statistics after a few collections:
// each may halve a goroutine stack that is mostly unused.
func settledMemStats() runtime.MemStats {
	for range 4 {
		runtime.GC()
		time.Sleep(20 * time.Millisecond)
	}
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m
}
