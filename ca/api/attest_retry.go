package api

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/signet-mesh/signet/ca"
	"github.com/signet-mesh/signet/ca/audit"
	"github.com/signet-mesh/signet/ca/bundle"
	"github.com/signet-mesh/signet/ca/store"
	nodev1 "github.com/signet-mesh/signet/proto/signet/node/v1"
)

// publicKeySHA256 is the hex SHA-256 of a public key's PKIX DER: how a
// node's attestation key is remembered (store.Node.AttestKeySHA256).
func publicKeySHA256(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("public key: %w", err)
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:]), nil
}

// errAttestationGone: the attestation a retry names no longer stands.
var errAttestationGone = errors.New("the attestation this token made no longer stands")

// retryAttestation answers an attestation with a spent join token. When
// the token was spent by this very key (the CSR proves possession of it)
// and that attestation still stands (the node was neither evicted nor
// attested again since, and the token has not expired), the agent's first
// call succeeded but its answer was lost, typically a client timeout under
// load: it gets a new node SVID of the same incarnation, audited as a
// retry. Anyone else is refused as before: the token was used.
func (s *NodeService) retryAttestation(ctx context.Context, a *attempt, req *nodev1.AttestNodeRequest, pub crypto.PublicKey, keyHash string) (*nodev1.AttestNodeResponse, error) {
	used := "join token already used at " + audit.FormatTime(a.tok.UsedAt)
	refuse := func(why string) error {
		return s.attestFailed(ctx, a, AttestUnknownToken, why, status.Error(codes.PermissionDenied, "join token is unknown or was already used"))
	}
	if !a.now.Before(a.tok.ExpiresAt) {
		return nil, refuse(used + " (and expired since)")
	}
	nodeID, err := spiffeid.FromString(a.tok.SPIFFEID)
	if err != nil {
		s.attested(AttestError)
		return nil, toStatus(ctx, s.log, "attesting node", fmt.Errorf("stored token has a bad SPIFFE ID: %w", err))
	}
	// standing returns the node record of the attestation the token made,
	// if it still stands and was made with this key.
	standing := func(tx store.Tx) (*store.Node, error) {
		n, err := tx.GetNode(nodeID.String())
		if isNotFound(err) {
			return nil, errAttestationGone
		}
		if err != nil {
			return nil, err
		}
		if n.AttestKeySHA256 != keyHash || !n.AttestedAt.Equal(a.tok.UsedAt) {
			return nil, errAttestationGone
		}
		return n, nil
	}
	var node *store.Node
	err = s.cfg.Store.View(ctx, func(tx store.Tx) (err error) {
		node, err = standing(tx)
		return err
	})
	if errors.Is(err, errAttestationGone) {
		return nil, refuse(used)
	}
	if err != nil {
		s.attested(AttestError)
		return nil, toStatus(ctx, s.log, "attesting node", err)
	}
	start := time.Now()
	svid, err := s.cfg.CA.SignX509SVID(ctx, ca.X509SVIDParams{SPIFFEID: nodeID, PublicKey: pub, TTL: NodeSVIDTTL, NodeIncarnation: node.Incarnation})
	s.signed(SVIDKindNode, start)
	if err != nil {
		s.attested(AttestError)
		return nil, toStatus(ctx, s.log, "attesting node", fmt.Errorf("signing node SVID: %w", err))
	}
	leaf := svid.Chain[0]
	var resp *nodev1.AttestNodeResponse
	err = s.cfg.Store.Batch(ctx, func(tx store.Tx) error {
		n, err := standing(tx)
		if err != nil {
			return err
		}
		if n.Incarnation != node.Incarnation {
			return errAttestationGone
		}
		n.Serial, n.ExpiresAt = serialHex(leaf), leaf.NotAfter
		if err := tx.PutNode(n); err != nil {
			return err
		}
		if err := tx.PutSVID(svidRecord(leaf, svid.AuthorityID, nodeID.String(), "")); err != nil {
			return err
		}
		r := issuedRecord(nodeID.String(), leaf, svid.AuthorityID, "", req.GetCsr())
		r.Type = audit.TypeNodeAttested
		a.details(r.Details)
		r.Details[audit.DetailIncarnation] = n.Incarnation
		r.Details[audit.DetailReason] = "retry of the attestation at " + audit.FormatTime(a.tok.UsedAt) + " with the same key (its answer was lost)"
		if err := recordAudit(tx, r, a.now); err != nil {
			return err
		}
		b, err := bundle.FromTx(tx, s.cfg.TrustDomain)
		if err != nil {
			return err
		}
		resp = &nodev1.AttestNodeResponse{Svid: svidProto(nodeID, svid.Chain), Bundle: bundleProto(b)}
		return nil
	})
	if errors.Is(err, errAttestationGone) {
		return nil, refuse(used)
	}
	if err != nil {
		s.attested(AttestError)
		return nil, toStatus(ctx, s.log, "attesting node", err)
	}
	s.attested(AttestSuccess)
	s.issued(SVIDKindNode, OutcomeSuccess)
	s.log.InfoContext(ctx, "node attestation retried with the same key", logSPIFFEID, nodeID.String(), logSerial, serialHex(leaf), logNotAfter, leaf.NotAfter, logIncarnation, node.Incarnation, logPeer, a.peer)
	return resp, nil
}
