package ca_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/signet-mesh/signet/ca"
	"github.com/signet-mesh/signet/ca/catest"
)

// BenchmarkMintInProcess measures the CA's per-SVID cost without I/O:
// parsing and checking a CSR, then signing and checking the SVID. The
// project's performance target refers to this name; keep it.
func BenchmarkMintInProcess(b *testing.B) {
	c := catest.NewCA(b, td)
	der, _ := catest.CreateCSR(b)
	ctx := context.Background()
	b.ReportAllocs()
	var ru0, ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			csr, err := ca.ParseCSR(der)
			if err != nil {
				b.Error(err)
				return
			}
			if _, err := c.CA.SignX509SVID(ctx, ca.X509SVIDParams{SPIFFEID: workloadID, PublicKey: csr.PublicKey}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	// Process CPU per SVID, as BenchmarkMintRPC in ca/server reports it,
	// so the two compare from one run.
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/op")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "svids/s")
}
