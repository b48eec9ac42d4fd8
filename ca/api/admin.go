package api

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/signet-mesh/signet/ca/audit"
	"github.com/signet-mesh/signet/ca/bundle"
	"github.com/signet-mesh/signet/ca/registration"
	"github.com/signet-mesh/signet/ca/store"
	"github.com/signet-mesh/signet/internal/clock"
	"github.com/signet-mesh/signet/internal/peercred"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

// Join token lifetimes.
const (
	DefaultJoinTokenTTL = 10 * time.Minute
	// MaxJoinTokenTTL keeps a leaked, unused token from staying useful.
	MaxJoinTokenTTL = 7 * 24 * time.Hour
	// MaxEntriesPerCall bounds one CreateEntries transaction.
	MaxEntriesPerCall = 10000
)

// AdminConfig configures the admin API.
type AdminConfig struct {
	Store       store.Store
	TrustDomain spiffeid.TrustDomain
	// AdminUIDs may call the API; the server's own uid is always allowed.
	AdminUIDs []uint32
	// SelfUID is the server process's uid.
	SelfUID     uint32
	Connections *Connections
	Clock       clock.Clock
	Logger      *slog.Logger
	// Roots rotates roots (root.go); nil answers the root RPCs with
	// Unimplemented.
	Roots RootRotation
	// CheckpointSigner signs audit exports' checkpoints.
	CheckpointSigner CheckpointSigner
}

// AdminService implements adminv1.AdminServiceServer.
type AdminService struct {
	adminv1.UnimplementedAdminServiceServer
	cfg AdminConfig
	log *slog.Logger
}

// NewAdminService returns the admin API with cfg's zero fields defaulted.
func NewAdminService(cfg AdminConfig) *AdminService {
	cfg.Clock = clock.OrReal(cfg.Clock)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Connections == nil {
		cfg.Connections = NewConnections()
	}
	return &AdminService{cfg: cfg, log: cfg.Logger.With(logComponent, "admin_api")}
}

// ServerOptions returns the interceptors that check every caller's peer
// credentials against the admin uids. The gRPC server must also use
// peercred.TransportCredentials.
func (s *AdminService) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			ctx, err := s.authorize(ctx, info.FullMethod)
			if err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if _, err := s.authorize(ss.Context(), info.FullMethod); err != nil {
				return err
			}
			return h(srv, ss)
		}),
	}
}

// Actor is an admin caller, as audit records name it.
type Actor struct {
	UID  uint32
	User string
}

func (a Actor) String() string { return audit.AdminActor(a.UID, a.User) }

type actorKey struct{}

// ActorFromContext returns the admin who made the call.
func ActorFromContext(ctx context.Context) (Actor, bool) {
	a, ok := ctx.Value(actorKey{}).(Actor)
	return a, ok
}

func (s *AdminService) authorize(ctx context.Context, method string) (context.Context, error) {
	c, err := peercred.FromContext(ctx)
	if err != nil {
		return ctx, status.Error(codes.Unauthenticated, "admin API is only served on a Unix socket with peer credentials")
	}
	if c.UID != s.cfg.SelfUID && !slices.Contains(s.cfg.AdminUIDs, c.UID) {
		s.log.WarnContext(ctx, "admin call refused", logUID, c.UID, logMethod, method)
		return ctx, status.Errorf(codes.PermissionDenied, "uid %d is not an admin of this server", c.UID)
	}
	a := Actor{UID: c.UID, User: strconv.FormatUint(uint64(c.UID), 10)}
	if u, err := user.LookupId(a.User); err == nil {
		a.User = u.Username
	}
	return context.WithValue(ctx, actorKey{}, a), nil
}

// CreateJoinToken implements adminv1.AdminServiceServer.
func (s *AdminService) CreateJoinToken(ctx context.Context, req *adminv1.CreateJoinTokenRequest) (*adminv1.CreateJoinTokenResponse, error) {
	ttl := time.Duration(req.GetTtlSeconds()) * time.Second
	switch {
	case ttl == 0:
		ttl = DefaultJoinTokenTTL
	case ttl < 0 || ttl > MaxJoinTokenTTL:
		return nil, status.Errorf(codes.InvalidArgument, "ttl %s must be between 1s and %s", ttl, MaxJoinTokenTTL)
	}
	secret := make([]byte, 32)
	idBytes := make([]byte, 8)
	rand.Read(secret)
	rand.Read(idBytes)
	token := base64.RawURLEncoding.EncodeToString(secret)
	tokenID := hex.EncodeToString(idBytes)
	name := req.GetNodeName()
	if name == "" {
		name = tokenID
	} else if err := registration.ParsePathSegment("node_name", name); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	nodeID, err := AgentID(s.cfg.TrustDomain, AttestorJoinToken, name)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "node name %q: %v", name, err)
	}
	now := s.cfg.Clock.Now()
	tok := &store.JoinToken{Hash: HashJoinToken(token), ID: tokenID, SPIFFEID: nodeID.String(), ExpiresAt: now.Add(ttl), CreatedAt: now}
	err = s.cfg.Store.Update(ctx, func(tx store.Tx) error {
		if err := tx.PutJoinToken(tok); err != nil {
			return err
		}
		return recordAudit(tx, audit.Record{Type: audit.TypeTokenCreated, Outcome: audit.OutcomeSuccess, Actor: adminActor(ctx), Subject: tok.SPIFFEID,
			Details: map[string]string{audit.DetailTokenID: tok.ID, audit.DetailNotAfter: audit.FormatTime(tok.ExpiresAt), audit.DetailMethod: "CreateJoinToken"}}, now)
	})
	if err != nil {
		return nil, toStatus(ctx, s.log, "creating join token", err)
	}
	s.log.InfoContext(ctx, "join token created", logTokenID, tokenID, logSPIFFEID, nodeID.String(), logExpiresAt, tok.ExpiresAt)
	return &adminv1.CreateJoinTokenResponse{Token: token, SpiffeId: nodeID.String(), ExpiresAt: tok.ExpiresAt.Unix()}, nil
}

// CreateEntries implements adminv1.AdminServiceServer: every entry or none.
func (s *AdminService) CreateEntries(ctx context.Context, req *adminv1.CreateEntriesRequest) (*adminv1.CreateEntriesResponse, error) {
	in := req.GetEntries()
	switch {
	case len(in) == 0:
		return nil, status.Error(codes.InvalidArgument, "no entries given")
	case len(in) > MaxEntriesPerCall:
		return nil, status.Errorf(codes.InvalidArgument, "%d entries exceed the limit of %d per call", len(in), MaxEntriesPerCall)
	}
	entries := make([]*store.Entry, len(in))
	now := s.cfg.Clock.Now()
	for i, pe := range in {
		if pe.GetId() != "" || pe.GetRevision() != 0 {
			return nil, status.Errorf(codes.InvalidArgument, "entry %d: id and revision are assigned by the server", i+1)
		}
		v, err := registration.Validate(registration.Entry{
			SPIFFEID:  pe.GetSpiffeId(),
			ParentID:  pe.GetParentId(),
			Selectors: pe.GetSelectors(),
			X509TTL:   time.Duration(pe.GetX509TtlSeconds()) * time.Second,
			JWTTTL:    time.Duration(pe.GetJwtTtlSeconds()) * time.Second,
			DNSNames:  pe.GetDnsNames(),
		}, s.cfg.TrustDomain)
		if err != nil {
			return nil, status.Error(codes.InvalidArgument, entryErrPrefix(i, len(in))+err.Error())
		}
		entries[i] = &store.Entry{
			ID:        newEntryID(),
			SPIFFEID:  v.SPIFFEID,
			ParentID:  v.ParentID,
			Selectors: v.Selectors,
			X509TTL:   v.X509TTL,
			JWTTTL:    v.JWTTTL,
			DNSNames:  v.DNSNames,
			CreatedAt: now,
		}
	}
	err := s.cfg.Store.Update(ctx, func(tx store.Tx) error {
		parents, err := knownParents(tx)
		if err != nil {
			return err
		}
		for i, e := range entries {
			if !parents[e.ParentID] {
				return status.Errorf(codes.FailedPrecondition, "%sparent_id %q: no such agent (attested node or unused join token)", entryErrPrefix(i, len(entries)), e.ParentID)
			}
			if e.Revision, err = tx.NextRevision(); err != nil {
				return err
			}
			if err := tx.CreateEntry(e); err != nil {
				if isAlreadyExists(err) {
					return status.Errorf(codes.AlreadyExists, "%san entry for %s with parent %s and selectors %s already exists", entryErrPrefix(i, len(entries)), e.SPIFFEID, e.ParentID, strings.Join(e.Selectors, ","))
				}
				return err
			}
			if err := recordAudit(tx, entryRecord(audit.TypeEntryCreated, adminActor(ctx), e, "CreateEntries"), now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, toStatus(ctx, s.log, "creating entries", err)
	}
	out := &adminv1.CreateEntriesResponse{}
	for _, e := range entries {
		out.Entries = append(out.Entries, adminEntryProto(e))
		s.log.InfoContext(ctx, "entry created", logEntryID, e.ID, logSPIFFEID, e.SPIFFEID, logParentID, e.ParentID)
	}
	return out, nil
}

func entryErrPrefix(i, n int) string {
	if n == 1 {
		return ""
	}
	return fmt.Sprintf("entry %d: ", i+1)
}

// knownParents is the set of agent IDs an entry may name as parent: attested
// nodes, and the nodes that unused join tokens will create (so entries can
// be registered before the agent starts).
func knownParents(tx store.Tx) (map[string]bool, error) {
	out := map[string]bool{}
	nodes, err := tx.ListNodes()
	if err != nil {
		return nil, err
	}
	for _, n := range nodes {
		out[n.SPIFFEID] = true
	}
	toks, err := tx.ListJoinTokens()
	if err != nil {
		return nil, err
	}
	for _, t := range toks {
		out[t.SPIFFEID] = true
	}
	return out, nil
}

func newEntryID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// ListEntries implements adminv1.AdminServiceServer.
func (s *AdminService) ListEntries(ctx context.Context, req *adminv1.ListEntriesRequest) (*adminv1.ListEntriesResponse, error) {
	var entries []*store.Entry
	err := s.cfg.Store.View(ctx, func(tx store.Tx) error {
		var err error
		entries, err = tx.ListEntries(store.EntryFilter{ParentID: req.GetParentId(), SPIFFEID: req.GetSpiffeId()})
		return err
	})
	if err != nil {
		return nil, toStatus(ctx, s.log, "listing entries", err)
	}
	out := &adminv1.ListEntriesResponse{}
	for _, e := range entries {
		out.Entries = append(out.Entries, adminEntryProto(e))
	}
	return out, nil
}

// GetEntry implements adminv1.AdminServiceServer.
func (s *AdminService) GetEntry(ctx context.Context, req *adminv1.GetEntryRequest) (*adminv1.GetEntryResponse, error) {
	var e *store.Entry
	err := s.cfg.Store.View(ctx, func(tx store.Tx) error {
		var err error
		e, err = tx.GetEntry(req.GetId())
		return err
	})
	if isNotFound(err) {
		return nil, status.Errorf(codes.NotFound, "entry %q not found", req.GetId())
	}
	if err != nil {
		return nil, toStatus(ctx, s.log, "getting entry", err)
	}
	return &adminv1.GetEntryResponse{Entry: adminEntryProto(e)}, nil
}

// DeleteEntry implements adminv1.AdminServiceServer.
func (s *AdminService) DeleteEntry(ctx context.Context, req *adminv1.DeleteEntryRequest) (*adminv1.DeleteEntryResponse, error) {
	err := s.cfg.Store.Update(ctx, func(tx store.Tx) error {
		e, err := tx.GetEntry(req.GetId())
		if err != nil {
			return err
		}
		if err := tx.DeleteEntry(req.GetId()); err != nil {
			return err
		}
		if _, err := tx.NextRevision(); err != nil {
			return err
		}
		return recordAudit(tx, entryRecord(audit.TypeEntryDeleted, adminActor(ctx), e, "DeleteEntry"), s.cfg.Clock.Now())
	})
	if isNotFound(err) {
		return nil, status.Errorf(codes.NotFound, "entry %q not found", req.GetId())
	}
	if err != nil {
		return nil, toStatus(ctx, s.log, "deleting entry", err)
	}
	s.log.InfoContext(ctx, "entry deleted", logEntryID, req.GetId())
	return &adminv1.DeleteEntryResponse{}, nil
}

// ListNodes implements adminv1.AdminServiceServer.
func (s *AdminService) ListNodes(ctx context.Context, _ *adminv1.ListNodesRequest) (*adminv1.ListNodesResponse, error) {
	var nodes []*store.Node
	err := s.cfg.Store.View(ctx, func(tx store.Tx) error {
		var err error
		nodes, err = tx.ListNodes()
		return err
	})
	if err != nil {
		return nil, toStatus(ctx, s.log, "listing nodes", err)
	}
	out := &adminv1.ListNodesResponse{}
	for _, n := range nodes {
		id, _ := spiffeid.FromString(n.SPIFFEID)
		out.Nodes = append(out.Nodes, &adminv1.Node{
			SpiffeId:              n.SPIFFEID,
			Attestor:              n.Attestor,
			Serial:                n.Serial,
			AttestedAt:            n.AttestedAt.Unix(),
			ExpiresAt:             n.ExpiresAt.Unix(),
			Connected:             s.cfg.Connections.Connected(id),
			AppliedBundleRevision: n.AppliedBundleRevision,
		})
	}
	return out, nil
}

// EvictNode implements adminv1.AdminServiceServer.
func (s *AdminService) EvictNode(ctx context.Context, req *adminv1.EvictNodeRequest) (*adminv1.EvictNodeResponse, error) {
	err := s.cfg.Store.Update(ctx, func(tx store.Tx) error {
		if err := tx.DeleteNode(req.GetSpiffeId()); err != nil {
			return err
		}
		// Wake the node's sync stream so it ends now.
		if _, err := tx.NextRevision(); err != nil {
			return err
		}
		return recordAudit(tx, audit.Record{Type: audit.TypeNodeEvicted, Outcome: audit.OutcomeSuccess, Actor: adminActor(ctx), Subject: req.GetSpiffeId(),
			Details: map[string]string{audit.DetailMethod: "EvictNode"}}, s.cfg.Clock.Now())
	})
	if isNotFound(err) {
		return nil, status.Errorf(codes.NotFound, "node %q not found", req.GetSpiffeId())
	}
	if err != nil {
		return nil, toStatus(ctx, s.log, "evicting node", err)
	}
	s.log.InfoContext(ctx, "node evicted", logSPIFFEID, req.GetSpiffeId())
	return &adminv1.EvictNodeResponse{}, nil
}

// ListSVIDs implements adminv1.AdminServiceServer.
func (s *AdminService) ListSVIDs(ctx context.Context, req *adminv1.ListSVIDsRequest) (*adminv1.ListSVIDsResponse, error) {
	now := s.cfg.Clock.Now()
	out := &adminv1.ListSVIDsResponse{}
	err := s.cfg.Store.View(ctx, func(tx store.Tx) error {
		return tx.ForEachSVID(func(r *store.SVIDRecord) error {
			if req.GetValid() && (now.Before(r.NotBefore) || !now.Before(r.NotAfter)) {
				return nil
			}
			if req.GetSpiffeId() != "" && r.SPIFFEID != req.GetSpiffeId() {
				return nil
			}
			out.Svids = append(out.Svids, &adminv1.SVID{
				Serial:      r.Serial,
				SpiffeId:    r.SPIFFEID,
				NodeId:      r.NodeID,
				EntryId:     r.EntryID,
				NotBefore:   r.NotBefore.Unix(),
				ExpiresAt:   r.NotAfter.Unix(),
				AuthorityId: r.AuthorityID,
			})
			return nil
		})
	})
	if err != nil {
		return nil, toStatus(ctx, s.log, "listing SVIDs", err)
	}
	return out, nil
}

// GetBundle implements adminv1.AdminServiceServer.
func (s *AdminService) GetBundle(ctx context.Context, _ *adminv1.GetBundleRequest) (*adminv1.GetBundleResponse, error) {
	b, err := bundle.Read(ctx, s.cfg.Store, s.cfg.TrustDomain)
	if err != nil {
		return nil, toStatus(ctx, s.log, "reading bundle", err)
	}
	doc, err := b.SPIFFEBundle().Marshal()
	if err != nil {
		return nil, toStatus(ctx, s.log, "encoding SPIFFE bundle", err)
	}
	out := &adminv1.GetBundleResponse{TrustDomain: b.TrustDomain.Name(), Revision: b.Revision, SpiffeBundle: doc}
	for _, c := range b.X509Authorities {
		out.X509Authorities = append(out.X509Authorities, c.Raw)
	}
	return out, nil
}
