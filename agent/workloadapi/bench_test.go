package workloadapi_test

import (
	"context"
	"runtime"
	"testing"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
)

// BenchmarkX509SVIDStream opens b.N FetchX509SVID streams from one client
// connection and reports the heap each open stream holds ("B/stream"). The
// figure includes the in-process client's side of each stream, so it is an
// upper bound on what the agent spends per workload stream.
func BenchmarkX509SVIDStream(b *testing.B) {
	e := newEnv(b, nil)
	e.mint(b, e.register(b, "e1", "/web", "", self))
	e.ready(b)
	raw := e.raw(b)
	ctx, cancel := context.WithCancel(withHeader(context.Background()))
	defer cancel()

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	streams := make([]workload.SpiffeWorkloadAPI_FetchX509SVIDClient, 0, b.N)
	for i := 0; i < b.N; i++ {
		s, err := raw.FetchX509SVID(ctx, &workload.X509SVIDRequest{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Recv(); err != nil {
			b.Fatal(err)
		}
		streams = append(streams, s)
	}
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(b.N), "B/stream")
	runtime.KeepAlive(streams)
}
