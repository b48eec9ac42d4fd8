package agent

import (
	"context"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/signet-mesh/signet/internal/grpcserve"
	"github.com/signet-mesh/signet/internal/peercred"
)

// ServeSocket serves the workload-facing gRPC services (the Workload API
// and SDS, registered by the caller) on ln, a Unix socket from
// peercred.Listen, until ctx ends. Every connection carries the caller's
// peer credentials, which is how workloads are attested.
func ServeSocket(ctx context.Context, ln net.Listener, register ...func(*grpc.Server)) error {
	return ServeSocketWith(ctx, ln, nil, register...)
}

// ServeSocketWith is ServeSocket with extra gRPC server options, applied
// after the defaults: cmd/signet adds the metrics' stream interceptor.
func ServeSocketWith(ctx context.Context, ln net.Listener, opts []grpc.ServerOption, register ...func(*grpc.Server)) error {
	srv := grpc.NewServer(append([]grpc.ServerOption{
		grpc.Creds(peercred.TransportCredentials()),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		// Workload requests are small; refuse anything large early.
		grpc.MaxRecvMsgSize(1 << 20),
		// Hundreds of proxies each hold a connection: pool write buffers
		// between flushes and read straight into the framer, instead of
		// 64 KB of buffers per idle connection.
		grpc.SharedWriteBuffer(true),
		grpc.ReadBufferSize(0),
	}, opts...)...)
	for _, r := range register {
		r(srv)
	}
	if err := grpcserve.Serve(ctx, srv, ln); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	return nil
}
