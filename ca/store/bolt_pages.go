package store

import (
	"time"

	"go.etcd.io/bbolt"
)

// pageReleaseEvery is how often, at most, a commit gives back the pages
// of the store's memory map that the transactions since the last one read
// (releasePages). bbolt reads through the map, and a write reads the pages
// on its way down every bucket it touches: a day of mints, or a
// `root activate --rotate-now` that re-mints every SVID, reads the SVID
// index's every page, hundreds of megabytes resident in the CA at 10,000
// agents for pages it has no more use for. The pages stay in the kernel's
// page cache, so the pages still in use fault back in without a disk
// read, a few microseconds each at most every this often. A CA that
// writes nothing (an idle fleet) releases nothing and does no work.
const pageReleaseEvery = 5 * time.Second

// releasePagesAfterCommit releases the map's pages if the last release
// was pageReleaseEvery ago or more. The writer calls it after a commit,
// holding the store's writer lock.
func (b *Bolt) releasePagesAfterCommit() {
	now := b.clock.Now()
	if !b.lastPageRelease.IsZero() && now.Sub(b.lastPageRelease) < pageReleaseEvery {
		return
	}
	b.lastPageRelease = now
	_ = b.db.View(func(tx *bbolt.Tx) error { releasePages(tx); return nil })
	b.pageReleases.Add(1)
}
