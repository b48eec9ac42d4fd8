package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// maxReadyBody bounds what is read of a /readyz answer.
const maxReadyBody = 4 << 10

type healthcheckOptions struct {
	socket, admin, url string
	timeout            time.Duration
}

// NewHealthcheckCommand is `NAME healthcheck`, for the binary called name
// (signet, signet-agent): the exec probe of the agent's and the CA's
// deployments.
func NewHealthcheckCommand(name string, env *Env) *cobra.Command {
	var o healthcheckOptions
	cmd := &cobra.Command{
		Use:   "healthcheck [--socket AGENT_SOCKET | --admin-socket ADMIN_SOCKET | --url http://HOST:PORT/readyz]",
		Short: "check that a local agent or CA is ready (for exec probes)",
		Long: `Ask one agent or CA whether it is ready: exit 0 ("ready") when it is, 1 with
the reason otherwise. The agent and the CA serve the gRPC health service on
their sockets (SERVING exactly when their /readyz says ready), so an exec
probe needs no network listener.

With no flag, the target comes from the environment: the CA at
$` + AdminSocketEnv + `, or the agent at $` + EndpointSocketEnv + ` (one of them, not both),
else the agent at ` + DefaultAgentSocket + `.`,
		Example: strings.ReplaceAll(`  signet healthcheck --socket /run/signet/agent.sock
  signet healthcheck --admin-socket /run/signet/admin.sock --timeout 4s
  SIGNET_ADMIN_SOCKET=/run/signet/admin.sock signet healthcheck
  signet healthcheck --url http://127.0.0.1:9090/readyz`, "signet ", name+" "),
		Args: NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd, env) },
	}
	fs := cmd.Flags()
	fs.StringVar(&o.socket, "socket", "", "agent socket (a path or a unix:// URI)")
	fs.StringVar(&o.admin, "admin-socket", "", "CA admin socket (the caller must be an admin uid, as for every admin call)")
	fs.StringVar(&o.url, "url", "", "readiness URL of a metrics_listen endpoint, e.g. http://127.0.0.1:9090/readyz")
	fs.Var(NewDurationValue(&o.timeout, 5*time.Second), "timeout", "give up after this long")
	return cmd
}

func (o *healthcheckOptions) run(cmd *cobra.Command, env *Env) error {
	what, target, err := o.target(cmd, env.Getenv)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
	defer cancel()
	if what == "url" {
		err = checkURL(ctx, target)
	} else {
		err = checkSocket(ctx, what, target)
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(env.Stdout, "ready")
	return nil
}

// target picks what to check: the one flag given, else the environment
// (SIGNET_ADMIN_SOCKET: the CA; SPIFFE_ENDPOINT_SOCKET: the agent), else
// the agent at its default socket.
func (o *healthcheckOptions) target(cmd *cobra.Command, getenv func(string) string) (what, target string, err error) {
	errOne := errors.New("give exactly one of --socket, --admin-socket or --url")
	n := 0
	for _, name := range []string{"socket", "admin-socket", "url"} {
		if cmd.Flags().Changed(name) {
			n++
		}
	}
	switch {
	case n > 1:
		return "", "", errOne
	case o.url != "":
		return "url", o.url, nil
	case o.admin != "":
		return "CA", o.admin, nil
	case o.socket != "":
		p, err := SocketPath(o.socket)
		if err != nil {
			return "", "", fmt.Errorf("--socket %v", err)
		}
		return "agent", p, nil
	case n == 1:
		return "", "", errors.New("the target flag is empty: " + errOne.Error())
	}
	admin, endpoint := getenv(AdminSocketEnv), getenv(EndpointSocketEnv)
	switch {
	case admin != "" && endpoint != "":
		return "", "", fmt.Errorf("both %s and %s are set: %v", AdminSocketEnv, EndpointSocketEnv, errOne)
	case admin != "":
		return "CA", admin, nil
	case endpoint != "":
		p, err := SocketPath(endpoint)
		if err != nil {
			return "", "", fmt.Errorf("%s=%v", EndpointSocketEnv, err)
		}
		return "agent", p, nil
	}
	return "agent", DefaultAgentSocket, nil
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
