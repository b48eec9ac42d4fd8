// Package grpcserve runs a gRPC server for as long as a context lives: the
// CA's node and admin APIs and the agent's socket all serve this way.
package grpcserve

import (
	"context"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc"
)

// DrainTimeout bounds a graceful stop: agents and proxies hold streams open
// forever, so after it the remaining connections are closed.
const DrainTimeout = 2 * time.Second

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
