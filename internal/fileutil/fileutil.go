// Package fileutil writes files atomically: a reader (or a restart after a
// crash) sees either the old content or the new, never a torn file.
package fileutil

import (
	"fmt"
	"os"
	"path/filepath"
)

// WriteAtomic writes data to path with mode: into a temporary file in the
// same directory, fsynced, then renamed over path, then the directory is
// fsynced so the rename itself survives a crash.
func WriteAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("fileutil: creating temp file for %s: %w", path, err)
	}
	name := tmp.Name()
	renamed := false
	defer func() {
		// Only a failed write leaves a temp file (a removal after the
		// rename would cost every write a syscall).
		if !renamed {
			os.Remove(name)
		}
	}()
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("fileutil: chmod %s: %w", name, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("fileutil: writing %s: %w", name, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("fileutil: syncing %s: %w", name, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("fileutil: closing %s: %w", name, err)
	}
	if err := os.Rename(name, path); err != nil {
		return fmt.Errorf("fileutil: renaming into %s: %w", path, err)
	}
	renamed = true
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
