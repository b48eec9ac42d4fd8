package audit_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signet-mesh/signet/ca/audit"
	"github.com/signet-mesh/signet/ca/store"
)

// bigLog is the size of the log BenchmarkExport1M exports, the size the
// export targets (10 s, 100 MB) are set for.
const bigLog = 1_000_000

// populate appends n SVID issuances to st in transactions of 10,000, with a
// periodic checkpoint every 100,000 records, as a busy CA would.
func populate(b *testing.B, st store.Store, s signer, n int) {
	b.Helper()
	const perTx = 10_000
	for i := 0; i < n; i += perTx {
		err := st.Update(context.Background(), func(tx store.Tx) error {
			for j := i; j < min(i+perTx, n); j++ {
				if _, err := audit.Append(tx, issued(j), t0.Add(time.Duration(j)*time.Millisecond)); err != nil {
					return err
				}
			}
			if (i+perTx)%100_000 == 0 {
				_, err := audit.Checkpoint(tx, s.params(), t0.Add(time.Duration(i+perTx)*time.Millisecond))
				return err
			}
			return nil
		})
		if err != nil {
			b.Fatalf("populating: %v", err)
		}
	}
}

// memSampler records the peak of the process's memory while it runs:
// the Go heap in use and the anonymous and file-backed resident pages
// (the latter are bbolt's memory map of the store file: page cache the
// kernel can drop, not memory the export allocated).
type memSampler struct {
	stop                  chan struct{}
	done                  sync.WaitGroup
	heap, anon, file, hwm uint64 // bytes
}

func startSampler() *memSampler {
	// Reset the kernel's high-water mark of resident memory (VmHWM), so
	// that it covers the export and not the setup before it.
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
	m := &memSampler{stop: make(chan struct{})}
	m.done.Go(func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			m.sample()
			select {
			case <-m.stop:
				m.sample()
				return
			case <-tick.C:
			}
		}
	})
	return m
}

func (m *memSampler) sample() {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m.heap = max(m.heap, ms.HeapInuse)
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return // not Linux: heap only
	}
	for line := range strings.Lines(string(status)) {
		name, value, _ := strings.Cut(line, ":")
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			continue
		}
		switch name {
		case "RssAnon":
			m.anon = max(m.anon, kb<<10)
		case "RssFile":
			m.file = max(m.file, kb<<10)
		case "VmHWM":
			m.hwm = max(m.hwm, kb<<10)
		}
	}
}

func (m *memSampler) report(b *testing.B) {
	close(m.stop)
	m.done.Wait()
	const mb = 1 << 20
	b.ReportMetric(float64(m.heap)/mb, "peak-heap-MB")
	b.ReportMetric(float64(m.anon)/mb, "peak-anon-rss-MB")
	b.ReportMetric(float64(m.file)/mb, "peak-file-rss-MB")
	b.ReportMetric(float64(m.hwm)/mb, "peak-rss-MB")
}

// BenchmarkExport1M exports a log of a million records to io.Discard and
// reports the rate and the peak memory of the export alone (the log is
// written first, in the same process, then the store is reopened). Run:
//
//	go test -run '^$' -bench Export1M -benchtime 3x ./ca/audit
func BenchmarkExport1M(b *testing.B) {
	for _, f := range []audit.Format{audit.FormatJSONL, audit.FormatCSV} {
		b.Run(string(f), func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "signet.db")
			s := newSigner(b)
			st, err := store.Open(path, store.Options{NoSync: true})
			if err != nil {
				b.Fatal(err)
			}
			populate(b, st, s, bigLog)
			if err := st.Close(); err != nil {
				b.Fatal(err)
			}
			fi, err := os.Stat(path)
			if err != nil {
				b.Fatal(err)
			}
			st, err = store.Open(path, store.Options{NoSync: true})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			runtime.GC()

			p := audit.ExportParams{Format: f, Checkpoint: s.params()}
			var cw countingWriter
			m := startSampler()
			records := 0
			for b.Loop() {
				res, err := audit.Export(b.Context(), st, &cw, p, t0.Add(time.Hour))
				if err != nil {
					b.Fatal(err)
				}
				records += res.Records
			}
			b.StopTimer()
			m.report(b)
			b.ReportMetric(float64(records)/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(cw.n)/float64(records), "bytes/record")
			b.ReportMetric(float64(fi.Size())/float64(bigLog), "store-bytes/record")
		})
	}
}

// BenchmarkVerify1M verifies a JSON Lines export of a million records,
// read from a file.
func BenchmarkVerify1M(b *testing.B) {
	s := newSigner(b)
	st := openStore(b)
	populate(b, st, s, bigLog)
	path := filepath.Join(b.TempDir(), "export.jsonl")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := audit.Export(b.Context(), st, f, audit.ExportParams{Checkpoint: s.params()}, t0.Add(time.Hour)); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	// Verify reads a file, not the store: unmap it.
	if err := st.Close(); err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	m := startSampler()
	for b.Loop() {
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		_, err = audit.Verify(f, s.keys)
		f.Close()
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	m.report(b)
	b.ReportMetric(float64(b.N)*bigLog/b.Elapsed().Seconds(), "records/s")
}

// countingWriter is io.Discard that counts.
type countingWriter struct{ n int64 }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	return len(p), nil
}

var _ io.Writer = (*countingWriter)(nil)

// BenchmarkAppend is the cost audit adds to the issuance path: an SVID
// issuance with and without its audit record, both in Batch from
// concurrent callers on a durable store (fsync per group commit), as the
// CA records issued SVIDs. Compare the two ns/op; the difference is the
// record's cost. BenchmarkAppend/InTx is Append alone inside an open
// transaction, without the commit.
func BenchmarkAppend(b *testing.B) {
	svid := func(i int) *store.SVIDRecord {
		return &store.SVIDRecord{
			Serial:      strconv.FormatInt(int64(i), 16),
			SPIFFEID:    webID,
			NodeID:      nodeID,
			EntryID:     "e1",
			AuthorityID: "int-1",
			NotBefore:   t0,
			NotAfter:    t0.Add(time.Hour),
		}
	}
	for _, bb := range []struct {
		name  string
		audit bool
	}{{"PutSVID", false}, {"PutSVIDAndAppend", true}} {
		b.Run(bb.name, func(b *testing.B) {
			st, err := store.Open(filepath.Join(b.TempDir(), "signet.db"), store.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			var mu sync.Mutex
			next := 0
			b.SetParallelism(32)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					mu.Lock()
					i := next
					next++
					mu.Unlock()
					err := st.Batch(context.Background(), func(tx store.Tx) error {
						if err := tx.PutSVID(svid(i)); err != nil {
							return err
						}
						if !bb.audit {
							return nil
						}
						_, err := audit.Append(tx, issued(i), t0)
						return err
					})
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
	b.Run("InTx", func(b *testing.B) {
		// Append alone, inside open transactions: head read, hash,
		// encoding and put, without the commits (timer stopped), which
		// the runs above include.
		st := openStore(b)
		b.ReportAllocs()
		i, more := 0, true
		for more {
			err := st.Update(b.Context(), func(tx store.Tx) error {
				defer b.StopTimer()
				for range 1000 {
					if more = b.Loop(); !more {
						return nil
					}
					if _, err := audit.Append(tx, issued(i), t0); err != nil {
						return err
					}
					i++
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
			if more {
				b.StartTimer()
			}
		}
	})
}
