package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/signet-mesh/signet/internal/backoff"
	"github.com/signet-mesh/signet/internal/clock"
	envoypb "github.com/signet-mesh/signet/proto/signet/envoy/v1"
	"github.com/signet-mesh/signet/sds/internal/logkey"
	"github.com/signet-mesh/signet/sds/server"
)

// DefaultResourceNames are the secrets a Client follows when Config names
// none: what a sidecar needs for mTLS inside its trust domain.
var DefaultResourceNames = []string{server.DefaultName, server.RootCAName}

// Config configures a Client.
type Config struct {
	// SocketPath is the agent's Unix socket. Required.
	SocketPath string
	// ResourceNames are the secrets to follow. Empty means
	// DefaultResourceNames.
	ResourceNames []string
	// Clock paces reconnection delays. Nil means the wall clock.
	Clock clock.Clock
	// Logger receives connection and rejection events. Nil discards them.
	Logger *slog.Logger
	// Backoff tunes the delays between reconnection attempts; the zero value
	// takes internal/backoff's defaults.
	Backoff backoff.Config
}

// Client follows secrets over SDS (StreamSecrets) the way Envoy does: it
// subscribes to its resource names, validates each response and ACKs it, or
// NACKs it and keeps its previous secrets, and reconnects with backoff when
// the stream breaks. Its methods are safe for concurrent use.
type Client struct {
	socketPath string
	names      []string
	clock      clock.Clock
	log        *slog.Logger
	backoff    *backoff.Backoff

	updates chan struct{} // capacity 1: coalesced change notifications
	ready   chan struct{} // closed once every name has a secret

	mu      sync.Mutex
	secrets map[string]*entry
	version string // version_info of the last accepted response
	// reconnecting is set when a stream failed, until the agent answers
	// again.
	reconnecting bool
}

// entry is an accepted secret and the encoding it was parsed from, to tell
// a change from a resend.
type entry struct {
	secret Secret
	raw    []byte
}

// New returns a Client; call Run to start it.
func New(cfg Config) *Client {
	names := slices.Clone(cfg.ResourceNames)
	if len(names) == 0 {
		names = slices.Clone(DefaultResourceNames)
	}
	slices.Sort(names)
	names = slices.Compact(names)
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{
		socketPath: cfg.SocketPath,
		names:      names,
		clock:      clock.OrReal(cfg.Clock),
		log:        log.With(logkey.Component, "sds-client", logkey.Socket, cfg.SocketPath),
		backoff:    backoff.New(cfg.Backoff),
		updates:    make(chan struct{}, 1),
		ready:      make(chan struct{}),
		secrets:    make(map[string]*entry),
	}
}

// Run follows the secrets until ctx ends, then returns nil. Whenever the
// stream fails (the agent restarts, the socket is not there yet), it waits a
// backoff delay and reconnects; secrets accepted earlier stay available
// meanwhile. It returns an error only for an unusable Config. Call it once.
func (c *Client) Run(ctx context.Context) error {
	if c.socketPath == "" {
		return wrapErr(errors.New("Config.SocketPath is required"))
	}
	err := backoff.Retry(ctx, c.clock, c.backoff, c.follow, func(err error, delay time.Duration) {
		c.mu.Lock()
		c.reconnecting = true
		c.mu.Unlock()
		c.log.Warn("sds stream ended, reconnecting", logkey.Error, err, logkey.RetryIn, delay)
	})
	if ctx.Err() != nil {
		return nil
	}
	return wrapErr(err)
}

// follow runs one stream until it fails. It never returns nil: the stream
// has no natural end.
func (c *Client) follow(ctx context.Context) error {
	conn, err := grpc.NewClient("unix:"+c.socketPath, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return backoff.Permanent(fmt.Errorf("creating gRPC client: %w", err))
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	stream, err := openStream(ctx, conn)
	if err != nil {
		return fmt.Errorf("opening stream: %w", err)
	}
	c.mu.Lock()
	first := &envoypb.DiscoveryRequest{TypeUrl: server.SecretTypeURL, ResourceNames: c.names, VersionInfo: c.version}
	c.mu.Unlock()
	if err := stream.Send(first); err != nil {
		return fmt.Errorf("sending request: %w", err)
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return fmt.Errorf("receiving secrets: %w", err)
		}
		if err := stream.Send(c.handle(resp)); err != nil {
			return fmt.Errorf("answering response: %w", err)
		}
	}
}

// handle applies a response and returns its ACK, or its NACK when any
// requested secret in it is invalid; a NACKed response changes nothing.
func (c *Client) handle(resp *envoypb.DiscoveryResponse) *envoypb.DiscoveryRequest {
	reply := &envoypb.DiscoveryRequest{TypeUrl: server.SecretTypeURL, ResourceNames: c.names, ResponseNonce: resp.GetNonce()}
	parsed, err := parseResponse(resp, c.names)

	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.log.Warn("rejecting secrets", logkey.Version, resp.GetVersionInfo(), logkey.KeptVersion, c.version, logkey.Error, err)
		reply.VersionInfo = c.version
		reply.ErrorDetail = &envoypb.Status{Code: int32(codes.InvalidArgument), Message: err.Error()}
		return reply
	}
	c.backoff.Reset() // the agent is healthy: the next failure starts over
	if c.reconnecting {
		c.reconnecting = false
		c.log.Info("reconnected to the agent", logkey.Version, resp.GetVersionInfo())
	}
	changed := false
	for name, e := range parsed {
		if old, ok := c.secrets[name]; ok && bytes.Equal(old.raw, e.raw) {
			continue
		}
		c.secrets[name] = e
		changed = true
	}
	c.version = resp.GetVersionInfo()
	reply.VersionInfo = c.version
	if changed {
		c.log.Debug("accepted secrets", logkey.Version, c.version)
		select {
		case c.updates <- struct{}{}:
		default:
		}
	}
	if len(c.missingLocked()) == 0 {
		select {
		case <-c.ready:
		default:
			close(c.ready)
		}
	}
	return reply
}

// Current returns the "default" certificate and the "ROOTCA" roots, with ok
// false until both have been received (or if they are not among the
// ResourceNames).
func (c *Client) Current() (*tls.Certificate, *x509.CertPool, bool) {
	cert, ok := c.Secret(server.DefaultName)
	if !ok || cert.Certificate == nil {
		return nil, nil, false
	}
	roots, ok := c.Secret(server.RootCAName)
	if !ok || roots.Authorities == nil {
		return nil, nil, false
	}
	pool := x509.NewCertPool()
	for _, a := range roots.Authorities {
		pool.AddCert(a)
	}
	return cert.Certificate, pool, true
}

// Secret returns the last accepted secret named name.
func (c *Client) Secret(name string) (Secret, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.secrets[name]
	if !ok {
		return Secret{}, false
	}
	return e.secret, true
}

// Version returns the version_info of the last accepted response.
func (c *Client) Version() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.version
}

// Updates returns a channel that receives a value after accepted secrets
// change. Notifications are coalesced: several changes between two receives
// give one value. Read the new state with Current or Secret.
func (c *Client) Updates() <-chan struct{} { return c.updates }

// WaitReady waits until every resource name has a secret, or ctx ends.
func (c *Client) WaitReady(ctx context.Context) error {
	select {
	case <-c.ready:
		return nil
	case <-ctx.Done():
		c.mu.Lock()
		missing := c.missingLocked()
		c.mu.Unlock()
		return wrapErr(fmt.Errorf("waiting for secrets %q: %w", missing, ctx.Err()))
	}
}

func (c *Client) missingLocked() []string {
	var missing []string
	for _, name := range c.names {
		if _, ok := c.secrets[name]; !ok {
			missing = append(missing, name)
		}
	}
	return missing
}

func wrapErr(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("sds/client: %w", err)
}

// streamSecretsDesc describes the SDS StreamSecrets call (see
// sds/server's service.go for why it is written by hand).
var streamSecretsDesc = grpc.StreamDesc{StreamName: "StreamSecrets", ServerStreams: true, ClientStreams: true}

// openStream opens a StreamSecrets stream on conn.
func openStream(ctx context.Context, conn *grpc.ClientConn) (grpc.BidiStreamingClient[envoypb.DiscoveryRequest, envoypb.DiscoveryResponse], error) {
	s, err := conn.NewStream(ctx, &streamSecretsDesc, server.StreamSecretsMethod)
	if err != nil {
		return nil, err
	}
	return &grpc.GenericClientStream[envoypb.DiscoveryRequest, envoypb.DiscoveryResponse]{ClientStream: s}, nil
}
