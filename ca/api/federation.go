package api

import (
	"cmp"
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/signet-mesh/signet/ca/federation"
	"github.com/signet-mesh/signet/ca/store"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
	nodev1 "github.com/signet-mesh/signet/proto/signet/node/v1"
)

// FederationService implements adminv1.FederationServiceServer over a
// federation.Manager. It is registered on the admin socket's server, so
// AdminService's peer-credential check (ServerOptions) guards it too.
type FederationService struct {
	adminv1.UnimplementedFederationServiceServer
	fed *federation.Manager
	td  spiffeid.TrustDomain
	log *slog.Logger
}

// NewFederationService returns the federation admin API.
func NewFederationService(fed *federation.Manager, td spiffeid.TrustDomain, logger *slog.Logger) *FederationService {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &FederationService{fed: fed, td: td, log: logger.With(logComponent, "admin_api")}
}

// CreateFederation implements adminv1.FederationServiceServer.
func (s *FederationService) CreateFederation(ctx context.Context, req *adminv1.CreateFederationRequest) (*adminv1.CreateFederationResponse, error) {
	r, err := s.fed.Create(ctx, adminActor(ctx), federation.Params{
		TrustDomain:       req.GetTrustDomain(),
		BundleEndpointURL: req.GetBundleEndpointUrl(),
		Profile:           req.GetProfile(),
		EndpointSPIFFEID:  req.GetEndpointSpiffeId(),
		InitialBundle:     req.GetInitialBundle(),
	})
	if err != nil {
		return nil, s.status(ctx, "creating federation relationship", err)
	}
	return &adminv1.CreateFederationResponse{Relationship: relationshipProto(&federation.Status{Relationship: r})}, nil
}

// ListFederations implements adminv1.FederationServiceServer.
func (s *FederationService) ListFederations(ctx context.Context, _ *adminv1.ListFederationsRequest) (*adminv1.ListFederationsResponse, error) {
	sts, err := s.fed.List(ctx)
	if err != nil {
		return nil, s.status(ctx, "listing federation relationships", err)
	}
	out := &adminv1.ListFederationsResponse{Relationships: make([]*adminv1.FederationRelationship, 0, len(sts))}
	for _, st := range sts {
		out.Relationships = append(out.Relationships, relationshipProto(st))
	}
	return out, nil
}

// GetFederation implements adminv1.FederationServiceServer.
func (s *FederationService) GetFederation(ctx context.Context, req *adminv1.GetFederationRequest) (*adminv1.GetFederationResponse, error) {
	td, err := federation.ParseTrustDomain("trust_domain", req.GetTrustDomain())
	if err != nil {
		return nil, s.status(ctx, "reading federation relationship", err)
	}
	st, err := s.fed.Get(ctx, td)
	if err != nil {
		return nil, s.status(ctx, "reading federation relationship", err)
	}
	return &adminv1.GetFederationResponse{Relationship: relationshipProto(st)}, nil
}

// DeleteFederation implements adminv1.FederationServiceServer.
func (s *FederationService) DeleteFederation(ctx context.Context, req *adminv1.DeleteFederationRequest) (*adminv1.DeleteFederationResponse, error) {
	td, err := federation.ParseTrustDomain("trust_domain", req.GetTrustDomain())
	if err != nil {
		return nil, s.status(ctx, "deleting federation relationship", err)
	}
	if err := s.fed.Delete(ctx, adminActor(ctx), td); err != nil {
		return nil, s.status(ctx, "deleting federation relationship", err)
	}
	return &adminv1.DeleteFederationResponse{}, nil
}

// RefreshFederation implements adminv1.FederationServiceServer.
func (s *FederationService) RefreshFederation(ctx context.Context, req *adminv1.RefreshFederationRequest) (*adminv1.RefreshFederationResponse, error) {
	td, err := federation.ParseTrustDomain("trust_domain", req.GetTrustDomain())
	if err != nil {
		return nil, s.status(ctx, "refreshing federated bundle", err)
	}
	updated, err := s.fed.Refresh(ctx, td)
	if err != nil {
		return nil, s.status(ctx, "refreshing federated bundle", err)
	}
	st, err := s.fed.Get(ctx, td)
	if err != nil {
		return nil, s.status(ctx, "refreshing federated bundle", err)
	}
	return &adminv1.RefreshFederationResponse{Relationship: relationshipProto(st), Updated: updated}, nil
}

// status maps the federation package's errors; the rest goes through
// toStatus.
func (s *FederationService) status(ctx context.Context, what string, err error) error {
	switch {
	case federation.IsInvalid(err):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, federation.ErrNotFound):
		return status.Error(codes.NotFound, err.Error()+" (see signet federation list)")
	case errors.Is(err, federation.ErrAlreadyExists):
		return status.Error(codes.AlreadyExists, err.Error()+" (delete it first to change it)")
	case federation.IsRefusal(err):
		return status.Error(codes.FailedPrecondition, what+": refused, the last good bundle is kept: "+err.Error())
	case ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) && isFetchFailure(err):
		return status.Error(codes.Unavailable, what+": the last good bundle is kept: "+err.Error())
	}
	return toStatus(ctx, s.log, what, err)
}

// isFetchFailure tells an endpoint that could not be reached (the
// manager's fetch errors) from a store failure, which toStatus logs.
func isFetchFailure(err error) bool {
	var fe *federation.FetchError
	return errors.As(err, &fe)
}

func relationshipProto(st *federation.Status) *adminv1.FederationRelationship {
	r := st.Relationship
	out := &adminv1.FederationRelationship{
		TrustDomain:       r.TrustDomain.Name(),
		BundleEndpointUrl: r.BundleEndpointURL,
		Profile:           string(r.Profile),
		CreatedAt:         r.CreatedAt.Unix(),
		LastRefreshAt:     unixOrZero(st.LastRefresh),
		LastError:         st.LastError,
		LastErrorAt:       unixOrZero(st.LastErrorAt),
		NextRefreshAt:     unixOrZero(st.NextRefresh),
	}
	if !r.EndpointSPIFFEID.IsZero() {
		out.EndpointSpiffeId = r.EndpointSPIFFEID.String()
	}
	if b := r.Bundle; b != nil {
		if doc, err := b.Marshal(); err == nil {
			out.Bundle = doc
		}
		out.Sequence, _ = b.SequenceNumber()
		if h, ok := b.RefreshHint(); ok {
			out.RefreshHintSeconds = int64(h.Seconds())
		}
		out.BundleUpdatedAt = unixOrZero(r.BundleUpdatedAt)
		out.X509Authorities = int32(len(b.X509Authorities()))
		out.JwtAuthorities = int32(len(b.JWTAuthorities()))
	}
	return out
}

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// checkFederatesWith refuses an entry that federates with a trust domain
// no relationship names: a typo would otherwise leave its workloads
// without the bundle they expect, silently.
func checkFederatesWith(tx store.Tx, names []string, prefix string) error {
	for _, n := range names {
		td, err := spiffeid.TrustDomainFromString(n)
		if err != nil {
			return status.Errorf(codes.InvalidArgument, "%sfederates_with %q: %v", prefix, n, err)
		}
		if _, err := federation.Get(tx, td); errors.Is(err, federation.ErrNotFound) {
			return status.Errorf(codes.FailedPrecondition, "%sfederates_with %q: no federation relationship with that trust domain (see signet federation create)", prefix, n)
		} else if err != nil {
			return err
		}
	}
	return nil
}

// federatedBundles are the federated bundles as one entry-sync read them.
type federatedBundles struct {
	bundles []*spiffebundle.Bundle
	version string
}

func readFederatedBundles(tx store.Tx) (federatedBundles, error) {
	bs, v, err := federation.Bundles(tx)
	return federatedBundles{bundles: bs, version: v}, err
}

// proto is the complete set for the sync stream (empty, not nil, when
// there is none: the agent then drops what it had).
func (f federatedBundles) proto() *nodev1.FederatedBundles {
	out := &nodev1.FederatedBundles{}
	for _, b := range f.bundles {
		pb := &nodev1.Bundle{TrustDomain: b.TrustDomain().Name()}
		if seq, ok := b.SequenceNumber(); ok {
			pb.Revision = int64(seq)
		}
		if h, ok := b.RefreshHint(); ok {
			pb.RefreshHint = int64(h.Seconds())
		}
		for _, c := range b.X509Authorities() {
			pb.X509Authorities = append(pb.X509Authorities, c.Raw)
		}
		for id, k := range b.JWTAuthorities() {
			der, err := x509.MarshalPKIXPublicKey(k)
			if err != nil {
				continue
			}
			pb.JwtAuthorities = append(pb.JwtAuthorities, &nodev1.JWTKey{KeyId: id, PublicKey: der})
		}
		slices.SortFunc(pb.JwtAuthorities, func(a, b *nodev1.JWTKey) int { return cmp.Compare(a.KeyId, b.KeyId) })
		out.Bundles = append(out.Bundles, pb)
	}
	return out
}
