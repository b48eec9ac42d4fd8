package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/signet-mesh/signet/cmd/internal/cli"
	"github.com/signet-mesh/signet/internal/nodeapi"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

// Where the operator commands find the CA.
const (
	defaultDataDir  = "./signet-data" // dev's state, and so the admin socket's default
	adminSocketName = "admin.sock"
	agentSocketName = "agent.sock"
	// adminCallTimeout bounds one admin call.
	adminCallTimeout = 30 * time.Second
)

// adminOptions is the flag every operator command takes: the CA's admin
// socket, from --admin-socket, else SIGNET_ADMIN_SOCKET, else dev's.
type adminOptions struct {
	socket string
}

func (a *adminOptions) addFlags(fs *pflag.FlagSet, env *cliEnv) {
	def := env.getenv(cli.AdminSocketEnv)
	if def == "" {
		def = defaultDataDir + "/" + adminSocketName
	}
	fs.StringVar(&a.socket, "admin-socket", def, "the CA's admin socket (env "+cli.AdminSocketEnv+")")
}

// dial connects to the admin socket. The connection is lazy; the first
// call reports an unreachable socket.
func (a *adminOptions) dial() (adminv1.AdminServiceClient, func(), error) {
	conn, err := a.conn()
	if err != nil {
		return nil, nil, err
	}
	return adminv1.NewAdminServiceClient(conn), func() { conn.Close() }, nil
}

// adminReconnect paces reconnection to the admin socket. The socket is
// local, so trying again costs next to nothing: a client that outlives a
// server restart (signet bench fleet's, a script's) sees the server back
// within a second, not after gRPC's default backoff, which grows to two
// minutes.
var adminReconnect = grpc.ConnectParams{
	Backoff:           grpcbackoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
	MinConnectTimeout: 5 * time.Second,
}

// conn is dial's connection, for the other services of the admin socket.
func (a *adminOptions) conn() (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient("passthrough:///"+a.socket,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(adminReconnect),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", a.socket)
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("connecting to admin socket %s: %w", a.socket, err)
	}
	return conn, nil
}

// rpcError turns an admin call's error into the operator's message: the
// server's own words, with what to do when the socket is unreachable or
// the server predates the command.
func (a *adminOptions) rpcError(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	switch {
	case nodeapi.IsStoreUnavailable(err):
		return errors.New(st.Message()) // the CA answered: its store did not
	case st.Code() == codes.Unavailable:
		return fmt.Errorf("cannot reach the CA admin socket %s (set --admin-socket or %s): %s", a.socket, cli.AdminSocketEnv, st.Message())
	case st.Code() == codes.Unimplemented:
		return fmt.Errorf("the CA at %s does not support this command (it runs an older signet): %s", a.socket, st.Message())
	}
	return errors.New(st.Message())
}

// adminCall dials the admin socket and makes one call, bounded by
// adminCallTimeout; a failure comes back as the operator's message.
func adminCall[T any](ctx context.Context, a *adminOptions, call func(context.Context, adminv1.AdminServiceClient) (T, error)) (T, error) {
	var zero T
	client, closeFn, err := a.dial()
	if err != nil {
		return zero, err
	}
	defer closeFn()
	ctx, cancel := context.WithTimeout(ctx, adminCallTimeout)
	defer cancel()
	resp, err := call(ctx, client)
	if err != nil {
		return zero, a.rpcError(err)
	}
	return resp, nil
}
