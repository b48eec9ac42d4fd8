package api

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
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
	// K8sClusters are the configured Kubernetes clusters: each one's
	// SPIFFE ID (ClusterID) may parent entries.
	K8sClusters []string
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

// CreateJoinToken implements adminv1.AdminServiceServer. A token for the
// name of a node that is attested and not evicted is refused
// (FailedPrecondition naming the node and the ways out) unless force: a
// second token for a live name would hand that node's identity, and every
// SVID it parents, to whoever holds the token. A forced token records the
// node it replaces; when it is used, the old node's SVIDs stop working.
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
		tok.Replaces = ""
		live, err := tx.GetNode(nodeID.String())
		switch {
		case isNotFound(err):
		case err != nil:
			return err
		case !req.GetForce():
			return status.Errorf(codes.FailedPrecondition, "node %s is attested (since %s) and not evicted: a token for its name would hand its identity to the token's holder; "+
				"evict it first (signet node evict %s) or take its name over with --force", nodeID, live.AttestedAt.UTC().Format(time.RFC3339), nodeID)
		default:
			tok.Replaces = live.SPIFFEID
		}
		if err := tx.PutJoinToken(tok); err != nil {
			return err
		}
		d := map[string]string{audit.DetailTokenID: tok.ID, audit.DetailNodeName: name, audit.DetailNotAfter: audit.FormatTime(tok.ExpiresAt), audit.DetailMethod: "CreateJoinToken"}
		if tok.Replaces != "" {
			d[audit.DetailReplaces] = tok.Replaces
			d[audit.DetailReplacedIncarnation] = live.Incarnation
		}
		return recordAudit(tx, audit.Record{Type: audit.TypeTokenCreated, Outcome: audit.OutcomeSuccess, Actor: adminActor(ctx), Subject: tok.SPIFFEID, Details: d}, now)
	})
	if err != nil {
		return nil, toStatus(ctx, s.log, "creating join token", err)
	}
	if tok.Replaces != "" {
		s.log.WarnContext(ctx, "join token created to take over a live node", logTokenID, tokenID, logSPIFFEID, nodeID.String(), logActor, adminActor(ctx))
	}
	s.log.InfoContext(ctx, "join token created", logTokenID, tokenID, logSPIFFEID, nodeID.String(), logExpiresAt, tok.ExpiresAt)
	return &adminv1.CreateJoinTokenResponse{Token: token, SpiffeId: nodeID.String(), ExpiresAt: tok.ExpiresAt.Unix(), Id: tokenID, ReplacedNodeId: tok.Replaces}, nil
}

// ListJoinTokens implements adminv1.AdminServiceServer: the unused,
// unexpired tokens, never their secrets (only their hashes are stored).
func (s *AdminService) ListJoinTokens(ctx context.Context, req *adminv1.ListJoinTokensRequest) (*adminv1.ListJoinTokensResponse, error) {
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, err
	}
	var after tokenKey
	paged, err := decodePageToken(req.GetPageToken(), &after)
	if err != nil {
		return nil, err
	}
	var toks []*store.JoinToken
	err = s.cfg.Store.View(ctx, func(tx store.Tx) (err error) {
		toks, err = tx.ListJoinTokens()
		return err
	})
	if err != nil {
		return nil, toStatus(ctx, s.log, "listing join tokens", err)
	}
	now := s.cfg.Clock.Now()
	live := make([]*adminv1.JoinToken, 0, len(toks))
	for _, t := range toks {
		if now.Before(t.ExpiresAt) {
			live = append(live, joinTokenProto(t))
		}
	}
	slices.SortFunc(live, func(a, b *adminv1.JoinToken) int { return tokenKeyOf(a).compare(tokenKeyOf(b)) })
	out := &adminv1.ListJoinTokensResponse{}
	out.Tokens, out.NextPageToken = takePage(live,
		func(t *adminv1.JoinToken) bool { return !paged || tokenKeyOf(t).compare(after) > 0 },
		func(t *adminv1.JoinToken) *adminv1.JoinToken { return t },
		func(t *adminv1.JoinToken) any { return tokenKeyOf(t) }, size)
	return out, nil
}

// tokenKey orders join tokens: by expiry, node name, then id.
type tokenKey struct {
	ExpiresAt int64  `json:"e"`
	NodeName  string `json:"n"`
	ID        string `json:"i"`
}

func tokenKeyOf(t *adminv1.JoinToken) tokenKey {
	return tokenKey{ExpiresAt: t.GetExpiresAt(), NodeName: t.GetNodeName(), ID: t.GetId()}
}

func (k tokenKey) compare(o tokenKey) int {
	return cmp.Or(cmp.Compare(k.ExpiresAt, o.ExpiresAt), strings.Compare(k.NodeName, o.NodeName), strings.Compare(k.ID, o.ID))
}

func joinTokenProto(t *store.JoinToken) *adminv1.JoinToken {
	return &adminv1.JoinToken{Id: t.ID, NodeName: nodeName(t.SPIFFEID), SpiffeId: t.SPIFFEID, ExpiresAt: t.ExpiresAt.Unix(), CreatedAt: t.CreatedAt.Unix()}
}

// RevokeJoinToken implements adminv1.AdminServiceServer: it deletes the
// unused tokens with the id, or for the node name, each with its audit
// record, in one transaction. NotFound when none matches.
func (s *AdminService) RevokeJoinToken(ctx context.Context, req *adminv1.RevokeJoinTokenRequest) (*adminv1.RevokeJoinTokenResponse, error) {
	id, name := req.GetId(), req.GetNodeName()
	if (id == "") == (name == "") {
		return nil, status.Error(codes.InvalidArgument, "give exactly one of a token id and a node name")
	}
	var nodeID string
	if name != "" {
		if err := registration.ParsePathSegment("node_name", name); err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		nid, err := AgentID(s.cfg.TrustDomain, AttestorJoinToken, name)
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "node name %q: %v", name, err)
		}
		nodeID = nid.String()
	}
	now := s.cfg.Clock.Now()
	out := &adminv1.RevokeJoinTokenResponse{}
	err := s.cfg.Store.Update(ctx, func(tx store.Tx) error {
		out.Revoked = nil
		toks, err := tx.ListJoinTokens()
		if err != nil {
			return err
		}
		for _, t := range toks {
			if (id != "" && t.ID != id) || (nodeID != "" && t.SPIFFEID != nodeID) {
				continue
			}
			if err := tx.DeleteJoinToken(t.Hash); err != nil {
				return err
			}
			if err := recordAudit(tx, audit.Record{Type: audit.TypeTokenRevoked, Outcome: audit.OutcomeSuccess, Actor: adminActor(ctx), Subject: t.SPIFFEID,
				Details: map[string]string{audit.DetailTokenID: t.ID, audit.DetailNodeName: nodeName(t.SPIFFEID), audit.DetailMethod: "RevokeJoinToken"}}, now); err != nil {
				return err
			}
			out.Revoked = append(out.Revoked, joinTokenProto(t))
		}
		if len(out.Revoked) == 0 {
			if id != "" {
				return status.Errorf(codes.NotFound, "no unused join token with id %q (see signet token list)", id)
			}
			return status.Errorf(codes.NotFound, "no unused join token for node %q (see signet token list)", name)
		}
		return nil
	})
	if err != nil {
		return nil, toStatus(ctx, s.log, "revoking join tokens", err)
	}
	for _, t := range out.Revoked {
		s.log.InfoContext(ctx, "join token revoked", logTokenID, t.Id, logSPIFFEID, t.SpiffeId, logActor, adminActor(ctx))
	}
	return out, nil
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

			FederatesWith:       pe.GetFederatesWith(),
			AllowDNSWildcards:   req.GetAllowDnsWildcards(),
			AllowDNSIPAddresses: req.GetAllowDnsIpAddresses(),
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

			FederatesWith: v.FederatesWith,
		}
	}
	err := s.cfg.Store.Update(ctx, func(tx store.Tx) error {
		parents := newParentCheck(tx)
		for _, c := range s.cfg.K8sClusters {
			if id, err := ClusterID(s.cfg.TrustDomain, c); err == nil {
				parents.known[id.String()] = true
			}
		}
		for i, e := range entries {
			ok, err := parents.isKnown(e.ParentID)
			if err != nil {
				return err
			}
			if !ok {
				return status.Errorf(codes.FailedPrecondition, "%sparent_id %q: no such agent (attested node or unused join token) or configured cluster (k8s_clusters)", entryErrPrefix(i, len(entries)), e.ParentID)
			}
			if err := checkFederatesWith(tx, e.FederatesWith, entryErrPrefix(i, len(entries))); err != nil {
				return err
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

// parentCheck tells the agent IDs an entry may name as parent: attested
// nodes, and the nodes that unused join tokens will create (so entries can
// be registered before the agent starts). It looks each parent up instead
// of listing every node and token: CreateEntries runs with the store's
// writer held, and decoding a fleet's worth of records there (tens of ms
// at 10,000 nodes) stalled every mint queued behind it (issue 16). The
// join tokens, which have no index by node, are listed only when a parent
// is not an attested node, once per transaction.
type parentCheck struct {
	tx     store.Tx
	known  map[string]bool // parents found, and the configured clusters
	tokens map[string]bool // the nodes of unused tokens; nil until needed
}

func newParentCheck(tx store.Tx) *parentCheck {
	return &parentCheck{tx: tx, known: map[string]bool{}}
}

// isKnown reports whether id may be an entry's parent.
func (p *parentCheck) isKnown(id string) (bool, error) {
	if p.known[id] {
		return true, nil
	}
	_, err := p.tx.GetNode(id)
	switch {
	case err == nil:
		p.known[id] = true
		return true, nil
	case !isNotFound(err):
		return false, err
	}
	if p.tokens == nil {
		toks, err := p.tx.ListJoinTokens()
		if err != nil {
			return false, err
		}
		p.tokens = make(map[string]bool, len(toks))
		for _, t := range toks {
			p.tokens[t.SPIFFEID] = true
		}
	}
	return p.tokens[id], nil
}

func newEntryID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// ListEntries implements adminv1.AdminServiceServer.
func (s *AdminService) ListEntries(ctx context.Context, req *adminv1.ListEntriesRequest) (*adminv1.ListEntriesResponse, error) {
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, err
	}
	var afterID string
	if _, err := decodePageToken(req.GetPageToken(), &afterID); err != nil {
		return nil, err
	}
	// One more than a page is read, from the token's key on: the store
	// reads the page, not the registry, and the extra one tells that
	// another page follows.
	var entries []*store.Entry
	err = s.cfg.Store.View(ctx, func(tx store.Tx) error {
		var err error
		entries, err = tx.ListEntries(store.EntryFilter{ParentID: req.GetParentId(), SPIFFEID: req.GetSpiffeId(), After: afterID, Limit: size + 1})
		return err
	})
	if err != nil {
		return nil, toStatus(ctx, s.log, "listing entries", err)
	}
	out := &adminv1.ListEntriesResponse{}
	// Entries come ordered by ID.
	out.Entries, out.NextPageToken = takePage(entries,
		func(e *store.Entry) bool { return e.ID > afterID },
		adminEntryProto,
		func(e *store.Entry) any { return e.ID }, size)
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

// UpdateEntry implements adminv1.AdminServiceServer: it changes the TTLs,
// DNS names or selectors of an entry in place, keeping its id and parent,
// validated as CreateEntries validates, under a new revision so that the
// agent re-mints its SVIDs. DNS names left unchanged are not checked
// against the wildcard and IP address rules again: they were accepted
// when set.
func (s *AdminService) UpdateEntry(ctx context.Context, req *adminv1.UpdateEntryRequest) (*adminv1.UpdateEntryResponse, error) {
	if req.GetId() == "" {
		return nil, status.Error(codes.InvalidArgument, "id: is required (see signet entry list)")
	}
	var updated *store.Entry
	err := s.cfg.Store.Update(ctx, func(tx store.Tx) error {
		old, err := tx.GetEntry(req.GetId())
		if isNotFound(err) {
			return status.Errorf(codes.NotFound, "entry %q not found", req.GetId())
		}
		if err != nil {
			return err
		}
		in := registration.Entry{
			SPIFFEID: old.SPIFFEID, ParentID: old.ParentID, Selectors: old.Selectors,
			X509TTL: old.X509TTL, JWTTTL: old.JWTTTL, DNSNames: old.DNSNames,
			AllowDNSWildcards: true, AllowDNSIPAddresses: true,
			FederatesWith: old.FederatesWith,
		}
		var changed []string
		if req.X509TtlSeconds != nil {
			in.X509TTL, changed = time.Duration(req.GetX509TtlSeconds())*time.Second, append(changed, "x509_ttl")
		}
		if req.JwtTtlSeconds != nil {
			in.JWTTTL, changed = time.Duration(req.GetJwtTtlSeconds())*time.Second, append(changed, "jwt_ttl")
		}
		if req.GetDnsNames() != nil {
			in.DNSNames, changed = req.GetDnsNames().GetValues(), append(changed, "dns_names")
			in.AllowDNSWildcards, in.AllowDNSIPAddresses = req.GetAllowDnsWildcards(), req.GetAllowDnsIpAddresses()
		}
		if req.GetSelectors() != nil {
			in.Selectors, changed = req.GetSelectors().GetValues(), append(changed, "selectors")
		}
		if req.GetFederatesWith() != nil {
			in.FederatesWith, changed = req.GetFederatesWith().GetValues(), append(changed, "federates_with")
		}
		if len(changed) == 0 {
			return status.Error(codes.InvalidArgument, "nothing to change: give a TTL, DNS names, selectors or federated trust domains")
		}
		v, err := registration.Validate(in, s.cfg.TrustDomain)
		if err != nil {
			return err
		}
		e := *old
		e.Selectors, e.X509TTL, e.JWTTTL, e.DNSNames = v.Selectors, v.X509TTL, v.JWTTTL, v.DNSNames
		e.FederatesWith = v.FederatesWith
		if req.GetFederatesWith() != nil {
			if err := checkFederatesWith(tx, e.FederatesWith, ""); err != nil {
				return err
			}
		}
		if e.Revision, err = tx.NextRevision(); err != nil {
			return err
		}
		if err := tx.UpdateEntry(&e); err != nil {
			if isAlreadyExists(err) {
				return status.Errorf(codes.AlreadyExists, "an entry for %s with parent %s and selectors %s already exists", e.SPIFFEID, e.ParentID, strings.Join(e.Selectors, ","))
			}
			return err
		}
		rec := entryRecord(audit.TypeEntryUpdated, adminActor(ctx), &e, "UpdateEntry")
		rec.Details[audit.DetailChanged] = strings.Join(changed, ",")
		updated = &e
		return recordAudit(tx, rec, s.cfg.Clock.Now())
	})
	if err != nil {
		return nil, toStatus(ctx, s.log, "updating entry", err)
	}
	s.log.InfoContext(ctx, "entry updated", logEntryID, updated.ID, logSPIFFEID, updated.SPIFFEID, logRevision, updated.Revision)
	return &adminv1.UpdateEntryResponse{Entry: adminEntryProto(updated)}, nil
}

// ListNodes implements adminv1.AdminServiceServer: the live nodes, and
// with include_evicted the evicted ones too (evicted_at set).
func (s *AdminService) ListNodes(ctx context.Context, req *adminv1.ListNodesRequest) (*adminv1.ListNodesResponse, error) {
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, err
	}
	var afterID string
	if _, err := decodePageToken(req.GetPageToken(), &afterID); err != nil {
		return nil, err
	}
	// One more than a page of each kind is read, from the token's key
	// on: the merged page is among them, and the extra one tells that
	// another page follows.
	var nodes, evicted []*store.Node
	err = s.cfg.Store.View(ctx, func(tx store.Tx) (err error) {
		if nodes, err = tx.ListNodesAfter(afterID, size+1); err != nil || !req.GetIncludeEvicted() {
			return err
		}
		evicted, err = tx.ListEvictedNodesAfter(afterID, size+1)
		return err
	})
	if err != nil {
		return nil, toStatus(ctx, s.log, "listing nodes", err)
	}
	all := append(nodes, evicted...)
	slices.SortFunc(all, func(a, b *store.Node) int { return strings.Compare(a.SPIFFEID, b.SPIFFEID) })
	out := &adminv1.ListNodesResponse{}
	out.Nodes, out.NextPageToken = takePage(all,
		func(n *store.Node) bool { return n.SPIFFEID > afterID },
		func(n *store.Node) *adminv1.Node {
			id, _ := spiffeid.FromString(n.SPIFFEID)
			pn := &adminv1.Node{
				SpiffeId:              n.SPIFFEID,
				Attestor:              n.Attestor,
				Serial:                n.Serial,
				AttestedAt:            n.AttestedAt.Unix(),
				ExpiresAt:             n.ExpiresAt.Unix(),
				AppliedBundleRevision: n.AppliedBundleRevision,
			}
			if n.EvictedAt.IsZero() {
				pn.Replica, pn.Connected = s.cfg.Connections.Replica(id)
			} else {
				pn.EvictedAt = n.EvictedAt.Unix()
			}
			return pn
		},
		func(n *store.Node) any { return n.SPIFFEID }, size)
	return out, nil
}

// EvictNode implements adminv1.AdminServiceServer. The node's record
// moves to an eviction record, so its SVIDs are refused as evicted (not
// unknown) until it attests again with a new token.
func (s *AdminService) EvictNode(ctx context.Context, req *adminv1.EvictNodeRequest) (*adminv1.EvictNodeResponse, error) {
	now := s.cfg.Clock.Now()
	err := s.cfg.Store.Update(ctx, func(tx store.Tx) error {
		n, err := tx.EvictNode(req.GetSpiffeId(), now)
		if err != nil {
			return err
		}
		// Wake the node's sync stream so it ends now.
		if _, err := tx.NextRevision(); err != nil {
			return err
		}
		return recordAudit(tx, audit.Record{Type: audit.TypeNodeEvicted, Outcome: audit.OutcomeSuccess, Actor: adminActor(ctx), Subject: req.GetSpiffeId(),
			Details: map[string]string{audit.DetailMethod: "EvictNode", audit.DetailIncarnation: n.Incarnation}}, now)
	})
	if isNotFound(err) {
		return nil, status.Errorf(codes.NotFound, "node %q not found (see signet node list)", req.GetSpiffeId())
	}
	if err != nil {
		return nil, toStatus(ctx, s.log, "evicting node", err)
	}
	s.log.InfoContext(ctx, "node evicted", logSPIFFEID, req.GetSpiffeId(), logActor, adminActor(ctx))
	return &adminv1.EvictNodeResponse{}, nil
}

// ListSVIDs implements adminv1.AdminServiceServer.
func (s *AdminService) ListSVIDs(ctx context.Context, req *adminv1.ListSVIDsRequest) (*adminv1.ListSVIDsResponse, error) {
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, err
	}
	var after svidKey
	paged, err := decodePageToken(req.GetPageToken(), &after)
	if err != nil {
		return nil, err
	}
	now := s.cfg.Clock.Now()
	// The index is walked in expiry order (to the second), then order of
	// issuance; a page is ordered by expiry second, then serial, so the
	// walk stops once it holds a page and has left the second of the
	// page's last item.
	var found []*adminv1.SVID
	errEnough := errors.New("page full")
	err = s.cfg.Store.View(ctx, func(tx store.Tx) error {
		walk := tx.ForEachSVID
		if paged {
			// From the second the last page ended in: what came
			// before is not walked again.
			walk = func(fn func(*store.SVIDRecord) error) error {
				return tx.ForEachSVIDFrom(time.Unix(after.ExpiresAt, 0), fn)
			}
		}
		return walk(func(r *store.SVIDRecord) error {
			if req.GetValid() && (now.Before(r.NotBefore) || !now.Before(r.NotAfter)) {
				return nil
			}
			if req.GetSpiffeId() != "" && r.SPIFFEID != req.GetSpiffeId() {
				return nil
			}
			k := svidKey{ExpiresAt: r.NotAfter.Unix(), Serial: r.Serial}
			if paged && k.compare(after) <= 0 {
				return nil
			}
			if len(found) >= size && found[len(found)-1].ExpiresAt != k.ExpiresAt {
				return errEnough
			}
			found = append(found, &adminv1.SVID{
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
	stopped := errors.Is(err, errEnough) // more records follow the walk's stop
	if err != nil && !stopped {
		return nil, toStatus(ctx, s.log, "listing SVIDs", err)
	}
	slices.SortStableFunc(found, func(a, b *adminv1.SVID) int { return svidKeyOf(a).compare(svidKeyOf(b)) })
	out := &adminv1.ListSVIDsResponse{}
	out.Svids, out.NextPageToken = takePage(found,
		func(*adminv1.SVID) bool { return true },
		func(v *adminv1.SVID) *adminv1.SVID { return v },
		func(v *adminv1.SVID) any { return svidKeyOf(v) }, size)
	if stopped && out.NextPageToken == "" && len(out.Svids) > 0 {
		out.NextPageToken = encodePageToken(svidKeyOf(out.Svids[len(out.Svids)-1]))
	}
	return out, nil
}

// svidKey orders the SVID listing: by expiry (to the second), then serial.
type svidKey struct {
	ExpiresAt int64  `json:"e"`
	Serial    string `json:"s"`
}

func svidKeyOf(v *adminv1.SVID) svidKey {
	return svidKey{ExpiresAt: v.GetExpiresAt(), Serial: v.GetSerial()}
}

func (k svidKey) compare(o svidKey) int {
	return cmp.Or(cmp.Compare(k.ExpiresAt, o.ExpiresAt), strings.Compare(k.Serial, o.Serial))
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
