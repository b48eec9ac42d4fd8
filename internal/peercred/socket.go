package peercred

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// InUseError means another live process serves the socket path: it
// answered a connection.
type InUseError struct {
	Path string
	// PID is the process that answered; 0 when it could not be told.
	PID int32
}

func (e *InUseError) Error() string {
	if e.PID == 0 {
		return fmt.Sprintf("peercred: another process serves %s", e.Path)
	}
	return fmt.Sprintf("peercred: process %d serves %s", e.PID, e.Path)
}

// probeTimeout bounds the connection ListenOwned makes to tell a live
// socket from a stale one.
const probeTimeout = time.Second

// Socket is a Unix socket this process created, for a server that must be
// alone on its path (the agent's socket): ListenOwned refuses a path that
// another live process serves, and Close removes the path only while it is
// still the socket this process created, never one that replaced it.
type Socket struct {
	*net.UnixListener
	path     string
	dev, ino uint64

	closeOnce sync.Once
	closeErr  error
}

// ListenOwned creates a Unix socket at path with mode, like Listen, but
// only when no live process serves path already: it dials path, and a
// listener that answers means an *InUseError naming its pid. A socket
// file nothing answers on (left by a process that died) is removed. Two
// processes starting at once in the same directory take turns (a lock on
// the directory), so only one of them gets the path.
func ListenOwned(path string, mode os.FileMode) (*Socket, error) {
	unlock, err := lockDir(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := probe(path); err != nil {
		return nil, err
	}
	ln, err := Listen(path, mode)
	if err != nil {
		return nil, err
	}
	ul, ok := ln.(*net.UnixListener)
	if !ok {
		ln.Close()
		return nil, fmt.Errorf("peercred: listener of %s is a %T", path, ln)
	}
	// Close removes the path itself, and only if it is still ours.
	ul.SetUnlinkOnClose(false)
	dev, ino, err := fileID(path)
	if err != nil {
		ul.Close()
		return nil, err
	}
	return &Socket{UnixListener: ul, path: path, dev: dev, ino: ino}, nil
}

// probe returns nil when path is free: absent, or a socket file nothing
// answers on (Listen then removes it).
func probe(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("peercred: %w", err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("peercred: %s exists and is not a socket", path)
	}
	conn, err := net.DialTimeout("unix", path, probeTimeout)
	switch {
	case err == nil:
		c, _ := Read(conn)
		conn.Close()
		return &InUseError{Path: path, PID: c.PID}
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, fs.ErrNotExist):
		return nil // stale, or gone meanwhile
	case errors.Is(err, syscall.EAGAIN):
		// The listener's backlog is full: it is alive, and busy.
		return &InUseError{Path: path}
	default:
		return fmt.Errorf("peercred: cannot tell whether a process serves %s: %w", path, err)
	}
}

// Path returns the socket's path.
func (s *Socket) Path() string { return s.path }

// Check returns nil while the path is still the socket this process
// created, and otherwise an error saying what happened to it.
func (s *Socket) Check() error {
	dev, ino, err := fileID(s.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("socket %s was removed", s.path)
	case err != nil:
		return err
	case dev != s.dev || ino != s.ino:
		return fmt.Errorf("socket %s was replaced by another file", s.path)
	}
	return nil
}

// Close stops listening and removes the path if it is still this socket.
// It is idempotent.
func (s *Socket) Close() error {
	s.closeOnce.Do(func() {
		s.closeErr = s.UnixListener.Close()
		unlock, err := lockDir(filepath.Dir(s.path))
		if err != nil {
			s.closeErr = errors.Join(s.closeErr, err)
			return
		}
		defer unlock()
		if s.Check() != nil {
			return // not ours any more: leave it to its owner
		}
		if err := os.Remove(s.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.closeErr = errors.Join(s.closeErr, fmt.Errorf("peercred: removing %s: %w", s.path, err))
		}
	})
	return s.closeErr
}

// fileID returns the device and inode of path (not following a symlink).
func fileID(path string) (dev, ino uint64, err error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return 0, 0, fmt.Errorf("peercred: %w", &fs.PathError{Op: "lstat", Path: path, Err: err})
	}
	return st.Dev, st.Ino, nil
}

// lockDir takes an exclusive lock on dir until unlock is called: processes
// that create or remove sockets in dir through this package take turns.
func lockDir(dir string) (unlock func(), err error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("peercred: opening socket directory: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("peercred: locking socket directory %s: %w", dir, err)
	}
	return func() { f.Close() }, nil // closing the file releases the lock
}
