package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"

	"github.com/signet-mesh/signet/agent/internal/logkey"
	"github.com/signet-mesh/signet/internal/grpcserve"
	"github.com/signet-mesh/signet/internal/peercred"
)

// MaxConnsPerUID bounds the connections one local user (peer uid) holds
// open on the agent socket at once; a connection past it is closed at
// accept, and other users still get through, so one user cannot exhaust
// the agent's file descriptors. It leaves room for one uid running every
// proxy of a large node (a thousand sidecars of `signet proxy` hold two
// connections each), and is a small share of the open-file limit Go
// raises the agent to at start (the hard limit: typically 524288 under
// systemd, 1048576 in containers). Idle connections are closed too (see
// grpcserve.MaxConnectionIdle).
const MaxConnsPerUID = 4096

// ListenSocket creates the agent's Unix socket at path (Workload API and
// SDS), for ServeSocket. It refuses when another live process serves path
// (a second agent on the same socket), removes a socket file left by a
// process that died, limits connections per peer uid (MaxConnsPerUID), and
// from then on Ready checks that path is still this socket. Closing the
// listener (ServeSocket does when it stops) removes path, unless it is no
// longer this socket. Any local process may connect: attestation decides
// what it gets.
func (a *Agent) ListenSocket(path string) (net.Listener, error) {
	return a.listenSocket(path, MaxConnsPerUID)
}

func (a *Agent) listenSocket(path string, perUID int) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("agent: socket directory: %w", err)
	}
	s, err := peercred.ListenOwned(path, 0o777)
	if inUse := (*peercred.InUseError)(nil); errors.As(err, &inUse) {
		who := "another process"
		if inUse.PID != 0 {
			who = fmt.Sprintf("another process (pid %d)", inUse.PID)
		}
		return nil, fmt.Errorf("agent: %s serves the socket %s: is another agent running? Stop it, or start this one with another --socket", who, path)
	}
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	a.socket.set(s)
	refused := &refusedUIDs{}
	return peercred.LimitConns(s, perUID, func(c peercred.Creds) {
		if refused.first(c.UID) {
			a.log.Warn("refusing connections: this user holds the most the agent socket allows", logkey.UID, c.UID, logkey.PID, c.PID, logkey.Socket, path, logkey.MaxConnsPerUID, perUID)
		}
	}), nil
}

// refusedUIDs remembers the uids already logged as over their limit, so a
// user hammering the socket makes one line, not one per connection.
type refusedUIDs struct {
	mu   sync.Mutex
	seen map[uint32]bool
}

func (r *refusedUIDs) first(uid uint32) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen[uid] {
		return false
	}
	if r.seen == nil || len(r.seen) >= 1024 {
		r.seen = map[uint32]bool{}
	}
	r.seen[uid] = true
	return true
}

// ownedSocket is the agent's socket, once ListenSocket made it.
type ownedSocket struct {
	p atomic.Pointer[peercred.Socket]
}

func (o *ownedSocket) set(s *peercred.Socket) { o.p.Store(s) }

// check returns nil when there is no socket yet or it is still ours.
func (o *ownedSocket) check() error {
	if s := o.p.Load(); s != nil {
		return s.Check()
	}
	return nil
}

// path returns the socket's path, "" before ListenSocket.
func (o *ownedSocket) path() string {
	if s := o.p.Load(); s != nil {
		return s.Path()
	}
	return ""
}

// ServeSocket serves the workload-facing gRPC services (the Workload API
// and SDS, registered by the caller) on ln, from Agent.ListenSocket (or
// peercred.Listen), until ctx ends. Every connection carries the caller's
// peer credentials, which is how workloads are attested.
func ServeSocket(ctx context.Context, ln net.Listener, register ...func(*grpc.Server)) error {
	return ServeSocketWith(ctx, ln, nil, register...)
}

// ServeSocketWith is ServeSocket with extra gRPC server options, applied
// after the defaults: cmd/signet adds the metrics' stream interceptor.
func ServeSocketWith(ctx context.Context, ln net.Listener, opts []grpc.ServerOption, register ...func(*grpc.Server)) error {
	srv := grpc.NewServer(append(grpcserve.LocalSocketOptions(), opts...)...)
	for _, r := range register {
		r(srv)
	}
	if err := grpcserve.Serve(ctx, srv, ln); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	return nil
}
