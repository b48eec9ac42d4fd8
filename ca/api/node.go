package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"golang.org/x/time/rate"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/signet-mesh/signet/ca"
	"github.com/signet-mesh/signet/ca/audit"
	"github.com/signet-mesh/signet/ca/bundle"
	"github.com/signet-mesh/signet/ca/k8spsat"
	"github.com/signet-mesh/signet/ca/registration"
	"github.com/signet-mesh/signet/ca/store"
	"github.com/signet-mesh/signet/internal/clock"
	"github.com/signet-mesh/signet/internal/nodeapi"
	nodev1 "github.com/signet-mesh/signet/proto/signet/node/v1"
)

// Limits of the node API, each answered with a clear status.
const (
	// MaxMintBatch bounds one MintX509SVIDs call (nodeapi.MaxMintBatch).
	MaxMintBatch = nodeapi.MaxMintBatch
	// DefaultNodeRate and DefaultNodeBurst bound the calls per second one
	// node may make (minting, renewal): a misbehaving agent cannot starve
	// the others. Batching keeps a healthy agent far below it.
	DefaultNodeRate  = 50
	DefaultNodeBurst = 100
	// NodeSVIDTTL is the lifetime of node SVIDs (DESIGN.md).
	NodeSVIDTTL = time.Hour
	// AttestorJoinToken names the join-token node attestor.
	AttestorJoinToken = "join_token"
)

// NodeConfig configures the node API.
type NodeConfig struct {
	Store       store.Store
	CA          *ca.CA
	TrustDomain spiffeid.TrustDomain
	// Clock defaults to the wall clock.
	Clock clock.Clock
	// Logger defaults to discarding.
	Logger *slog.Logger
	// NodeRate is the per-node request rate (calls/s); 0 means
	// DefaultNodeRate, negative means unlimited (benchmarks only).
	NodeRate  float64
	NodeBurst int
	// Connections tracks connected agents; nil makes a private one.
	Connections *Connections
	// Metrics are hooks counting issuance and attestation; the zero value
	// counts nothing.
	Metrics NodeMetrics
	// K8sPSAT attests nodes by Kubernetes service account token; nil
	// refuses such attestations (no k8s_clusters configured).
	K8sPSAT *k8spsat.Attestor
	// Admission bounds concurrent attestations and mint batches; the
	// zero value takes its defaults.
	Admission Admission
	// ReconnectRate is the agents per second the CA takes back after a
	// restart: agents spread their reconnection over connected agents /
	// ReconnectRate. 0 means DefaultReconnectRate.
	ReconnectRate float64
	// MaxSyncMessageBytes bounds one SyncEntries message; 0 means
	// nodeapi.MaxSyncMessageBytes. Tests lower it to split small updates.
	MaxSyncMessageBytes int
}

// NodeService implements nodev1.NodeServiceServer.
type NodeService struct {
	nodev1.UnimplementedNodeServiceServer
	cfg      NodeConfig
	log      *slog.Logger
	limitsMu sync.Mutex
	limits   map[spiffeid.ID]*rate.Limiter
	attests  *gate
	mints    *gate
	capacity capacity
	// syncWake wakes the sync streams a change concerns; made on the
	// first stream (sync_wake.go).
	syncWakeOnce sync.Once
	syncWake     *syncWaker
	// syncShared is what the sync streams share: the bundle they send
	// (sync_shared.go).
	syncShared syncShared
}

// NewNodeService returns the node API with cfg's zero fields defaulted.
func NewNodeService(cfg NodeConfig) *NodeService {
	cfg.Clock = clock.OrReal(cfg.Clock)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.NodeRate == 0 {
		cfg.NodeRate = DefaultNodeRate
	}
	if cfg.NodeBurst <= 0 {
		cfg.NodeBurst = DefaultNodeBurst
	}
	if cfg.Connections == nil {
		cfg.Connections = NewConnections()
	}
	return &NodeService{cfg: cfg, log: cfg.Logger.With(logComponent, "node_api"), limits: map[spiffeid.ID]*rate.Limiter{},
		attests: newGate("attestations", cfg.Admission.MaxAttestations, cfg.Admission.RetryAfter, cfg.Clock, cfg.Metrics.refusals(CallsAttestations)),
		mints:   newGate("mint batches", cfg.Admission.MaxMintBatches, cfg.Admission.RetryAfter, cfg.Clock, cfg.Metrics.refusals(CallsMintBatches)),
	}
}

// AgentID returns the SPIFFE ID a join token's node gets.
func AgentID(td spiffeid.TrustDomain, attestor, name string) (spiffeid.ID, error) {
	return spiffeid.FromSegments(td, "signet", "agent", attestor, name)
}

// HashJoinToken is how tokens are keyed in the store: only the hash is kept,
// so a copy of the database does not hold usable tokens.
func HashJoinToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// AttestNode implements nodev1.NodeServiceServer. The token is read
// first, the node SVID signed outside any transaction, and one short
// transaction then takes the token (it must still be unused: two agents
// racing with one token get one node), records the node under a new
// incarnation, its SVID and the audit record, and reads the bundle to
// return. A token for the name of a live node is refused unless it was
// created with force; with force, the new incarnation supersedes the old
// node at once (its SVIDs carry the old incarnation).
//
// Every failure is logged and audited with the caller's address and, when
// the token is known, the node it was for.
func (s *NodeService) AttestNode(ctx context.Context, req *nodev1.AttestNodeRequest) (*nodev1.AttestNodeResponse, error) {
	adm, err := s.attests.enter()
	if err != nil {
		s.attested(AttestBusy)
		return nil, err
	}
	defer adm.done()
	now := s.cfg.Clock.Now()
	a := &attempt{peer: peerAddress(ctx), now: now}
	if req.GetK8SPsat() != nil {
		if req.GetJoinToken() != "" {
			return nil, s.attestFailed(ctx, a, AttestInvalid, "both a join token and a k8s_psat token", status.Error(codes.InvalidArgument, "give a join token or a k8s_psat token, not both"))
		}
		return s.attestK8sPSAT(ctx, a, req)
	}
	if req.GetJoinToken() == "" {
		return nil, s.attestFailed(ctx, a, AttestInvalid, "no join token", status.Error(codes.InvalidArgument, "join token is required"))
	}
	hash := HashJoinToken(req.GetJoinToken())
	err = s.cfg.Store.View(ctx, func(tx store.Tx) (err error) {
		a.tok, err = tx.GetJoinToken(hash)
		return err
	})
	switch {
	case isNotFound(err):
		return nil, s.attestFailed(ctx, a, AttestUnknownToken, "unknown join token", status.Error(codes.PermissionDenied, "join token is unknown or was already used"))
	case err != nil:
		s.attested(AttestError)
		return nil, toStatus(ctx, s.log, "attesting node", err)
	}
	csr, err := ca.ParseCSR(req.GetCsr())
	if err != nil {
		// The token stays usable: the agent's request was malformed.
		return nil, s.attestFailed(ctx, a, AttestInvalid, "invalid CSR: "+err.Error(), status.Errorf(codes.InvalidArgument, "invalid CSR: %v", err))
	}
	keyHash, err := publicKeySHA256(csr.PublicKey)
	if err != nil {
		return nil, s.attestFailed(ctx, a, AttestInvalid, "invalid CSR: "+err.Error(), status.Errorf(codes.InvalidArgument, "invalid CSR: %v", err))
	}
	if !a.tok.UsedAt.IsZero() {
		return s.retryAttestation(ctx, a, req, csr.PublicKey, keyHash)
	}
	if !now.Before(a.tok.ExpiresAt) {
		// An expired token is consumed all the same: it can never be
		// tried again.
		a.consume = true
		return nil, s.attestFailed(ctx, a, AttestExpiredToken, "join token expired (consumed)", status.Error(codes.PermissionDenied, "join token has expired"))
	}
	nodeID, err := spiffeid.FromString(a.tok.SPIFFEID)
	if err != nil {
		s.attested(AttestError)
		return nil, toStatus(ctx, s.log, "attesting node", fmt.Errorf("stored token has a bad SPIFFE ID: %w", err))
	}
	if err := s.cfg.Store.View(ctx, func(tx store.Tx) error { return checkTakeover(tx, a.tok) }); err != nil {
		return nil, s.refuseTakeover(ctx, a, err)
	}
	incarnation := newIncarnation()
	start := time.Now()
	svid, err := s.cfg.CA.SignX509SVID(ctx, ca.X509SVIDParams{SPIFFEID: nodeID, PublicKey: csr.PublicKey, TTL: NodeSVIDTTL, NodeIncarnation: incarnation})
	s.signed(SVIDKindNode, start)
	if err != nil {
		s.attested(AttestError)
		return nil, toStatus(ctx, s.log, "attesting node", fmt.Errorf("signing node SVID: %w", err))
	}
	leaf := svid.Chain[0]
	var (
		resp     *nodev1.AttestNodeResponse
		replaced *store.Node
	)
	// Batch: a fleet attesting at once shares fsyncs (group commit); fn
	// may run more than once and only changes state through tx.
	adm.committing()
	err = s.cfg.Store.Batch(ctx, func(tx store.Tx) error {
		if _, err := tx.TakeJoinToken(hash, now); err != nil {
			return err // another agent used it since it was read
		}
		if err := checkTakeover(tx, a.tok); err != nil {
			return err
		}
		replaced = nil
		if old, err := tx.GetNode(nodeID.String()); err == nil {
			replaced = old
		} else if !isNotFound(err) {
			return err
		}
		if err := tx.PutNode(&store.Node{
			SPIFFEID:    nodeID.String(),
			Attestor:    AttestorJoinToken,
			Serial:      serialHex(leaf),
			AttestedAt:  now,
			ExpiresAt:   leaf.NotAfter,
			Incarnation: incarnation,
			// Only a node SVID's key proves a retry is the same agent.
			AttestKeySHA256: keyHash,
		}); err != nil {
			return err
		}
		if err := tx.PutSVID(svidRecord(leaf, svid.AuthorityID, nodeID.String(), "")); err != nil {
			return err
		}
		// Wake the entry streams when a node is superseded, so that its
		// old incarnation's stream ends. A new node has no stream yet:
		// waking every other agent's for it would make a fleet's
		// build-up cost agents x agents reads.
		if replaced != nil {
			if _, err := tx.NextRevision(); err != nil {
				return err
			}
		}
		// One record for the one change: the token spent, the node
		// attested, and its SVID's issuance details.
		r := issuedRecord(nodeID.String(), leaf, svid.AuthorityID, "", req.GetCsr())
		r.Type = audit.TypeNodeAttested
		a.details(r.Details)
		r.Details[audit.DetailIncarnation] = incarnation
		if replaced != nil {
			r.Details[audit.DetailReplaces] = replaced.SPIFFEID
			r.Details[audit.DetailReplacedIncarnation] = replaced.Incarnation
		}
		if err := recordAudit(tx, r, now); err != nil {
			return err
		}
		b, err := bundle.FromTx(tx, s.cfg.TrustDomain)
		if err != nil {
			return err
		}
		resp = &nodev1.AttestNodeResponse{Svid: svidProto(nodeID, svid.Chain), Bundle: bundleProto(b)}
		return nil
	})
	var live *liveNodeError
	switch {
	case isNotFound(err):
		return nil, s.attestFailed(ctx, a, AttestUnknownToken, "join token used by another attestation at the same time",
			status.Error(codes.PermissionDenied, "join token is unknown or was already used"))
	case errors.As(err, &live):
		return nil, s.refuseTakeover(ctx, a, err)
	case err != nil:
		s.attested(AttestError)
		return nil, toStatus(ctx, s.log, "attesting node", err)
	}
	s.attested(AttestSuccess)
	s.issued(SVIDKindNode, OutcomeSuccess)
	if replaced != nil {
		s.log.WarnContext(ctx, "node superseded by a forced join token", logSPIFFEID, nodeID.String(), logIncarnation, replaced.Incarnation, logPeer, a.peer)
	}
	s.log.InfoContext(ctx, "node attested", logSPIFFEID, nodeID.String(), logSerial, serialHex(leaf), logNotAfter, leaf.NotAfter, logIncarnation, incarnation, logPeer, a.peer)
	return resp, nil
}

// attempt is one AttestNode call, as its failure is logged and audited.
type attempt struct {
	peer string
	now  time.Time
	// attestor is the node attestor tried; empty means join_token.
	attestor string
	// extra details of the attempt (the attestor's findings).
	extra map[string]string
	// tok is the token presented, once known.
	tok *store.JoinToken
	// consume: the failure spends the token (it expired, or it may not
	// take over a live node).
	consume bool
}

// details adds what is known of the attempt to an audit record's details.
func (a *attempt) details(d map[string]string) {
	d[audit.DetailAttestor] = AttestorJoinToken
	if a.attestor != "" {
		d[audit.DetailAttestor] = a.attestor
	}
	for k, v := range a.extra {
		d[k] = v
	}
	if a.peer != "" {
		d[audit.DetailPeerAddress] = a.peer
	}
	if a.tok != nil {
		d[audit.DetailTokenID] = a.tok.ID
		d[audit.DetailNodeName] = nodeName(a.tok.SPIFFEID)
	}
}

// attestFailed counts, logs and audits a failed attestation (consuming
// the token if a.consume), and returns the caller's error st.
func (s *NodeService) attestFailed(ctx context.Context, a *attempt, result, reason string, st error) error {
	s.attested(result)
	attrs := []any{logReason, reason, logPeer, a.peer}
	r := audit.Record{Type: audit.TypeNodeAttested, Outcome: audit.OutcomeFailure, Details: map[string]string{audit.DetailReason: reason}}
	a.details(r.Details)
	if a.tok != nil {
		r.Subject = a.tok.SPIFFEID
		attrs = append(attrs, logSPIFFEID, a.tok.SPIFFEID, logTokenID, a.tok.ID)
	}
	s.log.WarnContext(ctx, "node attestation failed", attrs...)
	err := s.cfg.Store.Update(ctx, func(tx store.Tx) error {
		if a.consume && a.tok != nil {
			if _, err := tx.TakeJoinToken(a.tok.Hash, a.now); err != nil && !isNotFound(err) {
				return err
			}
		}
		return recordAudit(tx, r, a.now)
	})
	if err != nil {
		return toStatus(ctx, s.log, "recording failed attestation", err)
	}
	return st
}

// liveNodeError: a token that was not created with force names a node
// that is attested and not evicted.
type liveNodeError struct {
	node *store.Node
}

func (e *liveNodeError) Error() string {
	return fmt.Sprintf("node %s is attested (since %s) and this join token was not created to replace it: evict the node (signet node evict %s) or create a token with --force",
		e.node.SPIFFEID, e.node.AttestedAt.UTC().Format(time.RFC3339), e.node.SPIFFEID)
}

// checkTakeover refuses (liveNodeError) a token for the name of a live
// node unless the token was created with force.
func checkTakeover(tx store.Tx, tok *store.JoinToken) error {
	if tok.Replaces != "" {
		return nil
	}
	node, err := tx.GetNode(tok.SPIFFEID)
	switch {
	case isNotFound(err):
		return nil
	case err != nil:
		return err
	}
	return &liveNodeError{node: node}
}

// refuseTakeover answers a token that may not take over a live node: the
// token is spent (its name is taken), the attempt audited.
func (s *NodeService) refuseTakeover(ctx context.Context, a *attempt, err error) error {
	var live *liveNodeError
	if !errors.As(err, &live) {
		s.attested(AttestError)
		return toStatus(ctx, s.log, "attesting node", err)
	}
	a.consume = true
	return s.attestFailed(ctx, a, AttestRefused, "node name is taken by a live node", status.Error(codes.PermissionDenied, live.Error()))
}

// newIncarnation returns a random incarnation ID: 16 hex digits.
func newIncarnation() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// nodeName is the last path segment of a node's SPIFFE ID: the name a
// join token was created for.
func nodeName(spiffeID string) string {
	return spiffeID[strings.LastIndexByte(spiffeID, '/')+1:]
}

// peerAddress is the caller's network address, for logs and audit
// records; empty when unknown.
func peerAddress(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}

// RenewNodeSVID implements nodev1.NodeServiceServer. The node is
// authorized in a read, the SVID signed outside any transaction, and the
// short write checks the node again (an eviction meanwhile wins) before it
// records the SVID.
func (s *NodeService) RenewNodeSVID(ctx context.Context, req *nodev1.RenewNodeSVIDRequest) (*nodev1.RenewNodeSVIDResponse, error) {
	nodeID, leaf, err := s.callerNode(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.allow(nodeID); err != nil {
		return nil, err
	}
	adm, err := s.mints.enter()
	if err != nil {
		return nil, err
	}
	defer adm.done()
	csr, err := ca.ParseCSR(req.GetCsr())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "invalid CSR: %v", err)
	}
	err = s.cfg.Store.View(ctx, func(tx store.Tx) error {
		_, err := s.authorizeNode(tx, nodeID, leaf)
		return err
	})
	if err != nil {
		err = toStatus(ctx, s.log, "renewing node SVID", err)
		s.issuedErr(SVIDKindNode, err)
		return nil, err
	}
	start := time.Now()
	svid, err := s.cfg.CA.SignX509SVID(ctx, ca.X509SVIDParams{SPIFFEID: nodeID, PublicKey: csr.PublicKey, TTL: NodeSVIDTTL, NodeIncarnation: ca.NodeIncarnation(leaf)})
	s.signed(SVIDKindNode, start)
	if err != nil {
		err = toStatus(ctx, s.log, "renewing node SVID", fmt.Errorf("signing node SVID: %w", err))
		s.issuedErr(SVIDKindNode, err)
		return nil, err
	}
	newLeaf := svid.Chain[0]
	adm.committing()
	err = s.cfg.Store.Update(ctx, func(tx store.Tx) error {
		node, err := s.authorizeNode(tx, nodeID, leaf)
		if err != nil {
			return err
		}
		node.Serial = serialHex(newLeaf)
		node.ExpiresAt = newLeaf.NotAfter
		if err := tx.PutNode(node); err != nil {
			return err
		}
		if err := tx.PutSVID(svidRecord(newLeaf, svid.AuthorityID, nodeID.String(), "")); err != nil {
			return err
		}
		r := issuedRecord(nodeID.String(), newLeaf, svid.AuthorityID, "", req.GetCsr())
		r.Type = audit.TypeNodeRenewed
		return recordAudit(tx, r, s.cfg.Clock.Now())
	})
	err = toStatus(ctx, s.log, "renewing node SVID", err)
	s.issuedErr(SVIDKindNode, err)
	if err != nil {
		return nil, err
	}
	return &nodev1.RenewNodeSVIDResponse{Svid: svidProto(nodeID, svid.Chain)}, nil
}

// SyncEntries implements nodev1.NodeServiceServer. It sends the full state,
// then waits on the store's change notifications and sends only what
// changed for this node: no polling. It reads again only for a change
// that can concern the node (syncWaker), and reads the node's entries
// again only for a change that may have changed them: a new bundle
// reaches every stream without an entry read.
func (s *NodeService) SyncEntries(_ *nodev1.SyncEntriesRequest, stream nodev1.NodeService_SyncEntriesServer) error {
	ctx := stream.Context()
	nodeID, leaf, err := s.callerNode(ctx)
	if err != nil {
		return err
	}
	waiter, cancel := s.syncWaker().add(parentIDs(nodeID))
	defer cancel()
	changes, storeClosed := waiter.ch, s.syncWaker().closed
	done := s.cfg.Connections.connect(nodeID)
	defer done()

	sent := map[string]int64{} // entry id -> revision the node has
	defer func() { s.capacity.liveEntries.Add(-int64(len(sent))) }()
	var bundleRev int64 = -1
	var policiesSent string // policySetVersion of the mTLS policies the node has
	var rotateGenSent int64 // rotate generation the node has (root activate --rotate-now)
	var fedSent string      // version of the federated bundles the node has
	var holdSince time.Time // when a new rotate generation was first held back (node_rotate.go)
	var entries []*store.Entry
	readEntries := true // the node and its entries: first, and after a change to them
	for first := true; ; first = false {
		var (
			b        *nodev1.Bundle
			brev     int64
			rev      int64
			policies []*store.MTLSPolicy
			node     *store.Node
		)
		var rotateGen int64
		var fed federatedBundles
		// Taken before the automatic entries are read, so that no
		// change between the two is missed.
		autoChanged := s.cfg.K8sPSAT.Changed()
		err := s.cfg.Store.View(ctx, func(tx store.Tx) error {
			var err error
			if readEntries {
				if node, err = s.authorizeNode(tx, nodeID, leaf); err != nil {
					return err
				}
				entries = entries[:0]
				for _, parent := range parentIDs(nodeID) {
					es, err := tx.ListEntries(store.EntryFilter{ParentID: parent})
					if err != nil {
						return err
					}
					entries = append(entries, es...)
				}
				s.syncShared.entryReads.Add(1)
			}
			// The bundle is taken only when its revision moved (entry
			// changes wake streams too), and built once per revision
			// for every stream.
			if brev, err = bundle.Revision(tx); err != nil {
				return err
			}
			if brev != bundleRev {
				if b, err = s.syncShared.bundle.get(tx, s.cfg.TrustDomain, brev); err != nil {
					return err
				}
			}
			if policies, err = tx.ListMTLSPolicies(); err != nil {
				return err
			}
			if rotateGen, err = bundle.RotateGeneration(tx); err != nil {
				return err
			}
			if !first && rotateGen > rotateGenSent {
				ready, err := s.signsUnderActiveRoot(tx)
				if err != nil {
					return err
				}
				if now := s.cfg.Clock.Now(); ready || (!holdSince.IsZero() && now.Sub(holdSince) >= rotateHoldMax) {
					if !ready {
						s.log.Warn("this server does not sign under the active root yet; sending the rotate generation anyway", logNodeID, nodeID.String(), logRevision, rotateGen)
					}
					holdSince = time.Time{}
				} else {
					if holdSince.IsZero() {
						holdSince = now
					}
					rotateGen = rotateGenSent
				}
			}
			if fed, err = readFederatedBundles(tx); err != nil {
				return err
			}
			rev, err = tx.Revision()
			return err
		})
		if err != nil {
			return toStatus(ctx, s.log, "syncing entries", err)
		}
		msg := &nodev1.SyncEntriesResponse{Full: first, Revision: rev, RotateGeneration: rotateGen, ReconnectSpreadMs: s.reconnectSpread().Milliseconds()}
		if readEntries {
			entries = append(entries, s.autoEntries(nodeID, node)...)
			held := len(sent)
			seen := make(map[string]bool, len(entries))
			for _, e := range entries {
				seen[e.ID] = true
				if r, ok := sent[e.ID]; !ok || r != e.Revision {
					msg.Entries = append(msg.Entries, entryProto(e))
					sent[e.ID] = e.Revision
				}
			}
			for id := range sent {
				if !seen[id] {
					msg.DeletedEntryIds = append(msg.DeletedEntryIds, id)
					delete(sent, id)
				}
			}
			s.capacity.liveEntries.Add(int64(len(sent) - held))
			// Drop the entries read: a stream waits for days between
			// changes, and holding its node's decoded entries (a few KiB
			// each agent) would cost every connected agent that in heap.
			// Between updates it keeps only their ids and revisions.
			clear(entries)
			entries = entries[:0]
		}
		if rotateGen != rotateGenSent {
			spread, taken := s.capacity.rotateSpreadFor(rotateGen)
			msg.RotateSpreadMs = spread.Milliseconds()
			// A stream's first message carries the generation the fleet
			// already had (a restart): only one sent while it is open is
			// a rotate-now of this process's time.
			if taken && !first {
				s.rotateWindow(ctx, rotateGen, spread)
			}
		}
		if b != nil && brev != bundleRev {
			msg.Bundle = b
			bundleRev = brev
		}
		if v := policySetVersion(policies); first || v != policiesSent {
			msg.MtlsPolicies = nodePolicies(policies)
			policiesSent = v
		}
		if first || fed.version != fedSent {
			msg.FederatedBundles, fedSent = fed.proto(), fed.version
		}
		if first || len(msg.Entries) > 0 || len(msg.DeletedEntryIds) > 0 || msg.Bundle != nil || msg.MtlsPolicies != nil || rotateGen != rotateGenSent || msg.FederatedBundles != nil {
			rotateGenSent = rotateGen
			for _, m := range splitSync(msg, s.cfg.MaxSyncMessageBytes) {
				if err := s.syncSend(stream, m); err != nil {
					if err == io.EOF {
						return nil
					}
					return err
				}
			}
		}
		var recheck <-chan time.Time
		var recheckTimer clock.Timer
		if !holdSince.IsZero() {
			recheckTimer = s.cfg.Clock.NewTimer(rotateHoldRecheck)
			recheck = recheckTimer.C()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-autoChanged:
			readEntries = true
		case <-recheck:
			readEntries = false
		case <-changes:
			readEntries = waiter.takeEntries()
		case <-storeClosed:
			return status.Error(codes.Unavailable, "server is shutting down")
		}
		if recheckTimer != nil {
			recheckTimer.Stop()
		}
	}
}

// MintX509SVIDs implements nodev1.NodeServiceServer.
func (s *NodeService) MintX509SVIDs(ctx context.Context, req *nodev1.MintX509SVIDsRequest) (*nodev1.MintX509SVIDsResponse, error) {
	nodeID, leaf, err := s.callerNode(ctx)
	if err != nil {
		return nil, err
	}
	params := req.GetParams()
	switch {
	case len(params) == 0:
		return nil, status.Error(codes.InvalidArgument, "no CSRs in the request")
	case len(params) > MaxMintBatch:
		return nil, status.Errorf(codes.InvalidArgument, "batch of %d CSRs exceeds the limit of %d", len(params), MaxMintBatch)
	}
	if err := s.allow(nodeID); err != nil {
		return nil, err
	}
	adm, err := s.mints.enter()
	if err != nil {
		return nil, err
	}
	defer adm.done()
	signedSVIDs := 0
	s.mintStarted()
	defer func() { s.mintDone(signedSVIDs) }()

	entries := make(map[string]*store.Entry, len(params))
	var node *store.Node
	err = s.cfg.Store.View(ctx, func(tx store.Tx) error {
		var err error
		if node, err = s.authorizeNode(tx, nodeID, leaf); err != nil {
			return err
		}
		for _, p := range params {
			if auto, ok := parseAutoEntryID(p.GetEntryId()); ok {
				if _, _, ok := s.autoCluster(nodeID, node); ok {
					if e, err := autoEntry(s.cfg.TrustDomain, nodeID, auto); err == nil {
						entries[e.ID] = e
					}
				}
				continue
			}
			e, err := tx.GetEntry(p.GetEntryId())
			if isNotFound(err) {
				continue
			}
			if err != nil {
				return err
			}
			entries[e.ID] = e
		}
		return nil
	})
	if err != nil {
		return nil, toStatus(ctx, s.log, "minting SVIDs", err)
	}

	refused := s.checkAutoEntries(ctx, nodeID, node, entries, audit.TypeSVIDIssued)

	caller := nodeID.String()
	// A signer outside the process is limited by its latency (capacity).
	var remoteSigner bool
	if a := s.cfg.CA.X509Authority(); a != nil {
		remoteSigner = !signsInProcess(a.Signer)
	}
	results := make([]*nodev1.MintX509SVIDResult, len(params))
	records := make([]*store.SVIDRecord, len(params))
	audits := make([]audit.Record, len(params))
	s.forEachParallel(len(params), func(i int) {
		p := params[i]
		if r := refused[p.GetEntryId()]; r != nil {
			results[i] = r
			return
		}
		res := &nodev1.MintX509SVIDResult{EntryId: p.GetEntryId()}
		results[i] = res
		e := entries[p.GetEntryId()]
		if e == nil || !mayMint(nodeID, e.ParentID) {
			res.Code, res.Message = int32(codes.NotFound), "entry not found or not authorized"
			return
		}
		csr, err := ca.ParseCSR(p.GetCsr())
		if err != nil {
			res.Code, res.Message = int32(codes.InvalidArgument), "invalid CSR: "+err.Error()
			return
		}
		id, err := spiffeid.FromString(e.SPIFFEID)
		if err != nil {
			res.Code, res.Message = int32(codes.Internal), "stored entry has a bad SPIFFE ID"
			return
		}
		start := time.Now()
		signStart := s.cfg.Clock.Now()
		svid, err := s.cfg.CA.SignX509SVID(ctx, ca.X509SVIDParams{SPIFFEID: id, PublicKey: csr.PublicKey, TTL: e.X509TTL, DNSNames: e.DNSNames})
		s.signed(SVIDKindWorkload, start)
		if remoteSigner {
			s.capacity.observeSignLatency(s.cfg.Clock.Now().Sub(signStart))
		}
		if err != nil {
			s.log.ErrorContext(ctx, "signing SVID failed", logSPIFFEID, e.SPIFFEID, logError, err)
			res.Code, res.Message = int32(codes.Internal), "signing failed"
			return
		}
		res.Svid = svidProto(id, svid.Chain)
		records[i] = svidRecord(svid.Chain[0], svid.AuthorityID, caller, e.ID)
		audits[i] = issuedAudit(caller, records[i], svid.Chain[0], p.GetCsr())
	})

	// Record every issued certificate, in the index and the audit log,
	// before any is returned: a certificate that is not recorded is never
	// handed out.
	adm.committing()
	now := s.cfg.Clock.Now()
	err = s.cfg.Store.Batch(ctx, func(tx store.Tx) error {
		for i, r := range records {
			if r == nil {
				continue
			}
			if err := tx.PutSVID(r); err != nil {
				return err
			}
			if err := recordAudit(tx, audits[i], now); err != nil {
				return err
			}
		}
		return nil
	})
	s.issuedBatch(results, err)
	if err != nil {
		return nil, toStatus(ctx, s.log, "recording issued SVIDs", err)
	}
	for _, r := range records {
		if r != nil {
			signedSVIDs++
		}
	}
	return &nodev1.MintX509SVIDsResponse{Results: results}, nil
}

// MintJWTSVID implements nodev1.NodeServiceServer.
func (s *NodeService) MintJWTSVID(ctx context.Context, req *nodev1.MintJWTSVIDRequest) (*nodev1.MintJWTSVIDResponse, error) {
	nodeID, leaf, err := s.callerNode(ctx)
	if err != nil {
		return nil, err
	}
	if err := nodeapi.CheckJWTAudience(req.GetAudience()); err != nil {
		s.issued(SVIDKindJWT, OutcomeInvalid)
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if err := s.allow(nodeID); err != nil {
		return nil, err
	}
	var (
		e    *store.Entry
		node *store.Node
	)
	err = s.cfg.Store.View(ctx, func(tx store.Tx) error {
		if node, err = s.authorizeNode(tx, nodeID, leaf); err != nil {
			return err
		}
		if _, ok := parseAutoEntryID(req.GetEntryId()); ok {
			return nil // checked below, outside the transaction
		}
		e, err = tx.GetEntry(req.GetEntryId())
		return err
	})
	if err == nil && e == nil {
		var refused *nodev1.MintX509SVIDResult
		if e, refused = s.autoEntryFor(ctx, nodeID, node, req.GetEntryId()); refused != nil {
			s.issued(SVIDKindJWT, OutcomeDenied)
			return nil, status.Error(codes.Code(refused.GetCode()), refused.GetMessage())
		}
		if e == nil {
			err = store.ErrNotFound
		}
	}
	if isNotFound(err) || (err == nil && !mayMint(nodeID, e.ParentID)) {
		s.issued(SVIDKindJWT, OutcomeDenied)
		return nil, status.Error(codes.NotFound, "entry not found or not authorized")
	}
	if err != nil {
		return nil, toStatus(ctx, s.log, "minting JWT-SVID", err)
	}
	id, err := spiffeid.FromString(e.SPIFFEID)
	if err != nil {
		return nil, toStatus(ctx, s.log, "minting JWT-SVID", err)
	}
	ttl := e.JWTTTL
	if ttl <= 0 {
		ttl = registration.DefaultJWTTTL
	}
	start := time.Now()
	token, exp, err := s.cfg.CA.SignJWTSVID(ctx, ca.JWTSVIDParams{SPIFFEID: id, Audience: req.GetAudience(), TTL: ttl})
	s.signed(SVIDKindJWT, start)
	s.issuedErr(SVIDKindJWT, err)
	if err != nil {
		return nil, toStatus(ctx, s.log, "signing JWT-SVID", err)
	}
	// Fail closed: a token whose issuance is not recorded is not returned.
	err = s.cfg.Store.Batch(ctx, func(tx store.Tx) error {
		return recordAudit(tx, audit.Record{Type: audit.TypeJWTIssued, Outcome: audit.OutcomeSuccess, Actor: nodeID.String(), Subject: id.String(),
			Details: map[string]string{
				audit.DetailEntryID:   e.ID,
				audit.DetailAudience:  strings.Join(req.GetAudience(), ","),
				audit.DetailNotAfter:  audit.FormatTime(exp),
				audit.DetailJWTSHA256: audit.SHA256Hex([]byte(token)),
			}}, s.cfg.Clock.Now())
	})
	if err != nil {
		return nil, toStatus(ctx, s.log, "recording JWT-SVID issuance", err)
	}
	return &nodev1.MintJWTSVIDResponse{SpiffeId: id.String(), Token: token, ExpiresAt: exp.Unix()}, nil
}

// ReportStatus implements nodev1.NodeServiceServer.
func (s *NodeService) ReportStatus(ctx context.Context, req *nodev1.ReportStatusRequest) (*nodev1.ReportStatusResponse, error) {
	nodeID, leaf, err := s.callerNode(ctx)
	if err != nil {
		return nil, err
	}
	if n := len(req.GetConnections()); n > maxReportedCounts {
		return nil, status.Errorf(codes.InvalidArgument, "%d connection counts exceed the limit of %d per report", n, maxReportedCounts)
	}
	var owned map[string]bool // workloads the node may report counts for
	// Batch: every agent reports the new bundle at once after a root
	// change; they share fsyncs.
	err = s.cfg.Store.Batch(ctx, func(tx store.Tx) error {
		node, err := s.authorizeNode(tx, nodeID, leaf)
		if err != nil {
			return err
		}
		if len(req.GetConnections()) > 0 {
			if owned, err = workloadsOf(tx, nodeID); err != nil {
				return err
			}
		}
		if node.AppliedBundleRevision == req.GetAppliedBundleRevision() {
			return nil
		}
		node.AppliedBundleRevision = req.GetAppliedBundleRevision()
		return tx.PutNode(node)
	})
	if err != nil {
		return nil, toStatus(ctx, s.log, "recording agent status", err)
	}
	s.cfg.Connections.setApplied(nodeID, req.GetAppliedBundleRevision())
	s.recordConnections(ctx, nodeID, req.GetConnections(), owned)
	return &nodev1.ReportStatusResponse{}, nil
}

// callerNode returns the agent ID from the verified client certificate.
func (s *NodeService) callerNode(ctx context.Context) (spiffeid.ID, *x509.Certificate, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return spiffeid.ID{}, nil, status.Error(codes.Unauthenticated, "no peer information")
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return spiffeid.ID{}, nil, status.Error(codes.Unauthenticated, "a valid node SVID is required")
	}
	leaf := ti.State.VerifiedChains[0][0]
	id, err := x509svid.IDFromCert(leaf)
	if err != nil {
		return spiffeid.ID{}, nil, status.Errorf(codes.Unauthenticated, "client certificate is not an SVID: %v", err)
	}
	if id.TrustDomain() != s.cfg.TrustDomain || !registration.IsAgentID(id) {
		return spiffeid.ID{}, nil, status.Errorf(codes.PermissionDenied, "%s is not an agent of this trust domain", id)
	}
	return id, leaf, nil
}

// authorizeNode checks that leaf, the node SVID a call presents, still
// speaks for node id: the node exists, and leaf belongs to its current
// incarnation (the attestation every SVID it renewed since carries, so a
// connection made with an SVID from before a renewal still works, and one
// from before a forced takeover or an eviction does not). A node refused
// for good gets nodeapi.RejectNode with the reason: evicted, superseded,
// or unknown.
func (s *NodeService) authorizeNode(tx store.Tx, id spiffeid.ID, leaf *x509.Certificate) (*store.Node, error) {
	node, err := tx.GetNode(id.String())
	if isNotFound(err) {
		ev, err := tx.GetEvictedNode(id.String())
		switch {
		case err == nil:
			return nil, nodeapi.RejectNode(nodeapi.ReasonEvicted, fmt.Sprintf("node %s was evicted at %s: attest again with a new join token (signet token create --node-name %s)",
				id, ev.EvictedAt.UTC().Format(time.RFC3339), nodeName(id.String())))
		case !isNotFound(err):
			return nil, err
		}
		return nil, nodeapi.RejectNode(nodeapi.ReasonUnknown, fmt.Sprintf("node %s is unknown to this CA: attest with a join token", id))
	}
	if err != nil {
		return nil, err
	}
	if got := ca.NodeIncarnation(leaf); got != node.Incarnation {
		return nil, nodeapi.RejectNode(nodeapi.ReasonSuperseded, fmt.Sprintf("this node SVID of %s is from an earlier attestation; the node attested again at %s: attest with a new join token",
			id, node.AttestedAt.UTC().Format(time.RFC3339)))
	}
	return node, nil
}

func (s *NodeService) allow(id spiffeid.ID) error {
	if s.cfg.NodeRate < 0 {
		return nil
	}
	s.limitsMu.Lock()
	l, ok := s.limits[id]
	if !ok {
		l = rate.NewLimiter(rate.Limit(s.cfg.NodeRate), s.cfg.NodeBurst)
		s.limits[id] = l
	}
	s.limitsMu.Unlock()
	if !l.AllowN(s.cfg.Clock.Now(), 1) {
		return nodeapi.Overloaded(fmt.Sprintf("node %s exceeded %v requests per second; retry with backoff", id, s.cfg.NodeRate), time.Duration(float64(time.Second)/s.cfg.NodeRate)+time.Millisecond)
	}
	return nil
}

// forEachParallel runs fn(0..n-1) on the signers (signers.go): signing
// a large batch uses every core.
func (s *NodeService) forEachParallel(n int, fn func(int)) { runOnSigners(n, fn) }
