// Package grpcserve runs a gRPC server for as long as a context lives: the
// CA's node and admin APIs and the agent's socket all serve this way. It
// also holds the options of the agent's workload socket
// (LocalSocketOptions), with the limits that close idle connections.
package grpcserve

import (
	"context"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/signet-mesh/signet/internal/peercred"
)

// DrainTimeout bounds a graceful stop: agents and proxies hold streams open
// forever, so after it the remaining connections are closed.
const DrainTimeout = 2 * time.Second

// Limits of the connections on the agent's workload socket, so that idle
// connections do not hold the agent's file descriptors. Streams keep a
// connection busy, so the proxies' and workloads' watches are never cut;
// a client that only calls now and then reconnects on its next call.
// (agent.MaxConnsPerUID bounds how many one local user holds at once.)
const (
	// MaxConnectionIdle closes a connection that has had no call open for
	// this long.
	MaxConnectionIdle = 5 * time.Minute
	// HandshakeTimeout closes a connection that has not completed its
	// HTTP/2 handshake in this long: a local client sends its preface at
	// once.
	HandshakeTimeout = 10 * time.Second
)

// LocalSocketOptions are the options of the agent's workload socket: a Unix
// socket (from agent.ListenSocket or peercred.Listen) where every workload
// and proxy on the node holds long-lived streams. The SDS tests serve with
// them too, so what they measure per stream is what the agent spends.
func LocalSocketOptions() []grpc.ServerOption { return localSocketOptions(MaxConnectionIdle) }

func localSocketOptions(idle time.Duration) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.Creds(peercred.TransportCredentials()),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: idle}),
		grpc.ConnectionTimeout(HandshakeTimeout),
		// Workload requests are small; refuse anything large early.
		grpc.MaxRecvMsgSize(1 << 20),
		// Hundreds of proxies each hold a connection: pool write buffers
		// between flushes and read straight into the framer, instead of
		// 64 KB of buffers per idle connection.
		grpc.SharedWriteBuffer(true),
		grpc.ReadBufferSize(0),
	}
}

// Serve serves srv on ln until ctx ends, then stops it gracefully, bounded
// by DrainTimeout. It returns nil on cancellation, or the error that made
// the server stop on its own.
func Serve(ctx context.Context, srv *grpc.Server, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	t := time.NewTimer(DrainTimeout)
	defer t.Stop()
	select {
	case <-stopped:
	case <-t.C:
		srv.Stop()
	}
	return nil
}
