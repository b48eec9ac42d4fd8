// Package client is the agent's side of the node API: attestation with a
// join token, then an mTLS connection to the CA authenticated by the node
// SVID, with the CA itself authenticated as spiffe://<td>/signet/server
// against the current trust bundle.
//
//	svid, bundle, err := client.Attest(ctx, client.AttestParams{Address: addr, TrustDomain: td, Bootstrap: roots, JoinToken: tok, Key: key})
//	src := client.NewSource(svid, bundle)
//	c, err := client.Dial(addr, td, src)
//	stream, err := c.SyncEntries(ctx)
//
// The Source is updated in place when the node SVID is renewed or the bundle
// changes, and new handshakes pick it up without redialing.
//
// Every unary call is bounded by CallTimeout. Errors wrap the CA's gRPC
// status, so status.Code reads through them, and a node the CA refuses for
// good reads as nodeapi.NodeRejection(err) whatever the call.
package client

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"

	"github.com/signet-mesh/signet/internal/nodeapi"
	nodev1 "github.com/signet-mesh/signet/proto/signet/node/v1"
)

// MaxMintBatch is how many CSRs go in one MintX509SVIDs call; it is the
// CA's limit.
const MaxMintBatch = nodeapi.MaxMintBatch

// CallTimeout bounds each unary call to the CA (Attest, RenewNodeSVID,
// each MintX509SVIDs batch, MintJWTSVID, ReportStatus), so a CA that
// accepted the connection but hangs cannot stall the agent's tasks; a
// shorter deadline on the caller's context wins.
const CallTimeout = 30 * time.Second

// withCallTimeout bounds one unary call by CallTimeout.
func withCallTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, CallTimeout)
}

// ServerID returns the CA's SPIFFE ID in td.
func ServerID(td spiffeid.TrustDomain) spiffeid.ID { return nodeapi.ServerID(td) }

// AttestParams are the inputs of Attest.
type AttestParams struct {
	Address     string
	TrustDomain spiffeid.TrustDomain
	// Bootstrap holds the roots that authenticate the CA. Nil with
	// Insecure set skips server authentication (development only).
	Bootstrap []*x509.Certificate
	Insecure  bool
	JoinToken string
	// K8sCluster and K8sToken attest with a Kubernetes projected service
	// account token (k8s_psat) instead of a join token.
	K8sCluster, K8sToken string
	// Key becomes the node SVID's key; it never leaves the node.
	Key crypto.Signer
}

// Attest trades a join token (or a Kubernetes service account token) for
// a node SVID and the trust bundle.
func Attest(ctx context.Context, p AttestParams) (*x509svid.SVID, *nodev1.Bundle, error) {
	var tlsCfg *tls.Config
	switch {
	case len(p.Bootstrap) > 0:
		b := x509bundle.FromX509Authorities(p.TrustDomain, p.Bootstrap)
		tlsCfg = tlsconfig.TLSClientConfig(b, tlsconfig.AuthorizeID(ServerID(p.TrustDomain)))
	case p.Insecure:
		tlsCfg = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // --insecure-bootstrap, warned about by the caller
	default:
		return nil, nil, errors.New("client: a trust bundle is required to authenticate the CA")
	}
	tlsCfg.MinVersion = tls.VersionTLS13
	tgt, opts, err := target(p.Address)
	if err != nil {
		return nil, nil, err
	}
	conn, err := grpc.NewClient(tgt, append(opts, grpc.WithTransportCredentials(newClientTLS(tlsCfg)))...)
	if err != nil {
		return nil, nil, fmt.Errorf("client: dialing %s: %w", p.Address, err)
	}
	defer conn.Close()
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, p.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("client: creating CSR: %w", err)
	}
	ctx, cancel := withCallTimeout(ctx)
	defer cancel()
	req := &nodev1.AttestNodeRequest{JoinToken: p.JoinToken, Csr: csr}
	if p.K8sCluster != "" {
		req.K8SPsat = &nodev1.K8SPSAT{Cluster: p.K8sCluster, Token: p.K8sToken}
	}
	resp, err := nodev1.NewNodeServiceClient(conn).AttestNode(ctx, req)
	if err != nil {
		return nil, nil, fmt.Errorf("client: attesting: %w", err)
	}
	svid, err := SVIDFromProto(resp.GetSvid(), p.Key)
	if err != nil {
		return nil, nil, err
	}
	if resp.GetBundle() == nil || len(resp.GetBundle().GetX509Authorities()) == 0 {
		return nil, nil, errors.New("client: CA returned no trust bundle")
	}
	return svid, resp.GetBundle(), nil
}

// SVIDFromProto checks a returned SVID against the key it was requested for.
func SVIDFromProto(p *nodev1.X509SVID, key crypto.Signer) (*x509svid.SVID, error) {
	if p == nil || len(p.GetCertChain()) == 0 {
		return nil, errors.New("client: CA returned no certificate")
	}
	var chain []*x509.Certificate
	for i, der := range p.GetCertChain() {
		var c *x509.Certificate
		var err error
		if i == 0 {
			c, err = x509.ParseCertificate(der)
		} else {
			c, err = parseShared(der)
		}
		if err != nil {
			return nil, fmt.Errorf("client: parsing returned certificate: %w", err)
		}
		chain = append(chain, c)
	}
	id, err := x509svid.IDFromCert(chain[0])
	if err != nil {
		return nil, fmt.Errorf("client: returned certificate is not an SVID: %w", err)
	}
	if !publicKeyEqual(chain[0].PublicKey, key.Public()) {
		return nil, errors.New("client: returned certificate does not match the requested key")
	}
	return &x509svid.SVID{ID: id, Certificates: chain, PrivateKey: key}, nil
}

// intermediates holds parsed CA certificates by their DER: every SVID of a
// node carries the same intermediate, and sharing one parsed copy instead
// of a thousand keeps the agent small.
var intermediates struct {
	sync.Mutex
	byDER map[string]*x509.Certificate
}

// maxSharedIntermediates bounds the map; intermediates rotate weekly, so a
// handful are live at a time and a full reset is harmless.
const maxSharedIntermediates = 64

func parseShared(der []byte) (*x509.Certificate, error) {
	intermediates.Lock()
	defer intermediates.Unlock()
	if c, ok := intermediates.byDER[string(der)]; ok {
		return c, nil
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	if intermediates.byDER == nil || len(intermediates.byDER) >= maxSharedIntermediates {
		intermediates.byDER = map[string]*x509.Certificate{}
	}
	intermediates.byDER[string(der)] = c
	return c, nil
}

func publicKeyEqual(a, b crypto.PublicKey) bool {
	ae, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ae.Equal(b)
}

// BundleFromProto converts the CA's bundle message.
func BundleFromProto(td spiffeid.TrustDomain, b *nodev1.Bundle) (*x509bundle.Bundle, error) {
	return BundleFromProtoWith(td, b, x509.ParseCertificate)
}

// BundleFromProtoWith is BundleFromProto with parse reading each root:
// agent/sync's reuses the roots the previous bundle message held.
func BundleFromProtoWith(td spiffeid.TrustDomain, b *nodev1.Bundle, parse func(der []byte) (*x509.Certificate, error)) (*x509bundle.Bundle, error) {
	roots := make([]*x509.Certificate, 0, len(b.GetX509Authorities()))
	for _, der := range b.GetX509Authorities() {
		c, err := parse(der)
		if err != nil {
			return nil, fmt.Errorf("client: parsing bundle root: %w", err)
		}
		roots = append(roots, c)
	}
	if len(roots) == 0 {
		return nil, errors.New("client: bundle has no roots")
	}
	return x509bundle.FromX509Authorities(td, roots), nil
}

// Source holds the node SVID and the bundle the connection to the CA uses.
// It implements x509svid.Source and x509bundle.Source; Set* take effect on
// the next handshake.
type Source struct {
	mu     sync.RWMutex
	svid   *x509svid.SVID
	bundle *x509bundle.Bundle
}

// NewSource returns a Source holding svid and bundle.
func NewSource(svid *x509svid.SVID, bundle *x509bundle.Bundle) *Source {
	return &Source{svid: svid, bundle: bundle}
}

// GetX509SVID implements x509svid.Source.
func (s *Source) GetX509SVID() (*x509svid.SVID, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.svid, nil
}

// GetX509BundleForTrustDomain implements x509bundle.Source.
func (s *Source) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.bundle.TrustDomain() != td {
		return nil, fmt.Errorf("client: no bundle for trust domain %q", td)
	}
	return s.bundle, nil
}

// SetSVID replaces the node SVID.
func (s *Source) SetSVID(svid *x509svid.SVID) {
	s.mu.Lock()
	s.svid = svid
	s.mu.Unlock()
}

// SetBundle replaces the bundle.
func (s *Source) SetBundle(b *x509bundle.Bundle) {
	s.mu.Lock()
	s.bundle = b
	s.mu.Unlock()
}

// Client is an mTLS connection to the CA's node API.
type Client struct {
	conn *grpc.ClientConn
	node nodev1.NodeServiceClient
}

// Dial prepares a connection to the CA (gRPC connects lazily and
// reconnects by itself, to another replica when address lists several:
// see target.go).
func Dial(address string, td spiffeid.TrustDomain, src *Source) (*Client, error) {
	return dial(address, td, src, nil)
}

// Flow-control windows of the agent's connection to the CA: fixed, which
// turns off gRPC's bandwidth-delay estimation. The estimator answers the
// first data after a quiet spell with a PING to time its round trip, so a
// bundle change woke every agent of the fleet into sending a PING and the
// CA into answering each one: for 4,000 agents, four more TLS records and
// system calls each (two on each side) in the same second as the bundle
// itself. An agent hears from the CA in bursts after long quiet spells,
// so nearly every burst paid for one. The windows are large enough for a
// whole message in flight (gRPC's 4 MiB default limit) without waiting
// for a window update; they are credit, not buffers: nothing is allocated
// for them, and the agent reads what arrives at once.
const (
	streamWindow = 4 << 20
	connWindow   = 8 << 20
)

// writeBufferSize is the most the agent's gRPC writes to its TLS
// connection at once (gRPC's default is 32 KiB), and so the largest TLS
// record the CA reads from it: crypto/tls sends a write's bytes in as
// few records as it can (up to 16 KiB each once a connection has sent a
// few), and the CA's side of each connection keeps a read buffer the
// size of the largest record it has read, for as long as the connection
// lives. With records of 1 KiB that buffer stays at the 2 KiB the TLS
// handshake sizes it to; a mint batch or a status report of a few KiB in
// one record grew it to 4 or 8 KiB, and one large batch to 32 KiB, on
// every connected agent's connection. The cost is a few more records
// and writes for a large request, which an agent sends a few times an
// hour.
const writeBufferSize = 1 << 10

// dial is Dial; wrap, if not nil, wraps each connection after its TLS
// handshake (tests look at the HTTP/2 frames the agent writes).
func dial(address string, td spiffeid.TrustDomain, src *Source, wrap func(net.Conn) net.Conn) (*Client, error) {
	tlsCfg := tlsconfig.MTLSClientConfig(src, src, tlsconfig.AuthorizeID(ServerID(td)))
	tlsCfg.VerifyPeerCertificate = verifyCA(src, tlsconfig.AuthorizeID(ServerID(td)))
	tlsCfg.MinVersion = tls.VersionTLS13
	tgt, opts, err := target(address)
	if err != nil {
		return nil, err
	}
	creds := newClientTLS(tlsCfg)
	creds.wrap = wrap
	conn, err := grpc.NewClient(tgt, append(opts, grpc.WithTransportCredentials(creds),
		// The agent hears from the CA in bursts (a batch of minted SVIDs
		// can be megabytes) and then not for minutes: pooled receive
		// buffers would hold the burst's size idle in between.
		experimental.WithBufferPool(mem.NopBufferPool{}),
		grpc.WithWriteBufferSize(writeBufferSize),
		grpc.WithStaticStreamWindowSize(streamWindow), grpc.WithStaticConnWindowSize(connWindow))...)
	if err != nil {
		return nil, fmt.Errorf("client: dialing %s: %w", address, err)
	}
	return &Client{conn: conn, node: nodev1.NewNodeServiceClient(conn)}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// RenewNodeSVID gets a fresh node SVID for key.
func (c *Client) RenewNodeSVID(ctx context.Context, key crypto.Signer) (*x509svid.SVID, error) {
	csr, err := newCSR(key)
	if err != nil {
		return nil, fmt.Errorf("client: creating CSR: %w", err)
	}
	ctx, cancel := withCallTimeout(ctx)
	defer cancel()
	resp, err := c.node.RenewNodeSVID(ctx, &nodev1.RenewNodeSVIDRequest{Csr: csr})
	if err != nil {
		return nil, fmt.Errorf("client: renewing node SVID: %w", err)
	}
	return SVIDFromProto(resp.GetSvid(), key)
}

// SyncEntries opens the entry sync stream.
//
// The caller paces its attempts (internal/backoff, with the CA's
// reconnection window): gRPC's own connection backoff, which after a CA
// restart can leave the connection idle for many seconds after the CA is
// back, is reset so that the attempt dials at once.
func (c *Client) SyncEntries(ctx context.Context) (nodev1.NodeService_SyncEntriesClient, error) {
	c.conn.ResetConnectBackoff()
	return c.node.SyncEntries(ctx, &nodev1.SyncEntriesRequest{})
}

// MintRequest asks for one SVID.
type MintRequest struct {
	EntryID string
	Key     crypto.Signer
	// CSR is Key's certificate request. MintX509SVIDs makes it when nil
	// and fills it in, so that a caller sending the request again after
	// a call the CA refused (ResourceExhausted: admission control or the
	// node's rate, before anything was checked or signed) sends the same
	// key and CSR instead of making new ones.
	CSR []byte
}

// MintResult is the outcome for one MintRequest: SVID or Err.
type MintResult struct {
	EntryID string
	SVID    *x509svid.SVID
	Err     error
}

// MintX509SVIDs signs the requests in batches of at most MaxMintBatch
// (mintChunk when there are more than that many). A failed call returns
// an error with the results of the batches before it (nothing in the
// failed call was minted); per-entry refusals come back in the results.
//
// The CSRs of the next batch are made, on every core, while the CA signs
// the current one, and only one call is at the CA at a time: a node with
// hundreds of new entries keeps both busy, and puts no more load on the
// CA's admission control than one call.
func (c *Client) MintX509SVIDs(ctx context.Context, reqs []MintRequest) ([]MintResult, error) {
	out := make([]MintResult, 0, len(reqs))
	size := MaxMintBatch
	if len(reqs) > mintChunk {
		size = mintChunk
	}
	// The CSRs are filled into reqs: the caller may read them once this
	// returns, so the goroutine making them is waited for.
	var making sync.WaitGroup
	defer making.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan csrBatch, 1)
	making.Go(func() {
		defer close(batches)
		for start := 0; start < len(reqs); start += size {
			b := makeCSRs(reqs[start:min(start+size, len(reqs))])
			select {
			case batches <- b:
			case <-ctx.Done():
				return
			}
			if b.err != nil {
				return
			}
		}
	})
	for b := range batches {
		if b.err != nil {
			return out, b.err
		}
		resp, err := c.mintBatch(ctx, b.params)
		if err != nil {
			return out, fmt.Errorf("client: minting SVIDs: %w", err)
		}
		if len(resp.GetResults()) != len(b.reqs) {
			return out, fmt.Errorf("client: CA answered %d results for %d requests", len(resp.GetResults()), len(b.reqs))
		}
		for i, res := range resp.GetResults() {
			r := MintResult{EntryID: b.reqs[i].EntryID}
			if codes.Code(res.GetCode()) != codes.OK {
				r.Err = status.Error(codes.Code(res.GetCode()), res.GetMessage())
			} else {
				// The agent's cache keeps its own compact copy
				// (agent/cache.SVID); this parsed one is short-lived.
				r.SVID, r.Err = SVIDFromProto(res.GetSvid(), b.reqs[i].Key)
			}
			out = append(out, r)
		}
	}
	return out, nil
}

// mintChunk is the batch size MintX509SVIDs uses for more requests than
// that: small enough that the CA starts signing after a few milliseconds
// of CSRs, large enough that a thousand entries take ten calls, well
// within the CA's per-node rate.
const mintChunk = 100

// csrBatch is one MintX509SVIDs call's worth of requests with their CSRs.
type csrBatch struct {
	reqs   []MintRequest
	params []*nodev1.MintX509SVIDParams
	err    error
}

// makeCSRs makes the CSRs of reqs that have none, on up to GOMAXPROCS
// goroutines, and fills them into reqs.
func makeCSRs(reqs []MintRequest) csrBatch {
	b := csrBatch{reqs: reqs, params: make([]*nodev1.MintX509SVIDParams, len(reqs))}
	errs := make([]error, len(reqs))
	workers := min(runtime.GOMAXPROCS(0), len(reqs)/16+1)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(reqs); i = int(next.Add(1) - 1) {
				if reqs[i].CSR == nil {
					csr, err := newCSR(reqs[i].Key)
					if err != nil {
						errs[i] = err
						continue
					}
					reqs[i].CSR = csr
				}
				b.params[i] = &nodev1.MintX509SVIDParams{EntryId: reqs[i].EntryID, Csr: reqs[i].CSR}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			b.err = fmt.Errorf("client: creating CSR: %w", err)
			break
		}
	}
	return b
}

func (c *Client) mintBatch(ctx context.Context, params []*nodev1.MintX509SVIDParams) (*nodev1.MintX509SVIDsResponse, error) {
	ctx, cancel := withCallTimeout(ctx)
	defer cancel()
	return c.node.MintX509SVIDs(ctx, &nodev1.MintX509SVIDsRequest{Params: params})
}

// MintJWTSVID asks the CA for a JWT-SVID for entryID.
func (c *Client) MintJWTSVID(ctx context.Context, entryID string, audience []string) (string, error) {
	ctx, cancel := withCallTimeout(ctx)
	defer cancel()
	resp, err := c.node.MintJWTSVID(ctx, &nodev1.MintJWTSVIDRequest{EntryId: entryID, Audience: audience})
	if err != nil {
		return "", fmt.Errorf("client: minting JWT-SVID: %w", err)
	}
	return resp.GetToken(), nil
}

// ReportStatus tells the CA which bundle revision the agent serves.
func (c *Client) ReportStatus(ctx context.Context, bundleRevision int64) error {
	ctx, cancel := withCallTimeout(ctx)
	defer cancel()
	if _, err := c.node.ReportStatus(ctx, &nodev1.ReportStatusRequest{AppliedBundleRevision: bundleRevision}); err != nil {
		return fmt.Errorf("client: reporting status: %w", err)
	}
	return nil
}
