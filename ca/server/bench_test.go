package server

import (
	"context"
	"net"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/signet-mesh/signet/ca"
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
	benchmarkMintRPCWith(b, testOpts{nodeRate: -1, etcd: &EtcdConfig{Endpoints: cluster.Endpoints()}, serverName: "bench"}, 1)
}

// BenchmarkMintRPCNoSync is BenchmarkMintRPC with the store's fsync off:
// commits and audit records as in production, but not durable. Beside
// BenchmarkMintRPC it shows what waiting on the disk costs. Not a
// configuration signet offers.
func BenchmarkMintRPCNoSync(b *testing.B) {
	benchmarkMintRPCWith(b, testOpts{nodeRate: -1, noSync: true}, 1)
}

// BenchmarkMintRPCCeiling is the most any node API over gRPC could mint
// on this machine: the node API's server options and TLS, the benchmark's
// 64 callers on one agent connection, and a mint that only checks the CSR
// and signs, as BenchmarkMintInProcess does. No entry lookup, no record,
// no audit, no commit. Compare the three in one run:
//
//	go test -run '^$' -bench 'BenchmarkMint(RPC|RPCCeiling|InProcess)$' -count 5 ./ca/ ./ca/server/
func BenchmarkMintRPCCeiling(b *testing.B) {
	c := startCA(b, testOpts{nodeRate: -1})
	n := c.attest(b, "bench")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := grpc.NewServer(c.srv.nodeServerOptions()...)
	nodev1.RegisterNodeServiceServer(srv, &signOnlyNode{ca: c.srv.ca})
	go srv.Serve(ln)
	b.Cleanup(srv.Stop)
	cfg := tlsconfig.MTLSClientConfig(svidSource{n.svid}, c.bundle(), tlsconfig.AuthorizeID(spiffeid.RequireFromPath(td, "/signet/server")))
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	req := &nodev1.MintX509SVIDsRequest{Params: []*nodev1.MintX509SVIDParams{{EntryId: "bench", Csr: csr(b, newKey(b))}}}
	measureMints(b, nodev1.NewNodeServiceClient(conn), req, nil)
}

// signOnlyNode is BenchmarkMintRPCCeiling's node API: it checks each CSR
// and signs it for the calling agent's ID, and answers as the node API
// does, with the chain.
type signOnlyNode struct {
	nodev1.UnimplementedNodeServiceServer
	ca *ca.CA
}

func (s *signOnlyNode) MintX509SVIDs(ctx context.Context, req *nodev1.MintX509SVIDsRequest) (*nodev1.MintX509SVIDsResponse, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "no peer information")
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 {
		return nil, status.Error(codes.Unauthenticated, "a valid node SVID is required")
	}
	id, err := x509svid.IDFromCert(ti.State.VerifiedChains[0][0])
	if err != nil {
		return nil, status.Error(codes.Unauthenticated, err.Error())
	}
	resp := &nodev1.MintX509SVIDsResponse{}
	for _, p := range req.GetParams() {
		csr, err := ca.ParseCSR(p.GetCsr())
		if err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		svid, err := s.ca.SignX509SVID(ctx, ca.X509SVIDParams{SPIFFEID: id, PublicKey: csr.PublicKey})
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		out := &nodev1.X509SVID{SpiffeId: id.String(), ExpiresAt: svid.Chain[0].NotAfter.Unix()}
		for _, c := range svid.Chain {
			out.CertChain = append(out.CertChain, c.Raw)
		}
		resp.Results = append(resp.Results, &nodev1.MintX509SVIDResult{EntryId: p.GetEntryId(), Svid: out})
	}
	return resp, nil
}

func benchmarkMintRPC(b *testing.B, noAudit bool) {
	benchmarkMintRPCWith(b, testOpts{nodeRate: -1, noAudit: noAudit}, 1)
}

// BenchmarkMintRPCBatch8 is BenchmarkMintRPC with 8 CSRs per call, as an
// agent sends them when several workloads need SVIDs at once: it shows
// how much of the per-SVID cost of BenchmarkMintRPC is the call's own
// (gRPC, TLS, HTTP/2) rather than each SVID's. b.N counts SVIDs.
func BenchmarkMintRPCBatch8(b *testing.B) {
	benchmarkMintRPCWith(b, testOpts{nodeRate: -1}, 8)
}

// benchCallers is the number of concurrent callers of the mint
// benchmarks: a fleet's worth of agents minting at once.
const benchCallers = 64

// benchmarkMintRPCWith runs the mint benchmark against a CA started with
// o, each call carrying batch CSRs (batch SVIDs count as batch ops).
func benchmarkMintRPCWith(b *testing.B, o testOpts, batch int) {
	// Admission is the fleet's guard, not what is measured here: let
	// every caller in.
	o.admission.MaxMintBatches = benchCallers
	// Metrics on, as a production CA runs; they also tell how many calls
	// each group commit (one fsync) carried.
	o.metrics = NewMetrics(prometheus.NewRegistry())
	c := startCA(b, o)
	n := c.attest(b, "bench")
	entry := c.entry(b, "spiffe://example.org/bench", n.id.String())
	req := &nodev1.MintX509SVIDsRequest{}
	for range batch {
		req.Params = append(req.Params, &nodev1.MintX509SVIDParams{EntryId: entry, Csr: csr(b, newKey(b))})
	}
	measureMints(b, n.client, req, o.metrics)
}

// measureMints calls client.MintX509SVIDs(req) from benchCallers
// goroutines until b.N SVIDs are minted and reports the figures: CPUs
// used, CPU per SVID, SVIDs per second, and with m SVIDs per group commit.
func measureMints(b *testing.B, client nodev1.NodeServiceClient, req *nodev1.MintX509SVIDsRequest, m *Metrics) {
	batch := len(req.Params)
	// Warm the connection.
	if _, err := client.MintX509SVIDs(context.Background(), req); err != nil {
		b.Fatal(err)
	}
	b.SetParallelism(max(1, benchCallers/runtime.GOMAXPROCS(0)))
	var ru0, ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	var commits0 uint64
	if m != nil {
		commits0 = groupCommits(b, m)
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			// One call per batch ops: the last call may mint a few more.
			for range batch - 1 {
				if !pb.Next() {
					break
				}
			}
			resp, err := client.MintX509SVIDs(context.Background(), req)
			if err != nil {
				b.Error(err)
				return
			}
			for _, r := range resp.Results {
				if codes.Code(r.Code) != codes.OK {
					b.Errorf("mint failed: %s", r.Message)
					return
				}
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
	if m == nil {
		return
	}
	if n := groupCommits(b, m) - commits0; n > 0 {
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
