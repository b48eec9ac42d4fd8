package api

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/signet-mesh/signet/ca/rotation"
	"github.com/signet-mesh/signet/ca/store"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

// RootRotation is what the admin API needs to rotate roots;
// *rotation.Manager implements it. Methods are safe for concurrent use.
type RootRotation interface {
	Authorities(ctx context.Context) ([]rotation.AuthorityStatus, int64, error)
	PrepareRoot(ctx context.Context, p rotation.PrepareParams) (*rotation.PrepareResult, error)
	ActivateRoot(ctx context.Context, p rotation.ActivateParams) (*store.Authority, error)
	RetireRoot(ctx context.Context, p rotation.RetireParams) (*store.Authority, error)
	Schedule(ctx context.Context) (rotation.ScheduleStatus, error)
}

var _ RootRotation = (*rotation.Manager)(nil)

// ListAuthorities implements adminv1.AdminServiceServer: every authority,
// oldest first, with its unexpired SVIDs and, for roots in the bundle, how
// many connected agents have applied a bundle that holds it.
func (s *AdminService) ListAuthorities(ctx context.Context, _ *adminv1.ListAuthoritiesRequest) (*adminv1.ListAuthoritiesResponse, error) {
	if s.cfg.Roots == nil {
		return nil, status.Error(codes.Unimplemented, "root rotation is not available on this server")
	}
	// The snapshot is taken first: an agent that applies a bundle
	// meanwhile is counted as stale, never the other way round.
	agents := s.agentRevisions()
	auths, rev, err := s.cfg.Roots.Authorities(ctx)
	if err != nil {
		return nil, rootStatus(ctx, s.log, "listing authorities", err)
	}
	sched, err := s.cfg.Roots.Schedule(ctx)
	if err != nil {
		return nil, rootStatus(ctx, s.log, "reading the root schedule", err)
	}
	out := &adminv1.ListAuthoritiesResponse{BundleRevision: rev, RootSchedule: &adminv1.RootSchedule{
		Automatic: sched.Automatic, NextStep: sched.NextStep, Waiting: sched.Waiting,
	}}
	if !sched.NextStepAt.IsZero() {
		out.RootSchedule.NextStepAt = sched.NextStepAt.Unix()
	}
	for i := range auths {
		out.Authorities = append(out.Authorities, authorityProto(&auths[i], agents))
	}
	return out, nil
}

// PrepareRoot implements adminv1.AdminServiceServer.
func (s *AdminService) PrepareRoot(ctx context.Context, req *adminv1.PrepareRootRequest) (*adminv1.PrepareRootResponse, error) {
	if s.cfg.Roots == nil {
		return nil, status.Error(codes.Unimplemented, "root rotation is not available on this server")
	}
	res, err := s.cfg.Roots.PrepareRoot(ctx, rotation.PrepareParams{
		CertPEM:  req.GetCertPem(),
		ChainPEM: req.GetChainPem(),
		KeyPEM:   req.GetKeyPem(),
		CSRKeyID: req.GetCsrKeyId(),
		CSROnly:  req.GetCsrOnly(),
		Actor:    adminActor(ctx),
	})
	if err != nil {
		return nil, rootStatus(ctx, s.log, "preparing root", err)
	}
	out := &adminv1.PrepareRootResponse{CsrPem: res.CSRPEM, CsrKeyId: res.CSRKeyID}
	if res.Authority != nil {
		out.Authority = authorityProto(&rotation.AuthorityStatus{Authority: *res.Authority}, s.agentRevisions())
	}
	return out, nil
}

// ActivateRoot implements adminv1.AdminServiceServer.
func (s *AdminService) ActivateRoot(ctx context.Context, req *adminv1.ActivateRootRequest) (*adminv1.ActivateRootResponse, error) {
	if s.cfg.Roots == nil {
		return nil, status.Error(codes.Unimplemented, "root rotation is not available on this server")
	}
	agents := s.agentRevisions()
	a, err := s.cfg.Roots.ActivateRoot(ctx, rotation.ActivateParams{
		ID:        req.GetId(),
		Agents:    agents,
		Force:     req.GetForce(),
		RotateNow: req.GetRotateNow(),
		Actor:     adminActor(ctx),
	})
	if err != nil {
		return nil, rootStatus(ctx, s.log, "activating root", err)
	}
	return &adminv1.ActivateRootResponse{Authority: authorityProto(&rotation.AuthorityStatus{Authority: *a}, agents)}, nil
}

// RetireRoot implements adminv1.AdminServiceServer.
func (s *AdminService) RetireRoot(ctx context.Context, req *adminv1.RetireRootRequest) (*adminv1.RetireRootResponse, error) {
	if s.cfg.Roots == nil {
		return nil, status.Error(codes.Unimplemented, "root rotation is not available on this server")
	}
	a, err := s.cfg.Roots.RetireRoot(ctx, rotation.RetireParams{ID: req.GetId(), Force: req.GetForce(), Actor: adminActor(ctx)})
	if err != nil {
		return nil, rootStatus(ctx, s.log, "retiring root", err)
	}
	return &adminv1.RetireRootResponse{Authority: authorityProto(&rotation.AuthorityStatus{Authority: *a}, nil)}, nil
}

// agentRevisions is the connected agents with the bundle revision each
// last reported applying, keyed by SPIFFE ID.
func (s *AdminService) agentRevisions() map[string]int64 {
	return s.cfg.Connections.AppliedRevisions()
}

// authorityProto converts a; agents (connected agent -> applied bundle
// revision) fills the applied counts of roots in the bundle.
func authorityProto(a *rotation.AuthorityStatus, agents map[string]int64) *adminv1.Authority {
	out := &adminv1.Authority{
		Id:             a.ID,
		Kind:           string(a.Kind),
		State:          string(a.State),
		KeyType:        a.KeyType,
		NotBefore:      a.NotBefore.Unix(),
		NotAfter:       a.NotAfter.Unix(),
		ParentId:       a.ParentID,
		UnexpiredSvids: a.UnexpiredSVIDs,
		ExpiringSoon:   a.ExpiringSoon,
		CrossSignedBy:  a.CrossSignedBy,
		ServerName:     a.ServerName,
	}
	if !a.CreatedAt.IsZero() {
		out.CreatedAtUnixNano = a.CreatedAt.UnixNano()
	}
	if a.Kind != store.KindJWT {
		out.Certificate = a.CertDER
	}
	if a.Kind == store.KindRoot && a.State != store.StateRetired {
		out.ConnectedAgents = int64(len(agents))
		out.AgentsApplied = int64(len(agents) - len(rotation.StaleAgents(a.BundleRevision, agents)))
	}
	return out
}

// rootStatus maps the errors of root rotation: refusals keep their text,
// which tells the operator why and what to do.
func rootStatus(ctx context.Context, log *slog.Logger, what string, err error) error {
	switch {
	case errors.Is(err, rotation.ErrAuthorityNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, rotation.ErrRefused), errors.Is(err, rotation.ErrUnsafe):
		log.InfoContext(ctx, "root rotation step refused", logOp, what, logReason, err.Error())
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, rotation.ErrInvalidImport):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, rotation.ErrConflict):
		return status.Error(codes.Aborted, err.Error()+"; try again")
	}
	return toStatus(ctx, log, what, err)
}
