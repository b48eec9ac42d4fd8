package api

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/signet-mesh/signet/ca"
	"github.com/signet-mesh/signet/ca/audit"
	"github.com/signet-mesh/signet/ca/bundle"
	"github.com/signet-mesh/signet/ca/k8spsat"
	"github.com/signet-mesh/signet/ca/store"
	nodev1 "github.com/signet-mesh/signet/proto/signet/node/v1"
)

// AttestorK8sPSAT names the Kubernetes projected service account token
// node attestor.
const AttestorK8sPSAT = k8spsat.Name

// K8sNodeID returns the SPIFFE ID of a Kubernetes node attested by
// k8s_psat: spiffe://<td>/signet/agent/k8s_psat/<cluster>/<node-uid>.
func K8sNodeID(td spiffeid.TrustDomain, cluster, nodeUID string) (spiffeid.ID, error) {
	return spiffeid.FromSegments(td, "signet", "agent", AttestorK8sPSAT, cluster, nodeUID)
}

// ClusterID returns the SPIFFE ID that names every node of cluster as an
// entry's parent.
func ClusterID(td spiffeid.TrustDomain, cluster string) (spiffeid.ID, error) {
	return spiffeid.FromSegments(td, "signet", "cluster", cluster)
}

// nodeCluster returns the cluster a k8s_psat node's SPIFFE ID names, and
// false for any other node. The ID was minted by this CA, so its path is
// trusted.
func nodeCluster(nodeID spiffeid.ID) (string, bool) {
	rest, ok := strings.CutPrefix(nodeID.Path(), "/signet/agent/"+AttestorK8sPSAT+"/")
	if !ok {
		return "", false
	}
	cluster, _, ok := strings.Cut(rest, "/")
	return cluster, ok && cluster != ""
}

// parentIDs are the entry parents a node mints for: itself and, for a
// Kubernetes node, its cluster.
func parentIDs(nodeID spiffeid.ID) []string {
	out := []string{nodeID.String()}
	if cluster, ok := nodeCluster(nodeID); ok {
		if id, err := ClusterID(nodeID.TrustDomain(), cluster); err == nil {
			out = append(out, id.String())
		}
	}
	return out
}

// mayMint reports whether nodeID may mint an entry with parent parentID.
func mayMint(nodeID spiffeid.ID, parentID string) bool {
	for _, p := range parentIDs(nodeID) {
		if p == parentID {
			return true
		}
	}
	return false
}

// attestK8sPSAT attests a node by its agent pod's projected service
// account token: the cluster's API server reviews it (k8spsat), the node
// SVID is signed outside any transaction, and one transaction records the
// node, its SVID and the audit record. A node attested before (an earlier
// agent pod on it) is superseded by the new incarnation: a rolling update
// of the agent DaemonSet just works, and the old pod's SVID stops speaking
// for the node.
func (s *NodeService) attestK8sPSAT(ctx context.Context, a *attempt, req *nodev1.AttestNodeRequest) (*nodev1.AttestNodeResponse, error) {
	a.attestor = AttestorK8sPSAT
	psat := req.GetK8SPsat()
	a.extra = map[string]string{audit.DetailCluster: psat.GetCluster()}
	if s.cfg.K8sPSAT == nil {
		return nil, s.attestFailed(ctx, a, AttestRefused, "no k8s_clusters configured",
			status.Errorf(codes.PermissionDenied, "k8s_psat: cluster %q is not configured on this server (it has no k8s_clusters)", psat.GetCluster()))
	}
	csr, err := ca.ParseCSR(req.GetCsr())
	if err != nil {
		return nil, s.attestFailed(ctx, a, AttestInvalid, "invalid CSR: "+err.Error(), status.Errorf(codes.InvalidArgument, "invalid CSR: %v", err))
	}
	res, err := s.cfg.K8sPSAT.Attest(ctx, psat.GetCluster(), psat.GetToken())
	var refused *k8spsat.RefusedError
	switch {
	case errors.As(err, &refused):
		return nil, s.attestFailed(ctx, a, AttestRefused, refused.Reason+": "+refused.Message, status.Error(codes.PermissionDenied, refused.Error()))
	case err != nil:
		s.attested(AttestError)
		s.log.WarnContext(ctx, "k8s_psat attestation: the API server did not answer", logError, err, logPeer, a.peer)
		return nil, status.Errorf(codes.Unavailable, "k8s_psat: checking the token with cluster %q: %v", psat.GetCluster(), err)
	}
	a.extra[audit.DetailNodeName] = res.NodeName
	a.extra[audit.DetailNodeUID] = res.NodeUID
	a.extra[audit.DetailNamespace] = res.Namespace
	a.extra[audit.DetailServiceAccount] = res.ServiceAccount
	a.extra[audit.DetailPodName] = res.PodName
	a.extra[audit.DetailPodUID] = res.PodUID
	nodeID, err := K8sNodeID(s.cfg.TrustDomain, res.Cluster, res.NodeUID)
	if err != nil {
		return nil, s.attestFailed(ctx, a, AttestInvalid, "node uid is no SPIFFE ID path segment: "+err.Error(),
			status.Errorf(codes.InvalidArgument, "k8s_psat: node %s has uid %q, which cannot name a node: %v", res.NodeName, res.NodeUID, err))
	}
	selectors := res.Selectors()
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
	err = s.cfg.Store.Update(ctx, func(tx store.Tx) error {
		replaced = nil
		if old, err := tx.GetNode(nodeID.String()); err == nil {
			replaced = old
		} else if !isNotFound(err) {
			return err
		}
		if err := tx.PutNode(&store.Node{
			SPIFFEID:    nodeID.String(),
			Attestor:    AttestorK8sPSAT,
			Serial:      serialHex(leaf),
			AttestedAt:  a.now,
			ExpiresAt:   leaf.NotAfter,
			Incarnation: incarnation,
			Selectors:   selectors,
		}); err != nil {
			return err
		}
		if err := tx.PutSVID(svidRecord(leaf, svid.AuthorityID, nodeID.String(), "")); err != nil {
			return err
		}
		if _, err := tx.NextRevision(); err != nil {
			return err
		}
		r := issuedRecord(nodeID.String(), leaf, svid.AuthorityID, "", req.GetCsr())
		r.Type = audit.TypeNodeAttested
		a.details(r.Details)
		r.Details[audit.DetailIncarnation] = incarnation
		r.Details[audit.DetailSelectors] = strings.Join(selectors, ",")
		if replaced != nil {
			r.Details[audit.DetailReplaces] = replaced.SPIFFEID
			r.Details[audit.DetailReplacedIncarnation] = replaced.Incarnation
		}
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
	if err != nil {
		s.attested(AttestError)
		return nil, toStatus(ctx, s.log, "attesting node", err)
	}
	s.attested(AttestSuccess)
	s.issued(SVIDKindNode, OutcomeSuccess)
	if replaced != nil {
		s.log.InfoContext(ctx, "node attested again by a new agent pod", logSPIFFEID, nodeID.String(), logIncarnation, replaced.Incarnation)
	}
	s.log.InfoContext(ctx, "node attested", logSPIFFEID, nodeID.String(), logSerial, serialHex(leaf), logNotAfter, leaf.NotAfter,
		logIncarnation, incarnation, logPeer, a.peer, logAttestor, AttestorK8sPSAT)
	return resp, nil
}
