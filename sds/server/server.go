package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/signet-mesh/signet/internal/clock"
	"github.com/signet-mesh/signet/internal/peercred"
	envoypb "github.com/signet-mesh/signet/proto/signet/envoy/v1"
	"github.com/signet-mesh/signet/sds/internal/logkey"
)

// fetchSnapshotTimeout bounds how long FetchSecrets waits for the Source's
// first snapshot. A unary call has no later chance to deliver the secrets, so
// an agent that has not synced yet answers Unavailable rather than hanging
// the caller until its own deadline.
const fetchSnapshotTimeout = 5 * time.Second

// Attestor returns the selectors of the calling process (unix:uid:1000, ...).
// It is called once per stream, and once per FetchSecrets call, with the
// kernel's peer credentials of the connection. An error means the caller
// cannot be identified; the call then fails with PermissionDenied.
// Implementations must be safe for concurrent use and honour ctx.
type Attestor interface {
	Attest(ctx context.Context, c peercred.Creds) ([]string, error)
}

// Source is the agent's SVID and bundle cache, seen through the selectors of
// one caller: cmd/signet adapts agent/cache to it. Subscribe must be safe for
// concurrent use.
type Source interface {
	// Subscribe starts following the identities that selectors entitle the
	// caller to: notify receives the current state, if the source has one,
	// and then each new state, always whole, never a diff. Snapshots are
	// shared and must not be modified. notify may be called with the
	// source's locks held, so it must return at once and must not call the
	// source. cancel stops the subscription; no notify runs after it
	// returns. cancel is idempotent.
	Subscribe(selectors []string, notify func(*Snapshot)) (cancel func())
}

// Snapshot is the complete state one caller may see at one moment. It is
// read by many streams at once: once handed to the server, neither it nor the
// SVIDs and bundles it points to may be modified, and it must not be copied.
type Snapshot struct {
	// Identities are the caller's SVIDs; the first is served as "default".
	// A caller with none gets no secret, bundles included.
	Identities []Identity
	// Bundle is the trust bundle of the agent's own trust domain, served as
	// "ROOTCA". Nil until the agent has one.
	Bundle *x509bundle.Bundle
	// FederatedBundles are the bundles of federated trust domains.
	FederatedBundles []*x509bundle.Bundle
	// BundleRevision identifies the bundle content (it grows with each change
	// of the bundle set); the server logs it when it pushes bundles, so an
	// operator can tell which revision a proxy received.
	BundleRevision int64

	// encoded memoizes the encoded secrets of this snapshot by name, so that
	// a snapshot shared by many streams is encoded once, not once per
	// stream. Sources should hand the same *Snapshot to every subscriber
	// that sees the same state.
	encoded sync.Map // name -> resource
}

// Identity is one SVID the caller is entitled to.
type Identity struct {
	SVID SVID
}

// SVID is an X509-SVID with its private key, as the server reads it:
// agent/cache.SVID implements it (the agent keeps its SVIDs encoded, not
// parsed), and FromX509SVID adapts a go-spiffe SVID. Implementations must
// be safe for concurrent use.
type SVID interface {
	// ID returns the SVID's SPIFFE ID.
	ID() spiffeid.ID
	// Marshal returns the certificate chain, leaf first, and the PKCS #8
	// private key, PEM-encoded, as x509svid.SVID.Marshal does.
	Marshal() (certs, key []byte, err error)
}

// FromX509SVID returns s as an SVID the server can serve; nil for nil.
func FromX509SVID(s *x509svid.SVID) SVID {
	if s == nil {
		return nil
	}
	return goSVID{s}
}

// goSVID adapts *x509svid.SVID, whose ID is a field, to SVID.
type goSVID struct{ s *x509svid.SVID }

func (g goSVID) ID() spiffeid.ID                  { return g.s.ID }
func (g goSVID) Marshal() ([]byte, []byte, error) { return g.s.Marshal() }

// Metrics are optional hooks that count protocol events; cmd/signet wires
// them to Prometheus counters. Nil fields are skipped. They are called from
// every stream's goroutine and must be cheap and safe for concurrent use.
// api is "stream" (StreamSecrets), "delta" (DeltaSecrets) or "fetch"
// (FetchSecrets).
type Metrics struct {
	// Pushed is called after each response is sent, with the number of
	// secrets it carries.
	Pushed func(api string, secrets int)
	// Rejected is called for each NACK: a request that reports, in
	// error_detail, that the client failed to apply the last response.
	Rejected func(api string)
}

// Config configures a Server.
type Config struct {
	// Source supplies the callers' SVIDs and bundles. Required.
	Source Source
	// Attestor identifies callers. Required.
	Attestor Attestor
	// Clock times FetchSecrets' wait for a first snapshot. Nil means the
	// wall clock.
	Clock clock.Clock
	// Logger receives protocol events. Nil discards them.
	Logger *slog.Logger
	// Metrics counts pushes and NACKs. The zero value counts nothing.
	Metrics Metrics
}

// Server implements envoy.service.secret.v3.SecretDiscoveryService. It is
// safe for concurrent use; an idle stream holds only its handler goroutine
// (see serve).
type Server struct {
	source   Source
	attestor Attestor
	clock    clock.Clock
	log      *slog.Logger
	metrics  Metrics
	nonces   atomic.Uint64
}

// New returns a Server. It panics if cfg.Source or cfg.Attestor is nil: that
// is a wiring bug in cmd/signet, not a runtime condition.
func New(cfg Config) *Server {
	if cfg.Source == nil || cfg.Attestor == nil {
		panic("sds/server: Config.Source and Config.Attestor are required")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{
		source:   cfg.Source,
		attestor: cfg.Attestor,
		clock:    clock.OrReal(cfg.Clock),
		log:      log.With(logkey.Component, "sds"),
		metrics:  cfg.Metrics,
	}
}

// Register adds the SDS service to g. g must be built with
// grpc.Creds(peercred.TransportCredentials()) on a Unix socket, or every call
// fails with PermissionDenied.
func (s *Server) Register(g *grpc.Server) {
	g.RegisterService(&serviceDesc, s)
}

// StreamSecrets serves the state-of-the-world protocol (see doc.go).
func (s *Server) StreamSecrets(stream StreamSecretsStream) error {
	ctx := stream.Context()
	selectors, log, err := s.attest(ctx, apiStream)
	if err != nil {
		return err
	}
	return serve(stream.Recv, s.source, selectors, &sotwStream{srv: s, send: stream.Send, log: log}, log)
}

// DeltaSecrets serves the incremental protocol (see doc.go).
func (s *Server) DeltaSecrets(stream DeltaSecretsStream) error {
	ctx := stream.Context()
	selectors, log, err := s.attest(ctx, apiDelta)
	if err != nil {
		return err
	}
	return serve(stream.Recv, s.source, selectors, &deltaStream{srv: s, send: stream.Send, log: log}, log)
}

// FetchSecrets answers one request with the current secrets. Unlike the
// streams it fails when a name is not available: NotFound when the caller is
// not entitled to it (or it does not exist; the two are not told apart, so
// a caller cannot probe for other workloads' identities), InvalidArgument for
// a name that is not a valid resource name.
func (s *Server) FetchSecrets(ctx context.Context, req *envoypb.DiscoveryRequest) (*envoypb.DiscoveryResponse, error) {
	if err := checkTypeURL(req.GetTypeUrl()); err != nil {
		return nil, err
	}
	names := uniqueNames(req.GetResourceNames())
	if len(names) == 0 {
		return nil, status.Error(codes.InvalidArgument, "sds: resource_names is empty: name the secrets to fetch")
	}
	for _, name := range names {
		if !ValidName(name) {
			return nil, status.Errorf(codes.InvalidArgument, "sds: %q is not a secret name: want %q, %q, %q, spiffe://<trust domain> or a SPIFFE ID", name, DefaultName, RootCAName, AllBundlesName)
		}
	}
	selectors, log, err := s.attest(ctx, apiFetch)
	if err != nil {
		return nil, err
	}
	snap, err := s.firstSnapshot(ctx, selectors)
	if err != nil {
		log.Warn("fetching secrets", logkey.Error, err)
		return nil, status.Error(codes.Unavailable, "sds: secrets are not available yet, retry later")
	}
	resp := &envoypb.DiscoveryResponse{TypeUrl: SecretTypeURL, Nonce: s.nextNonce()}
	versions := make(map[string]string, len(names))
	var missing []string
	for _, name := range names {
		r, ok := s.build(log, snap, name)
		if !ok {
			missing = append(missing, name)
			continue
		}
		resp.Resources = append(resp.Resources, r.any)
		versions[name] = r.version
	}
	if len(missing) > 0 {
		log.Info("secrets not available to caller", logkey.Resources, missing)
		return nil, status.Errorf(codes.NotFound, "sds: secrets %q do not exist or the caller is not entitled to them", missing)
	}
	resp.VersionInfo = setVersion(versions)
	s.countPush(apiFetch, len(resp.Resources))
	return resp, nil
}

// attest identifies the caller of a handler. Failures are logged here, once,
// and returned as PermissionDenied without internals.
func (s *Server) attest(ctx context.Context, api string) ([]string, *slog.Logger, error) {
	log := s.log.With(logkey.API, api)
	creds, err := peercred.FromContext(ctx)
	if err != nil {
		log.Warn("reading caller credentials", logkey.Error, err)
		return nil, nil, status.Error(codes.PermissionDenied, "sds: caller has no Unix peer credentials")
	}
	log = log.With(logkey.PID, creds.PID, logkey.UID, creds.UID)
	selectors, err := s.attestor.Attest(ctx, creds)
	if err != nil {
		log.Warn("attesting caller", logkey.Error, err)
		return nil, nil, status.Error(codes.PermissionDenied, "sds: caller attestation failed")
	}
	return selectors, log, nil
}

// firstSnapshot returns the current state for selectors, waiting at most
// fetchSnapshotTimeout for the source to have one.
func (s *Server) firstSnapshot(ctx context.Context, selectors []string) (*Snapshot, error) {
	first := make(chan *Snapshot, 1)
	cancel := s.source.Subscribe(selectors, func(snap *Snapshot) {
		select {
		case first <- snap:
		default: // the first one is all this call needs
		}
	})
	defer cancel()
	timer := s.clock.NewTimer(fetchSnapshotTimeout)
	defer timer.Stop()
	select {
	case snap := <-first:
		return snap, nil
	case <-timer.C():
		return nil, errNoSnapshot
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// nextNonce returns a nonce never used before by this server, on any stream.
func (s *Server) nextNonce() string {
	return strconv.FormatUint(s.nonces.Add(1), 10)
}

func (s *Server) countPush(api string, secrets int) {
	if s.metrics.Pushed != nil {
		s.metrics.Pushed(api, secrets)
	}
}

func (s *Server) countNACK(api string) {
	if s.metrics.Rejected != nil {
		s.metrics.Rejected(api)
	}
}

// Names of the APIs, for logs and Metrics.
const (
	apiStream = "stream"
	apiDelta  = "delta"
	apiFetch  = "fetch"
)

// protocolStream is the per-stream state machine of one protocol variant.
// Its methods are called with the stream's lock held, never concurrently.
type protocolStream[Req any] interface {
	// request applies one message from the client to the stream's state;
	// what it makes due is sent by the next push. An error ends the stream.
	request(req Req) error
	// update takes a new snapshot from the source.
	update(snap *Snapshot)
	// push sends whatever the client should have and has not been sent.
	push() error
}

// serve runs a stream on its handler goroutine, which receives requests
// and applies them to st. Everything that sends runs on a push goroutine
// that exists only while there is something to push: after a request, or
// when the source has a new snapshot. An idle stream, the common state of
// thousands of proxy streams, so holds a single goroutine, blocked in
// recv. serve returns nil when the client ends the stream.
func serve[Req any](recv func() (Req, error), src Source, selectors []string, st protocolStream[Req], log *slog.Logger) error {
	s := &stream[Req]{st: st, log: log}
	cancel := src.Subscribe(selectors, s.schedule) // the source's notify
	defer cancel()
	defer s.end()
	for {
		req, err := recv()
		if err != nil {
			if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled {
				return nil
			}
			return err
		}
		s.mu.Lock()
		err = s.st.request(req)
		s.mu.Unlock()
		if err != nil {
			return err
		}
		s.schedule(nil)
	}
}

// stream is what serve shares between a stream's handler goroutine and
// its push goroutine.
type stream[Req any] struct {
	log *slog.Logger

	mu   sync.Mutex // guards st and done; held while sending
	st   protocolStream[Req]
	done bool // the handler returned: nothing may be sent any more

	// schedMu guards the hand-over to the push goroutine. It is never held
	// while sending, so schedule, which the source calls with its own
	// locks held, does not wait for a slow client.
	schedMu sync.Mutex
	pending *Snapshot // newest snapshot st has not taken; nil if none
	due     bool      // a push is due
	running bool      // a push goroutine is running
}

// schedule makes a push due, with snap as the newest state if not nil,
// and starts the push goroutine unless it is running. It is the source's
// notify, and is called after each request with nil.
func (s *stream[Req]) schedule(snap *Snapshot) {
	s.schedMu.Lock()
	if snap != nil {
		s.pending = snap
	}
	s.due = true
	start := !s.running
	s.running = true
	s.schedMu.Unlock()
	if start {
		go s.pushLoop()
	}
}

// pushLoop pushes until no push is due. A push that fails is logged: a
// failed Send means the transport is gone, and the handler's recv then
// fails and ends the stream.
func (s *stream[Req]) pushLoop() {
	for {
		s.schedMu.Lock()
		if !s.due {
			s.running = false
			s.schedMu.Unlock()
			return
		}
		snap := s.pending
		s.pending, s.due = nil, false
		s.schedMu.Unlock()

		s.mu.Lock()
		if !s.done {
			if snap != nil {
				s.st.update(snap)
			}
			if err := s.st.push(); err != nil {
				logPushFailure(s.log, err)
			}
		}
		s.mu.Unlock()
	}
}

// logPushFailure logs a failed push: quietly when the client went away,
// loudly otherwise.
func logPushFailure(log *slog.Logger, err error) {
	switch status.Code(err) {
	case codes.Canceled, codes.Unavailable, codes.DeadlineExceeded:
		log.Debug("push failed: stream is over", logkey.Error, err)
	default:
		log.Warn("push failed", logkey.Error, err)
	}
}

// end stops all sending; it waits for a Send in progress, which gRPC
// unblocks once the stream is over.
func (s *stream[Req]) end() {
	s.mu.Lock()
	s.done = true
	s.mu.Unlock()
}

// checkTypeURL accepts the Secret type URL, or an empty one (the type is
// implied by the SDS service).
func checkTypeURL(typeURL string) error {
	if typeURL != "" && typeURL != SecretTypeURL {
		return status.Errorf(codes.InvalidArgument, "sds: type_url %q is not served here: want %q", typeURL, SecretTypeURL)
	}
	return nil
}
