package workloadapi

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/signet-mesh/signet/agent/cache"
	"github.com/signet-mesh/signet/agent/internal/logkey"
	"github.com/signet-mesh/signet/agent/rotate"
	"github.com/signet-mesh/signet/internal/clock"
	"github.com/signet-mesh/signet/internal/nodeapi"
	"github.com/signet-mesh/signet/internal/peercred"
)

// securityHeader is the gRPC metadata every Workload API call must carry,
// with the value "true", so that a server-side request forgery cannot reach
// the API (SPIFFE Workload Endpoint, section 3).
const securityHeader = "workload.spiffe.io"

// Attestor turns a caller's peer credentials into selectors. An error means
// the caller cannot be identified; the server answers PermissionDenied.
// agent/attestor implements it.
type Attestor interface {
	Attest(ctx context.Context, c peercred.Creds) ([]string, error)
}

// JWTMinter gets a JWT-SVID signed for an entry and audience, typically by
// asking the CA. It is called with the RPC's context; an error other than
// the context's own is answered with Unavailable.
type JWTMinter interface {
	MintJWTSVID(ctx context.Context, entryID string, audience []string) (token string, err error)
}

// Config configures a Server.
type Config struct {
	// Cache is the agent's cache of entries, SVIDs and bundles. Required.
	Cache *cache.Cache
	// Attestor identifies callers. Required.
	Attestor Attestor
	// JWTMinter mints JWT-SVIDs. Nil makes FetchJWTSVID answer Unavailable.
	JWTMinter JWTMinter
	// Clock decides which SVIDs have expired. Nil means the wall clock.
	Clock clock.Clock
	// Logger receives refused calls and server faults. Nil discards.
	Logger *slog.Logger
}

// Server implements the SPIFFE Workload API. It is safe for concurrent use.
type Server struct {
	workload.UnimplementedSpiffeWorkloadAPIServer

	cache    *cache.Cache
	attestor Attestor
	minter   JWTMinter
	clock    clock.Clock
	log      *slog.Logger

	streams atomic.Int64 // open streams, for tests and metrics
}

// New returns a Server with cfg's zero fields defaulted.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Server{
		cache:    cfg.Cache,
		attestor: cfg.Attestor,
		minter:   cfg.JWTMinter,
		clock:    clock.OrReal(cfg.Clock),
		log:      cfg.Logger.With(logkey.Component, "workloadapi"),
	}
}

// Register registers the Workload API service on g, which must be built
// with grpc.Creds(peercred.TransportCredentials()) so that callers can be
// attested.
func (s *Server) Register(g grpc.ServiceRegistrar) {
	workload.RegisterSpiffeWorkloadAPIServer(g, s)
}

// FetchX509SVID streams the caller's X509-SVIDs and bundles.
func (s *Server) FetchX509SVID(_ *workload.X509SVIDRequest, stream grpc.ServerStreamingServer[workload.X509SVIDResponse]) error {
	ctx := stream.Context()
	log := s.log.With(logkey.Method, "FetchX509SVID")
	if err := checkHeader(ctx); err != nil {
		return err
	}
	sels, log, err := s.attest(ctx, log)
	if err != nil {
		return err
	}
	return s.stream(ctx, log, sels, x509SVIDKey{}, func(u *cache.Update) (proto.Message, error) {
		resp, err := s.x509SVIDResponse(u, log)
		if err != nil {
			log.Error("building X509-SVID response", logkey.Error, err)
			return nil, status.Error(codes.Internal, "unable to build X509-SVID response")
		}
		return resp, nil
	}, func(m proto.Message) error { return stream.Send(m.(*workload.X509SVIDResponse)) })
}

// FetchX509Bundles streams the X.509 bundles the caller should trust.
func (s *Server) FetchX509Bundles(_ *workload.X509BundlesRequest, stream grpc.ServerStreamingServer[workload.X509BundlesResponse]) error {
	ctx := stream.Context()
	log := s.log.With(logkey.Method, "FetchX509Bundles")
	if err := checkHeader(ctx); err != nil {
		return err
	}
	sels, log, err := s.attest(ctx, log)
	if err != nil {
		return err
	}
	return s.streamBundles(ctx, log, sels, x509BundlesKey{}, func(u *cache.Update) (proto.Message, error) {
		return x509BundlesResponse(u), nil
	}, func(m proto.Message) error { return stream.Send(m.(*workload.X509BundlesResponse)) })
}

// FetchJWTBundles streams the JWT bundles (JWKS documents) the caller
// should trust.
func (s *Server) FetchJWTBundles(_ *workload.JWTBundlesRequest, stream grpc.ServerStreamingServer[workload.JWTBundlesResponse]) error {
	ctx := stream.Context()
	log := s.log.With(logkey.Method, "FetchJWTBundles")
	if err := checkHeader(ctx); err != nil {
		return err
	}
	sels, log, err := s.attest(ctx, log)
	if err != nil {
		return err
	}
	return s.streamBundles(ctx, log, sels, jwtBundlesKey{}, func(u *cache.Update) (proto.Message, error) {
		resp, err := jwtBundlesResponse(u)
		if err != nil {
			log.Error("building JWT bundles response", logkey.Error, err)
			return nil, status.Error(codes.Internal, "unable to build JWT bundles response")
		}
		return resp, nil
	}, func(m proto.Message) error { return stream.Send(m.(*workload.JWTBundlesResponse)) })
}

// FetchJWTSVID mints JWT-SVIDs for the caller's identities.
func (s *Server) FetchJWTSVID(ctx context.Context, req *workload.JWTSVIDRequest) (*workload.JWTSVIDResponse, error) {
	log := s.log.With(logkey.Method, "FetchJWTSVID")
	if err := checkHeader(ctx); err != nil {
		return nil, err
	}
	if err := checkAudience(req.GetAudience()); err != nil {
		return nil, err
	}
	var want spiffeid.ID
	if req.GetSpiffeId() != "" {
		id, err := spiffeid.FromString(req.GetSpiffeId())
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "invalid requested SPIFFE ID: %v", err)
		}
		want = id
	}
	sels, log, err := s.attest(ctx, log)
	if err != nil {
		return nil, err
	}
	if s.minter == nil {
		return nil, status.Error(codes.Unavailable, "JWT-SVIDs are not available on this agent")
	}

	// One token per SPIFFE ID (entries may share one), first hint wins.
	var todo []cache.Entry
	seenID := make(map[spiffeid.ID]bool)
	seenHint := make(map[string]bool)
	for _, e := range s.cache.Lookup(sels).Entries {
		if (!want.IsZero() && e.SPIFFEID != want) || seenID[e.SPIFFEID] || (e.Hint != "" && seenHint[e.Hint]) {
			continue
		}
		seenID[e.SPIFFEID], seenHint[e.Hint] = true, true
		todo = append(todo, e)
	}
	if len(todo) == 0 {
		if !want.IsZero() {
			log.Info("caller is not entitled to the requested SPIFFE ID", logkey.SPIFFEID, want.String())
			return nil, status.Errorf(codes.PermissionDenied, "not entitled to %s", want)
		}
		log.Info("caller has no registration entry")
		return nil, status.Error(codes.PermissionDenied, "no identity issued")
	}

	resp := &workload.JWTSVIDResponse{}
	for _, e := range todo {
		token, err := s.minter.MintJWTSVID(ctx, e.ID, req.GetAudience())
		if err != nil {
			if ctx.Err() != nil {
				return nil, status.FromContextError(ctx.Err()).Err()
			}
			log.Error("minting JWT-SVID", logkey.EntryID, e.ID, logkey.SPIFFEID, e.SPIFFEID.String(), logkey.Error, err)
			return nil, status.Error(codes.Unavailable, "unable to mint JWT-SVID")
		}
		// Never hand out a token for an identity the caller was not
		// given, whatever the minter returned.
		svid, err := jwtsvid.ParseInsecure(token, req.GetAudience())
		if err != nil || svid.ID != e.SPIFFEID {
			if err == nil {
				err = fmt.Errorf("token subject %s, want %s", svid.ID, e.SPIFFEID)
			}
			log.Error("minted JWT-SVID is wrong", logkey.EntryID, e.ID, logkey.Error, err)
			return nil, status.Error(codes.Internal, "minted JWT-SVID is invalid")
		}
		resp.Svids = append(resp.Svids, &workload.JWTSVID{SpiffeId: e.SPIFFEID.String(), Svid: token, Hint: e.Hint})
	}
	return resp, nil
}

// ValidateJWTSVID checks a JWT-SVID against the trusted JWT bundles on the
// caller's behalf. Any local process may ask.
func (s *Server) ValidateJWTSVID(ctx context.Context, req *workload.ValidateJWTSVIDRequest) (*workload.ValidateJWTSVIDResponse, error) {
	log := s.log.With(logkey.Method, "ValidateJWTSVID")
	if err := checkHeader(ctx); err != nil {
		return nil, err
	}
	switch {
	case req.GetAudience() == "":
		return nil, status.Error(codes.InvalidArgument, "audience must be specified")
	case req.GetSvid() == "":
		return nil, status.Error(codes.InvalidArgument, "svid must be specified")
	}
	if !s.cache.Ready() {
		return nil, errNotReady
	}
	u := s.cache.Lookup(nil)
	bundles := jwtbundle.NewSet(u.FederatedJWTBundles...)
	if u.JWTBundle != nil {
		bundles.Add(u.JWTBundle)
	}
	svid, err := jwtsvid.ParseAndValidate(req.GetSvid(), bundles, []string{req.GetAudience()})
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "invalid JWT-SVID: %v", err)
	}
	claims, err := structpb.NewStruct(svid.Claims)
	if err != nil {
		log.Error("converting JWT claims", logkey.SPIFFEID, svid.ID.String(), logkey.Error, err)
		return nil, status.Error(codes.Internal, "unable to convert JWT claims")
	}
	return &workload.ValidateJWTSVIDResponse{SpiffeId: svid.ID.String(), Claims: claims}, nil
}

var errNotReady = status.Error(codes.Unavailable, "agent is not ready: no trust bundle yet")

// checkAudience answers InvalidArgument, naming the limit, for an audience
// list the CA would refuse: the limits are the node API's
// (nodeapi.CheckJWTAudience), so nothing the agent passes is refused later.
func checkAudience(aud []string) error {
	if err := nodeapi.CheckJWTAudience(aud); err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	return nil
}

// checkHeader enforces the security header.
func checkHeader(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(securityHeader); len(v) != 1 || v[0] != "true" {
		return status.Errorf(codes.InvalidArgument, "security header missing from request: %s must be \"true\"", securityHeader)
	}
	return nil
}

// attest identifies the caller of ctx. It answers Unavailable until the
// agent is ready and PermissionDenied when attestation fails, and returns a
// logger that names the caller.
func (s *Server) attest(ctx context.Context, log *slog.Logger) ([]string, *slog.Logger, error) {
	if !s.cache.Ready() {
		return nil, log, errNotReady
	}
	creds, err := peercred.FromContext(ctx)
	if err != nil {
		log.Error("call without peer credentials: serve the Workload API with peercred.TransportCredentials", logkey.Error, err)
		return nil, log, status.Error(codes.PermissionDenied, "unable to identify caller")
	}
	log = log.With(logkey.PID, creds.PID, logkey.UID, creds.UID)
	sels, err := s.attestor.Attest(ctx, creds)
	if err != nil {
		if ctx.Err() != nil {
			return nil, log, status.FromContextError(ctx.Err()).Err()
		}
		log.Warn("workload attestation failed", logkey.Error, err)
		return nil, log, status.Error(codes.PermissionDenied, "workload attestation failed")
	}
	return sels, log, nil
}

// stream serves a workload's updates: every Update the cache delivers is
// turned into a message by build and sent unless it equals the last one
// sent (or build returns nil: nothing to serve right now). It ends cleanly
// when the client goes away, and with PermissionDenied when the workload
// loses its last entry.
// Keys of the responses built from a cache update (cache.Update.Derived):
// streams of workloads with the same selectors share each response, built
// and held once.
type (
	x509SVIDKey    struct{}
	x509BundlesKey struct{}
	jwtBundlesKey  struct{}
)

// built is a response, or the error building it, as memoized per update.
type built struct {
	m   proto.Message
	err error
}

func (s *Server) stream(ctx context.Context, log *slog.Logger, sels []string, key any, build func(*cache.Update) (proto.Message, error), send func(proto.Message) error) error {
	sub := s.cache.Subscribe(sels)
	defer sub.Close()
	return s.serve(ctx, log, sub, key, build, send)
}

// streamBundles is stream for bundle-only calls, which do not wait for the
// workload's first SVID.
func (s *Server) streamBundles(ctx context.Context, log *slog.Logger, sels []string, key any, build func(*cache.Update) (proto.Message, error), send func(proto.Message) error) error {
	sub := s.cache.SubscribeBundles(sels)
	defer sub.Close()
	return s.serve(ctx, log, sub, key, build, send)
}

func (s *Server) serve(ctx context.Context, log *slog.Logger, sub *cache.Subscription, key any, build func(*cache.Update) (proto.Message, error), send func(proto.Message) error) error {
	s.streams.Add(1)
	defer s.streams.Add(-1)
	var last proto.Message
	handle := func(u *cache.Update) error {
		if len(u.Entries) == 0 {
			log.Info("caller has no registration entry")
			return status.Error(codes.PermissionDenied, "no identity issued")
		}
		b := u.Derived(key, func(u *cache.Update) any {
			m, err := build(u)
			return built{m, err}
		}).(built)
		m, err := b.m, b.err
		if err != nil || m == nil || m == last || (last != nil && proto.Equal(m, last)) {
			return err
		}
		if err := send(m); err != nil {
			return err
		}
		last = m
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case u, ok := <-sub.Updates():
			if !ok {
				return nil
			}
			if err := handle(u); err != nil {
				if ctx.Err() != nil {
					return nil // the client went away mid-send
				}
				return err
			}
		}
	}
}

// x509SVIDResponse turns u into an X509SVIDResponse, or nil when none of
// the caller's SVIDs can be served (all expired since the cache built u).
func (s *Server) x509SVIDResponse(u *cache.Update, log *slog.Logger) (*workload.X509SVIDResponse, error) {
	if u.Bundle == nil {
		return nil, errors.New("no trust bundle")
	}
	roots := concatDER(u.Bundle.X509Authorities())
	now := s.clock.Now()
	resp := &workload.X509SVIDResponse{}
	hints := make(map[string]bool)
	for _, id := range u.Identities {
		if rotate.Expired(now, id.SVID.NotAfter()) {
			continue
		}
		if h := id.Entry.Hint; h != "" {
			if hints[h] {
				log.Debug("leaving out SVID with a hint already sent", logkey.SPIFFEID, id.SVID.ID().String(), logkey.Hint, h)
				continue
			}
			hints[h] = true
		}
		resp.Svids = append(resp.Svids, &workload.X509SVID{
			SpiffeId: id.SVID.ID().String(),
			X509Svid: id.SVID.ChainDER(),
			// The cache's copy, shared by every response: proto only
			// reads it.
			X509SvidKey: id.SVID.PrivateKeyPKCS8(),
			Bundle:      roots,
			Hint:        id.Entry.Hint,
		})
	}
	if len(resp.Svids) == 0 {
		return nil, nil
	}
	if len(u.FederatedBundles) > 0 {
		resp.FederatedBundles = make(map[string][]byte, len(u.FederatedBundles))
		for _, b := range u.FederatedBundles {
			resp.FederatedBundles[b.TrustDomain().IDString()] = concatDER(b.X509Authorities())
		}
	}
	return resp, nil
}

func x509BundlesResponse(u *cache.Update) *workload.X509BundlesResponse {
	resp := &workload.X509BundlesResponse{Bundles: make(map[string][]byte, 1+len(u.FederatedBundles))}
	if u.Bundle != nil {
		resp.Bundles[u.Bundle.TrustDomain().IDString()] = concatDER(u.Bundle.X509Authorities())
	}
	for _, b := range u.FederatedBundles {
		resp.Bundles[b.TrustDomain().IDString()] = concatDER(b.X509Authorities())
	}
	return resp
}

func jwtBundlesResponse(u *cache.Update) (*workload.JWTBundlesResponse, error) {
	resp := &workload.JWTBundlesResponse{Bundles: make(map[string][]byte, 1+len(u.FederatedJWTBundles))}
	for _, b := range append([]*jwtbundle.Bundle{u.JWTBundle}, u.FederatedJWTBundles...) {
		if b == nil {
			continue
		}
		jwks, err := marshalJWKS(b)
		if err != nil {
			return nil, err
		}
		resp.Bundles[b.TrustDomain().IDString()] = jwks
	}
	return resp, nil
}

func concatDER(certs []*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, c.Raw...)
	}
	return out
}
