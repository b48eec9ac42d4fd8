// Package peercred reads the Unix peer credentials (pid, uid, gid) of
// connections on a Unix socket and hands them to gRPC handlers.
//
// A server built with grpc.Creds(peercred.TransportCredentials()) can call
// FromContext in a handler to learn who is calling; the kernel fills the
// credentials in at connect time (SO_PEERCRED), so a caller cannot forge them.
// The CA's admin API checks the uid against its admin uids; the agent uses the
// pid to attest workloads, and the pidfd taken at handshake (Creds.PIDFD) to
// check that the pid still names the process that connected.
//
// It also makes the sockets themselves: Listen creates one with a given mode
// before anyone can connect; ListenOwned does so only when no live process
// serves the path (the agent's socket: a second agent is refused, a stale
// file removed, and only the socket this process created is removed on
// Close); and LimitConns bounds the connections one peer uid holds at once:
//
//	s, err := peercred.ListenOwned("/run/signet/agent.sock", 0o777)
//	ln := peercred.LimitConns(s, 4096, nil)
//	srv := grpc.NewServer(grpc.Creds(peercred.TransportCredentials()))
//	go srv.Serve(ln) // s.Check() tells whether the path is still ours
package peercred

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// ErrNoCredentials means the connection carries no Unix peer credentials:
// it is not a Unix socket served with TransportCredentials.
var ErrNoCredentials = errors.New("peercred: no peer credentials on connection")

// Creds are the kernel's credentials of the process that connected.
type Creds struct {
	PID int32
	UID uint32
	GID uint32
	// PIDFD pins the process that connected, so that code inspecting it
	// later by PID can tell whether the PID still names that process (see
	// PIDFD). TransportCredentials sets it, and closes it when the
	// connection closes; it is nil from Read and on kernels older than 5.3.
	PIDFD *PIDFD
}

// AuthInfo is the credentials.AuthInfo that TransportCredentials attaches to
// each connection.
type AuthInfo struct {
	credentials.CommonAuthInfo
	Creds Creds
}

// AuthType implements credentials.AuthInfo.
func (AuthInfo) AuthType() string { return "unix-peercred" }

// unixConnOf returns the Unix connection conn is, or wraps (a connection
// of LimitConns).
func unixConnOf(conn net.Conn) (*net.UnixConn, bool) {
	switch c := conn.(type) {
	case *net.UnixConn:
		return c, true
	case interface{ unixConn() *net.UnixConn }:
		return c.unixConn(), true
	}
	return nil, false
}

// Read returns the peer credentials of a Unix connection.
func Read(conn net.Conn) (Creds, error) {
	uc, ok := unixConnOf(conn)
	if !ok {
		return Creds{}, fmt.Errorf("%w: %T is not a Unix connection", ErrNoCredentials, conn)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return Creds{}, fmt.Errorf("peercred: raw connection: %w", err)
	}
	var cred *unix.Ucred
	var sockErr error
	if err := raw.Control(func(fd uintptr) {
		cred, sockErr = unix.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return Creds{}, fmt.Errorf("peercred: control: %w", err)
	}
	if sockErr != nil {
		return Creds{}, fmt.Errorf("peercred: getsockopt SO_PEERCRED: %w", sockErr)
	}
	return Creds{PID: cred.Pid, UID: cred.Uid, GID: cred.Gid}, nil
}

// FromContext returns the credentials of the caller of a gRPC handler
// served with TransportCredentials.
func FromContext(ctx context.Context) (Creds, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return Creds{}, ErrNoCredentials
	}
	ai, ok := p.AuthInfo.(AuthInfo)
	if !ok {
		return Creds{}, ErrNoCredentials
	}
	return ai.Creds, nil
}

// TransportCredentials returns gRPC server credentials for a Unix socket:
// no encryption (the socket's file mode guards it), and each connection's
// peer credentials attached for FromContext.
func TransportCredentials() credentials.TransportCredentials { return transportCreds{} }

type transportCreds struct{}

func (transportCreds) ClientHandshake(_ context.Context, _ string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return conn, AuthInfo{CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}}, nil
}

func (transportCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	c, err := Read(conn)
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	// Take the pidfd now, while the peer is certainly connected; Read has
	// checked that conn is a Unix connection.
	uc, _ := unixConnOf(conn)
	c.PIDFD, err = openPIDFD(uc, c.PID)
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	if c.PIDFD != nil {
		conn = &pidfdConn{Conn: conn, uc: uc, pidfd: c.PIDFD}
	}
	return conn, AuthInfo{CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}, Creds: c}, nil
}

func (transportCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "unix-peercred"}
}

func (t transportCreds) Clone() credentials.TransportCredentials { return t }

func (transportCreds) OverrideServerName(string) error { return nil }

// Listen creates a Unix socket at path for a server that checks peer
// credentials: a stale socket file from a previous run is removed, and the
// socket gets mode (0600 for admin sockets) before anyone can connect
// through the directory.
func Listen(path string, mode os.FileMode) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("peercred: %s exists and is not a socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("peercred: removing stale socket: %w", err)
		}
	}
	// Create the socket with no permissions for anyone else from the start,
	// then open it up to exactly mode.
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("peercred: listening on %s: %w", path, err)
	}
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("peercred: chmod %s: %w", path, err)
	}
	return ln, nil
}
