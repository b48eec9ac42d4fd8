package store

import (
	"time"

	"go.etcd.io/bbolt"
)

// DefaultReleaseInterval is how often a busy store gives back the pages
// of its file mapping. Faulting the ones still in use back in costs a few
// microseconds per 64 KiB; keeping them costs the CA's resident memory
// most of the store file within minutes (see releaseLoop).
const DefaultReleaseInterval = time.Second

// releaseLoop gives the pages of the store's file mapping back to the
// kernel every interval in which a transaction ran, until Close.
//
// bbolt reads through a shared mapping of the file and writes with
// pwrite, so what it writes sits in the page cache; a read fault maps the
// cached pages around the one read too (the kernel's fault-around, 64 KiB).
// Every commit reads the paths it changes, next to the pages the last
// commits wrote: within minutes of issuing, nearly the whole file is
// mapped into the CA, counted in its resident set and weighed by the OOM
// killer, though most of it (the audit log, old SVIDs) is never read
// again. Released, those pages stay in the page cache until the kernel
// needs the memory, and are the first it takes back; the pages still in
// use fault back in on their next read.
func (b *Bolt) releaseLoop(interval time.Duration) {
	defer close(b.released)
	t := b.clock.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-b.stopRelease:
			return
		case <-t.C():
		}
		if !b.touched.Swap(false) {
			continue // idle: nothing was mapped since the last release
		}
		// Inside a read transaction: bbolt cannot remap the file under
		// the advice. Not counted as a touch.
		_ = b.db.View(func(tx *bbolt.Tx) error { releasePages(tx); return nil })
	}
}
