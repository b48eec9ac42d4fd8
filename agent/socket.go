package agent

import (
	"context"
	"fmt"
	"net"

	"google.golang.org/grpc"

	"github.com/signet-mesh/signet/internal/grpcserve"
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
	srv := grpc.NewServer(append(grpcserve.LocalSocketOptions(), opts...)...)
	for _, r := range register {
		r(srv)
	}
	if err := grpcserve.Serve(ctx, srv, ln); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	return nil
}
