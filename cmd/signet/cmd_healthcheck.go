package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

func healthcheckCommand() *command {
	return &command{name: "healthcheck", summary: "check that a local agent or CA is ready (for exec probes)", run: runHealthcheck}
}

// maxReadyBody bounds what is read of a /readyz answer.
const maxReadyBody = 4 << 10

// runHealthcheck asks one target whether it is ready: exit 0 when it is,
// 1 with the reason otherwise. The agent and the CA serve the gRPC health
// service on their sockets (SERVING exactly when their /readyz says
// ready), so an exec probe needs no network listener.
func runHealthcheck(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "healthcheck", "signet healthcheck (--socket AGENT_SOCKET | --admin-socket ADMIN_SOCKET | --url http://HOST:PORT/readyz)")
	socket := fs.String("socket", "", "agent socket (Workload API and SDS)")
	admin := fs.String("admin-socket", "", "CA admin socket (the caller must be an admin uid, as for every admin call)")
	url := fs.String("url", "", "readiness URL of a metrics_listen endpoint, e.g. http://127.0.0.1:9090/readyz")
	timeout := fs.Duration("timeout", 5*time.Second, "give up after this long")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := exactArgs(fs, pos); err != nil {
		return err
	}
	n := 0
	for _, v := range []string{*socket, *admin, *url} {
		if v != "" {
			n++
		}
	}
	if n != 1 {
		fs.Usage()
		return errors.New("give exactly one of --socket, --admin-socket or --url")
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	switch {
	case *socket != "":
		err = checkSocket(ctx, "agent", *socket)
	case *admin != "":
		err = checkSocket(ctx, "CA", *admin)
	default:
		err = checkURL(ctx, *url)
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(env.stdout, "ready")
	return nil
}

// checkSocket calls the gRPC health service on a Unix socket.
func checkSocket(ctx context.Context, what, path string) error {
	conn, err := grpc.NewClient("passthrough:///"+path,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		}),
	)
	if err != nil {
		return fmt.Errorf("%s socket %s: %w", what, path, err)
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return fmt.Errorf("%s at %s is not healthy: %s", what, path, status.Convert(err).Message())
	}
	if st := resp.GetStatus(); st != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("%s at %s is not ready (%s); its log says why", what, path, st)
	}
	return nil
}

// checkURL GETs a /readyz URL; 200 is ready.
func checkURL(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("--url %q: %v", url, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxReadyBody))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}
