package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// CheckWritableDir reports, for --check-config, what would stop a start
// from creating or writing the directory dir (config key key): a file in
// its place, or an existing ancestor this user cannot write to. It
// creates nothing.
func CheckWritableDir(key, dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("%s %s: %v", key, dir, err)
	}
	for p := abs; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		switch {
		case (errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR)) && p != filepath.Dir(p):
			continue // created at start, if its parent allows
		case err != nil:
			return fmt.Errorf("%s %s: %v", key, dir, err)
		case !fi.IsDir():
			return fmt.Errorf("%s %s: %s is not a directory", key, dir, p)
		}
		if err := unix.Access(p, unix.W_OK|unix.X_OK); err != nil {
			return fmt.Errorf("%s %s: uid %d cannot write to %s: %v", key, dir, os.Getuid(), p, err)
		}
		return nil
	}
}
