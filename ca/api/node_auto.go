package api

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"

	"github.com/signet-mesh/signet/ca/audit"
	"github.com/signet-mesh/signet/ca/k8spsat"
	"github.com/signet-mesh/signet/ca/registration"
	"github.com/signet-mesh/signet/ca/store"
	nodev1 "github.com/signet-mesh/signet/proto/signet/node/v1"
)

// Automatic identities (k8s_clusters auto_identity): a Kubernetes node of
// such a cluster is sent one entry per namespace and service account of
// the pods on it, made by the CA rather than stored: id
// "auto:<namespace>:<service-account>", SPIFFE ID
// spiffe://<td>/ns/<namespace>/sa/<service-account>, selectors k8s:ns and
// k8s:sa. The agent mints them like any entry; the CA checks with the API
// server that such a pod runs on the asking node before it signs.

// AutoEntryPrefix starts the id of every automatic entry.
const AutoEntryPrefix = "auto:"

// autoEntryRevision is the revision of every automatic entry: one never
// changes, it only comes and goes.
const autoEntryRevision = 1

// autoEntry returns the automatic entry of id for the node nodeID.
func autoEntry(td spiffeid.TrustDomain, nodeID spiffeid.ID, id k8spsat.AutoIdentity) (*store.Entry, error) {
	sid, err := spiffeid.FromSegments(td, "ns", id.Namespace, "sa", id.ServiceAccount)
	if err != nil {
		return nil, err
	}
	return &store.Entry{
		ID:        AutoEntryPrefix + id.Namespace + ":" + id.ServiceAccount,
		SPIFFEID:  sid.String(),
		ParentID:  nodeID.String(),
		Selectors: []string{"k8s:ns:" + id.Namespace, "k8s:sa:" + id.ServiceAccount},
		X509TTL:   registration.DefaultX509TTL,
		JWTTTL:    registration.DefaultJWTTTL,
		Revision:  autoEntryRevision,
	}, nil
}

// parseAutoEntryID reads an automatic entry's id. Kubernetes names hold
// no colon.
func parseAutoEntryID(s string) (k8spsat.AutoIdentity, bool) {
	rest, ok := strings.CutPrefix(s, AutoEntryPrefix)
	if !ok {
		return k8spsat.AutoIdentity{}, false
	}
	ns, sa, ok := strings.Cut(rest, ":")
	if !ok || ns == "" || sa == "" || strings.Contains(sa, ":") {
		return k8spsat.AutoIdentity{}, false
	}
	return k8spsat.AutoIdentity{Namespace: ns, ServiceAccount: sa}, true
}

// k8sNodeName is the Kubernetes node name of an attested k8s_psat node
// (its k8s_psat:node-name selector).
func k8sNodeName(n *store.Node) string {
	for _, s := range n.Selectors {
		if name, ok := strings.CutPrefix(s, AttestorK8sPSAT+":node-name:"); ok {
			return name
		}
	}
	return ""
}

// autoCluster returns the cluster and node name of a node that gets
// automatic identities, and false for any other.
func (s *NodeService) autoCluster(nodeID spiffeid.ID, n *store.Node) (cluster, nodeName string, ok bool) {
	cluster, ok = nodeCluster(nodeID)
	if !ok || n == nil || !s.cfg.K8sPSAT.AutoIdentityEnabled(cluster) {
		return "", "", false
	}
	nodeName = k8sNodeName(n)
	return cluster, nodeName, nodeName != ""
}

// autoEntries are the automatic entries the pods on a node need, as the
// CA's view of the cluster's pods has them.
func (s *NodeService) autoEntries(nodeID spiffeid.ID, n *store.Node) []*store.Entry {
	cluster, nodeName, ok := s.autoCluster(nodeID, n)
	if !ok {
		return nil
	}
	var out []*store.Entry
	for _, id := range s.cfg.K8sPSAT.AutoIdentities(cluster, nodeName) {
		if e, err := autoEntry(s.cfg.TrustDomain, nodeID, id); err == nil {
			out = append(out, e)
		}
	}
	return out
}

// checkAutoEntries asks the API server, for each automatic entry among
// entries, whether a pod of its service account runs on the node; it
// removes the refused ones from entries and returns a result (code and
// message) for each, by entry id, audited as recordType failures. An API error refuses too, as
// Unavailable: nothing is minted on a check that could not be made.
func (s *NodeService) checkAutoEntries(ctx context.Context, nodeID spiffeid.ID, n *store.Node, entries map[string]*store.Entry, recordType string) map[string]*nodev1.MintX509SVIDResult {
	refused := map[string]*nodev1.MintX509SVIDResult{}
	cluster, nodeName, _ := s.autoCluster(nodeID, n)
	ids := make([]string, 0)
	for id := range entries {
		if strings.HasPrefix(id, AutoEntryPrefix) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		auto, _ := parseAutoEntryID(id)
		err := s.cfg.K8sPSAT.CheckAutoIdentity(ctx, cluster, nodeName, auto)
		if err == nil {
			continue
		}
		delete(entries, id)
		res := &nodev1.MintX509SVIDResult{EntryId: id, Code: int32(codes.PermissionDenied), Message: err.Error()}
		var r *k8spsat.RefusedError
		if !errors.As(err, &r) {
			res.Code, res.Message = int32(codes.Unavailable), "checking the pod with the API server: "+err.Error()
		}
		s.log.WarnContext(ctx, "automatic identity refused", logSPIFFEID, nodeID.String(), logEntryID, id, logError, err)
		rec := audit.Record{Type: recordType, Outcome: audit.OutcomeFailure, Actor: nodeID.String(), Details: map[string]string{
			audit.DetailEntryID: id, audit.DetailReason: res.Message, audit.DetailCluster: cluster, audit.DetailNodeName: nodeName,
		}}
		if e, err := autoEntry(s.cfg.TrustDomain, nodeID, auto); err == nil {
			rec.Subject = e.SPIFFEID
		}
		if err := s.cfg.Store.Update(ctx, func(tx store.Tx) error { return recordAudit(tx, rec, s.cfg.Clock.Now()) }); err != nil {
			res.Code, res.Message = int32(codes.Internal), "recording the refusal failed"
		}
		refused[id] = res
	}
	return refused
}

// autoEntryFor returns the automatic entry id for the node, after the API
// server check: nil and no result when the node gets no automatic
// identities (the entry does not exist for it), a result when the check
// refused it.
func (s *NodeService) autoEntryFor(ctx context.Context, nodeID spiffeid.ID, n *store.Node, id string) (*store.Entry, *nodev1.MintX509SVIDResult) {
	auto, ok := parseAutoEntryID(id)
	if !ok {
		return nil, nil
	}
	if _, _, ok := s.autoCluster(nodeID, n); !ok {
		return nil, nil
	}
	e, err := autoEntry(s.cfg.TrustDomain, nodeID, auto)
	if err != nil {
		return nil, nil
	}
	if refused := s.checkAutoEntries(ctx, nodeID, n, map[string]*store.Entry{id: e}, audit.TypeJWTIssued); refused[id] != nil {
		return nil, refused[id]
	}
	return e, nil
}
