package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/signet-mesh/signet/internal/backoff"
	"github.com/signet-mesh/signet/internal/clock"
	"github.com/signet-mesh/signet/internal/mtlspolicy"
	agentv1 "github.com/signet-mesh/signet/proto/signet/agent/v1"
	"github.com/signet-mesh/signet/sds/internal/logkey"
)

// reportTimeout bounds one ReportConnections call.
const reportTimeout = 10 * time.Second

// AgentConfig configures an AgentClient.
type AgentConfig struct {
	// SocketPath is the agent's Unix socket. Required.
	SocketPath string
	// SPIFFEID is the identity whose policy is watched. Required.
	SPIFFEID spiffeid.ID
	// Backoff tunes reconnection delays; zero takes internal/backoff's
	// defaults.
	Backoff backoff.Config
	// Clock paces reconnections; nil is the wall clock.
	Clock clock.Clock
	// Logger defaults to discarding.
	Logger *slog.Logger
}

// AgentClient is the proxy's side of the agent's ProxyService: a
// PolicySource that follows WatchPolicy (reconnecting with backoff), and a
// Reporter. The agent attests the calling process, which must be entitled
// to SPIFFEID.
type AgentClient struct {
	cfg    AgentConfig
	log    *slog.Logger
	conn   *grpc.ClientConn
	client agentv1.ProxyServiceClient
}

// DialAgent returns a client of the agent at cfg.SocketPath. The connection
// is made lazily; an absent agent shows in Watch's logs and Report's
// errors.
func DialAgent(cfg AgentConfig) (*AgentClient, error) {
	if cfg.SocketPath == "" {
		return nil, errors.New("proxy: agent socket path must be configured")
	}
	if cfg.SPIFFEID.IsZero() {
		return nil, errors.New("proxy: SPIFFE ID must be configured")
	}
	cfg.Clock = clock.OrReal(cfg.Clock)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	conn, err := grpc.NewClient("unix:"+cfg.SocketPath, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("proxy: agent socket %s: %w", cfg.SocketPath, err)
	}
	return &AgentClient{
		cfg:    cfg,
		log:    cfg.Logger.With(logkey.Component, "proxy-agent", logkey.Socket, cfg.SocketPath),
		conn:   conn,
		client: agentv1.NewProxyServiceClient(conn),
	}, nil
}

// Close closes the connection to the agent.
func (a *AgentClient) Close() error { return a.conn.Close() }

// Watch implements PolicySource. While the stream is broken (the agent
// restarts), the last policy delivered stays in force.
func (a *AgentClient) Watch(ctx context.Context, ports []uint32, update func(Policy)) error {
	b := backoff.New(a.cfg.Backoff)
	reconnecting := false
	err := backoff.Retry(ctx, a.cfg.Clock, b, func(ctx context.Context) error {
		stream, err := a.client.WatchPolicy(ctx, &agentv1.WatchPolicyRequest{SpiffeId: a.cfg.SPIFFEID.String(), Ports: ports})
		if err != nil {
			return err
		}
		for {
			resp, err := stream.Recv()
			if err != nil {
				return err
			}
			b.Reset()
			if reconnecting {
				reconnecting = false
				a.log.Info("policy watch reconnected to the agent")
			}
			update(policyFromProto(resp))
		}
	}, func(err error, d time.Duration) {
		reconnecting = true
		a.log.Warn("policy watch interrupted; reconnecting to the agent", logkey.Error, err, logkey.RetryIn, d)
	})
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// Report implements Reporter.
func (a *AgentClient) Report(ctx context.Context, counts []*agentv1.ConnectionCounts) error {
	ctx, cancel := context.WithTimeout(ctx, reportTimeout)
	defer cancel()
	_, err := a.client.ReportConnections(ctx, &agentv1.ReportConnectionsRequest{Connections: counts})
	return err
}

func policyFromProto(resp *agentv1.WatchPolicyResponse) Policy {
	p := Policy{Workload: decisionFromProto(resp.GetWorkload()), Ports: make(map[uint32]Decision, len(resp.GetPorts()))}
	for _, pp := range resp.GetPorts() {
		p.Ports[pp.GetPort()] = decisionFromProto(pp)
	}
	return p
}

// decisionFromProto fails closed: a mode this proxy does not know is
// enforced as STRICT.
func decisionFromProto(pp *agentv1.PortPolicy) Decision {
	mode, err := mtlspolicy.ParseMode(pp.GetMode())
	if err != nil {
		mode = mtlspolicy.Strict
	}
	return Decision{Mode: mode, DryRun: pp.GetDryRun(), Exempt: pp.GetExempt(), PolicyID: pp.GetPolicyId()}
}
