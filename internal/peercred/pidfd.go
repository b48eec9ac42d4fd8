package peercred

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrPeerGone means the process that connected had already exited, and been
// reaped, by the time the server took its credentials. The connection is
// refused: another process may hold the socket, and the PID may already name
// someone else.
var ErrPeerGone = errors.New("peercred: peer process is gone")

// PIDFD is a Linux pidfd: a handle on the process that connected, taken at
// handshake. Unlike the PID in Creds it cannot come to refer to another
// process, so whoever inspects the peer later (the agent's workload attestor
// reads /proc/<pid>) can check afterwards that what it read still belonged
// to the process that connected.
//
// A PIDFD belongs to its connection, which closes it when it closes; callers
// must not Close it themselves. It is safe for concurrent use, and methods
// called after Close report os.ErrClosed rather than touching a reused fd
// number.
type PIDFD struct {
	mu sync.Mutex
	fd int // -1 once closed
}

// Exited reports whether the process has exited. A zombie (exited, not yet
// reaped) counts as exited.
func (p *PIDFD) Exited() (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fd < 0 {
		return false, fmt.Errorf("peercred: pidfd: %w", os.ErrClosed)
	}
	// A pidfd polls readable once its process exits.
	fds := []unix.PollFd{{Fd: int32(p.fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("peercred: polling pidfd: %w", err)
		}
		return n > 0 && fds[0].Revents&(unix.POLLIN|unix.POLLHUP) != 0, nil
	}
}

// Close releases the pidfd. It is idempotent.
func (p *PIDFD) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fd < 0 {
		return nil
	}
	err := unix.Close(p.fd)
	p.fd = -1
	return err
}

// openPIDFD pins the peer of uc. It prefers SO_PEERPIDFD (Linux 6.5), which
// names the very process that connected, and falls back to pidfd_open(pid)
// (Linux 5.3), which is racy only if the peer exited and its PID was reused
// between connect and this call. It returns nil, nil on kernels with
// neither: callers then have the PID alone.
func openPIDFD(uc *net.UnixConn, pid int32) (*PIDFD, error) {
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("peercred: raw connection: %w", err)
	}
	fd, sockErr := -1, error(nil)
	if err := raw.Control(func(s uintptr) {
		fd, sockErr = unix.GetsockoptInt(int(s), unix.SOL_SOCKET, unix.SO_PEERPIDFD)
	}); err != nil {
		return nil, fmt.Errorf("peercred: control: %w", err)
	}
	switch {
	case sockErr == nil:
		return &PIDFD{fd: fd}, nil
	case errors.Is(sockErr, unix.ESRCH):
		return nil, ErrPeerGone
	case !unsupported(sockErr):
		return nil, fmt.Errorf("peercred: getsockopt SO_PEERPIDFD: %w", sockErr)
	}
	if pid <= 0 {
		// The peer is in a PID namespace we cannot see.
		return nil, nil
	}
	fd, err = unix.PidfdOpen(int(pid), 0)
	switch {
	case err == nil:
		return &PIDFD{fd: fd}, nil
	case errors.Is(err, unix.ESRCH):
		return nil, ErrPeerGone
	case unsupported(err):
		return nil, nil
	default:
		return nil, fmt.Errorf("peercred: pidfd_open: %w", err)
	}
}

// unsupported reports whether err means the kernel lacks the call or option
// (or a seccomp policy hides it).
func unsupported(err error) bool {
	return errors.Is(err, unix.ENOPROTOOPT) || errors.Is(err, unix.ENOSYS) ||
		errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EPERM)
}

// pidfdConn is a server connection that owns its peer's pidfd and closes it
// with the connection, so no pidfd outlives the connection it describes.
// It wraps the accepted connection (a *net.UnixConn, or one of
// LimitConns, which must see its Close), and keeps SyscallConn visible to
// gRPC.
type pidfdConn struct {
	net.Conn
	uc    *net.UnixConn
	pidfd *PIDFD
}

// SyscallConn implements syscall.Conn.
func (c *pidfdConn) SyscallConn() (syscall.RawConn, error) { return c.uc.SyscallConn() }

func (c *pidfdConn) Close() error {
	err := c.Conn.Close()
	if perr := c.pidfd.Close(); err == nil {
		err = perr
	}
	return err
}

var _ syscall.Conn = (*pidfdConn)(nil)
