//go:build linux

package store

import (
	"go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// releasePages tells the kernel this process no longer needs the pages of
// the store's memory map that tx can see. bbolt reads through a read-only
// shared file mapping, so a walk over the whole audit log (an export), or
// minutes of commits (see releaseLoop), would otherwise leave most of the
// file's pages resident in the CA. The data stays in the page cache; a
// later read faults the page back in. It must be called inside tx: an
// open transaction keeps bbolt from remapping the file under us.
func releasePages(tx *bbolt.Tx) {
	info := tx.DB().Info()
	size := tx.Size()
	if info == nil || info.Data == 0 || size <= 0 {
		return
	}
	// Advice only: nothing to do if the kernel refuses it.
	_, _, _ = unix.Syscall(unix.SYS_MADVISE, info.Data, uintptr(size), unix.MADV_DONTNEED)
}
