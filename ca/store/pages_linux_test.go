//go:build linux

package store_test

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/signet-mesh/signet/ca/store"
	"github.com/signet-mesh/signet/internal/clock"
)

// TestReleaseLoopGivesBackMappedPages: pages of the store file that
// transactions mapped leave the process's resident set at the next
// release tick, and the data reads back the same afterwards.
func TestReleaseLoopGivesBackMappedPages(t *testing.T) {
	const (
		interval = time.Minute
		records  = 2000
		size     = 4 << 10 // 8 MB in all
	)
	clk := clock.NewFake(t0)
	st := openBoltWith(t, store.Options{Clock: clk, MaxBatchDelay: -1, NoSync: true, ReleaseInterval: interval})
	value := func(i int) []byte { return bytes.Repeat([]byte{byte(i)}, size) }
	for i := 0; i < records; i += 100 {
		err := st.Update(t.Context(), func(tx store.Tx) error {
			for j := i; j < i+100; j++ {
				if err := tx.PutMeta(fmt.Sprintf("k%05d", j), value(j)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	readAll := func() {
		t.Helper()
		err := st.View(t.Context(), func(tx store.Tx) error {
			for i := range records {
				v, err := tx.GetMeta(fmt.Sprintf("k%05d", i))
				if err != nil {
					return err
				}
				if !bytes.Equal(v, value(i)) {
					return fmt.Errorf("record %d reads back changed", i)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	readAll()
	const mapped = records * size / 1024 / 2 // KiB: half the data, at least
	if kb := mappedKB(t, st.Path()); kb < mapped {
		t.Fatalf("store mapping holds %d KiB after reading %d KiB: the read did not map the file", kb, records*size/1024)
	}

	clk.Advance(interval)
	waitFor(t, "the mapped pages to be released", func() bool { return mappedKB(t, st.Path()) < mapped/8 })
	readAll()
}

// mappedKB is the resident size of the process's mappings of path, from
// /proc/self/smaps.
func mappedKB(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	kb, in := 0, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if strings.Contains(fields[0], "-") { // a mapping's header line
			in = fields[len(fields)-1] == path
			continue
		}
		if in && fields[0] == "Rss:" {
			n, err := strconv.Atoi(fields[1])
			if err != nil {
				t.Fatalf("smaps line %q: %v", sc.Text(), err)
			}
			kb += n
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return kb
}
