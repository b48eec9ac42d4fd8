package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/signet-mesh/signet/ca/store/etcdstore/etcdtest"
)

// Replica figures, measured on real processes (issue 14's targets: p99
// under 2 s for both):
//
//	go test -run '^$' -bench ReplicaFailover -benchtime 3x ./test/e2e/
//
// BenchmarkReplicaFailover runs, per iteration, a 3-member etcd in this
// process, two `signet server` replicas on it and one agent that lists
// both and is connected to r1, with a workload holding a Workload API
// stream open. It reports:
//   - propagation: from starting `signet entry create` through r2 until
//     the stream served by r1's agent holds the new SVID (20 samples per
//     iteration; the CLI's own start is included);
//   - failover: from kill -9 of r1 until `signet node list` through r2
//     shows the agent connected to r2 (one sample per iteration);
//   - served-after-kill: from that kill until an entry created through r2
//     right after it is on the workload's stream.
func BenchmarkReplicaFailover(b *testing.B) {
	signetBinary(b)
	uid := "unix:uid:" + strconv.Itoa(os.Getuid())
	var propagation, failover, served []time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		cluster := etcdtest.New(b, 3)
		prefix := fmt.Sprintf("/bench-failover-%d", i)
		r1 := startServer(b, etcdFlags(cluster, prefix, "r1")...)
		waitFor(b, 10*time.Second, "r1 leading", func() bool { return strings.Contains(r1.out.String(), "leading: this replica") })
		r2 := unstartedServer(b)
		a := startAgentTB(b, r1, fmt.Sprintf("bench-%d", i), "--server-address", r2.addr)
		r2.restart(b, etcdFlags(cluster, prefix, "r2")...)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		conn := dialAgent(b, a)
		a.entryForTB(b, "spiffe://example.org/bench/first")
		var next func() (int, error)
		waitFor(b, 30*time.Second, "the first SVID", func() bool {
			next = openStream(b, ctx, conn)
			n, err := next()
			return err == nil && n == 1
		})
		have := 1
		// served times one entry, created through r, until the stream
		// holds it.
		create := func(r *testServer, id string) time.Duration {
			begin := time.Now()
			r.cli(b, "entry", "create", "--spiffe-id", id, "--parent-id", a.nodeID, "--selector", uid)
			for {
				n, err := next()
				if err != nil {
					b.Fatalf("workload stream: %v", err)
				}
				if n == have+1 {
					have = n
					return time.Since(begin)
				}
			}
		}
		b.StartTimer()
		for j := range 20 {
			propagation = append(propagation, create(r2, fmt.Sprintf("spiffe://example.org/bench/p%d", j)))
		}

		killed := time.Now()
		r1.kill()
		waitFor(b, 30*time.Second, "the agent on r2", func() bool {
			res := r2.run(b, "node", "list", "-o", "json")
			var nodes []struct {
				Replica string `json:"replica"`
			}
			return res.code == 0 && json.Unmarshal([]byte(res.stdout), &nodes) == nil && len(nodes) == 1 && nodes[0].Replica == "r2"
		})
		failover = append(failover, time.Since(killed))
		// The stream was on the agent, which kept serving: it is still
		// open. The entry goes through the survivor.
		create(r2, "spiffe://example.org/bench/after-kill")
		served = append(served, time.Since(killed))
		b.StopTimer()
		cancel()
		a.stop()
		r2.stop()
		cluster.Close()
	}
	report := func(name string, d []time.Duration) {
		slices.Sort(d)
		ms := func(x time.Duration) float64 { return float64(x.Microseconds()) / 1000 }
		b.ReportMetric(ms(d[len(d)/2]), name+"-p50-ms")
		b.ReportMetric(ms(d[(len(d)*99)/100]), name+"-p99-ms")
	}
	report("propagation", propagation)
	report("failover", failover)
	report("served-after-kill", served)
}
