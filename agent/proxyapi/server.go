package proxyapi

import (
	"context"
	"log/slog"
	"slices"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/signet-mesh/signet/agent/cache"
	"github.com/signet-mesh/signet/agent/internal/logkey"
	"github.com/signet-mesh/signet/internal/mtlspolicy"
	"github.com/signet-mesh/signet/internal/peercred"
	agentv1 "github.com/signet-mesh/signet/proto/signet/agent/v1"
)

// Limits of one request.
const (
	// MaxPorts bounds the ports of one WatchPolicy: a sidecar has a
	// handful of inbound listeners.
	MaxPorts = 256
	// MaxCounts bounds the counts of one ReportConnections.
	MaxCounts = 1024
)

// Attestor turns a caller's peer credentials into selectors; an error means
// the caller cannot be identified. agent/attestor implements it.
type Attestor interface {
	Attest(ctx context.Context, c peercred.Creds) ([]string, error)
}

// Policies is the agent's view of the mTLS policy set.
type Policies interface {
	// MTLSPolicies returns the policy set, whether it is known yet, and a
	// channel closed at the next change. The slice must not be modified.
	MTLSPolicies() (policies []mtlspolicy.Policy, known bool, changed <-chan struct{})
}

// Reporter takes connection counts to forward to the CA.
type Reporter interface {
	// AddConnections adds counts (deltas) of workloads the caller was
	// authorized for. It must not block.
	AddConnections(counts []*agentv1.ConnectionCounts)
}

// Config configures a Server. Every field but Logger is required.
type Config struct {
	// Cache tells which SPIFFE IDs a caller is entitled to.
	Cache    *cache.Cache
	Attestor Attestor
	Policies Policies
	Reporter Reporter
	// Logger receives refused calls. Nil discards.
	Logger *slog.Logger
}

// Server implements agentv1.ProxyServiceServer. It is safe for concurrent
// use.
type Server struct {
	agentv1.UnimplementedProxyServiceServer
	cfg Config
	log *slog.Logger
}

// New returns a Server.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, log: cfg.Logger.With(logkey.Component, "proxyapi")}
}

// Register registers the service on g, which must be built with
// grpc.Creds(peercred.TransportCredentials()) so that callers can be
// attested.
func (s *Server) Register(g grpc.ServiceRegistrar) {
	agentv1.RegisterProxyServiceServer(g, s)
}

// WatchPolicy implements agentv1.ProxyServiceServer.
func (s *Server) WatchPolicy(req *agentv1.WatchPolicyRequest, stream grpc.ServerStreamingServer[agentv1.WatchPolicyResponse]) error {
	ctx := stream.Context()
	log := s.log.With(logkey.Method, "WatchPolicy", logkey.SPIFFEID, req.GetSpiffeId())
	if len(req.GetPorts()) > MaxPorts {
		return status.Errorf(codes.InvalidArgument, "%d ports exceed the limit of %d", len(req.GetPorts()), MaxPorts)
	}
	for _, p := range req.GetPorts() {
		if p == 0 || p > 65535 {
			return status.Errorf(codes.InvalidArgument, "port %d: must be 1-65535", p)
		}
	}
	sels, err := s.attest(ctx, log)
	if err != nil {
		return err
	}
	var last *agentv1.WatchPolicyResponse
	for {
		// Entitlement is checked again on every change: a proxy whose
		// entry was deleted stops getting its policy.
		if err := s.entitled(log, sels, req.GetSpiffeId()); err != nil {
			return err
		}
		policies, known, changed := s.cfg.Policies.MTLSPolicies()
		if known {
			resp := decide(policies, req.GetSpiffeId(), req.GetPorts())
			if !proto.Equal(resp, last) {
				if err := stream.Send(resp); err != nil {
					return err
				}
				last = resp
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
	}
}

// decide is the response for id's ports under policies.
func decide(policies []mtlspolicy.Policy, id string, ports []uint32) *agentv1.WatchPolicyResponse {
	one := func(port uint32) *agentv1.PortPolicy {
		w, exempt := mtlspolicy.Winner(policies, id, port)
		mode, dryRun, _ := mtlspolicy.Effective(policies, id, port)
		pp := &agentv1.PortPolicy{Port: port, Mode: string(mode), DryRun: dryRun, Exempt: exempt}
		if w != nil {
			pp.PolicyId = w.ID
		}
		return pp
	}
	resp := &agentv1.WatchPolicyResponse{Workload: one(0)}
	for _, p := range ports {
		resp.Ports = append(resp.Ports, one(p))
	}
	return resp
}

// ReportConnections implements agentv1.ProxyServiceServer.
func (s *Server) ReportConnections(ctx context.Context, req *agentv1.ReportConnectionsRequest) (*agentv1.ReportConnectionsResponse, error) {
	log := s.log.With(logkey.Method, "ReportConnections")
	if len(req.GetConnections()) > MaxCounts {
		return nil, status.Errorf(codes.InvalidArgument, "%d counts exceed the limit of %d", len(req.GetConnections()), MaxCounts)
	}
	for _, c := range req.GetConnections() {
		if c.GetPort() > 65535 || c.GetMtls() < 0 || c.GetPlaintext() < 0 || c.GetRefused() < 0 {
			return nil, status.Errorf(codes.InvalidArgument, "counts of %s port %d: ports are 0-65535 and counts are not negative", c.GetSpiffeId(), c.GetPort())
		}
	}
	sels, err := s.attest(ctx, log)
	if err != nil {
		return nil, err
	}
	ids := s.ids(sels)
	for _, c := range req.GetConnections() {
		if !slices.Contains(ids, c.GetSpiffeId()) {
			log.Warn("connection report refused", logkey.SPIFFEID, c.GetSpiffeId(), logkey.Reason, "caller is not entitled to the SPIFFE ID")
			return nil, status.Errorf(codes.PermissionDenied, "caller is not entitled to report for %q", c.GetSpiffeId())
		}
	}
	s.cfg.Reporter.AddConnections(req.GetConnections())
	return &agentv1.ReportConnectionsResponse{}, nil
}

// attest identifies the caller: Unavailable until the agent is ready,
// PermissionDenied when attestation fails.
func (s *Server) attest(ctx context.Context, log *slog.Logger) ([]string, error) {
	if !s.cfg.Cache.Ready() {
		return nil, status.Error(codes.Unavailable, "agent is not ready yet: no trust bundle from the CA")
	}
	creds, err := peercred.FromContext(ctx)
	if err != nil {
		log.Error("call without peer credentials: serve the proxy API with peercred.TransportCredentials", logkey.Error, err)
		return nil, status.Error(codes.PermissionDenied, "unable to identify caller")
	}
	sels, err := s.cfg.Attestor.Attest(ctx, creds)
	if err != nil {
		if ctx.Err() != nil {
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		log.Warn("proxy attestation failed", logkey.PID, creds.PID, logkey.UID, creds.UID, logkey.Error, err)
		return nil, status.Error(codes.PermissionDenied, "workload attestation failed")
	}
	return sels, nil
}

// ids are the SPIFFE IDs a caller with sels is entitled to.
func (s *Server) ids(sels []string) []string {
	var out []string
	for _, e := range s.cfg.Cache.Lookup(sels).Entries {
		out = append(out, e.SPIFFEID.String())
	}
	return out
}

func (s *Server) entitled(log *slog.Logger, sels []string, id string) error {
	if id == "" {
		return status.Error(codes.InvalidArgument, "spiffe_id: is required")
	}
	if !slices.Contains(s.ids(sels), id) {
		log.Warn("policy watch refused", logkey.Reason, "caller is not entitled to the SPIFFE ID")
		return status.Errorf(codes.PermissionDenied, "caller is not entitled to %q", id)
	}
	return nil
}
