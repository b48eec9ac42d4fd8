package api

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/signet-mesh/signet/ca/audit"
	"github.com/signet-mesh/signet/ca/registration"
	"github.com/signet-mesh/signet/ca/store"
	"github.com/signet-mesh/signet/internal/mtlspolicy"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
	nodev1 "github.com/signet-mesh/signet/proto/signet/node/v1"
)

// Limits of the mTLS policy set.
const (
	// MaxMTLSPolicies bounds the set: every agent receives all of it on
	// each change.
	MaxMTLSPolicies = 10000
	// MaxExemptPorts bounds one policy's exempt ports.
	MaxExemptPorts = 32
	// maxReportedCounts bounds the counts of one ReportStatus call.
	maxReportedCounts = 10000
)

// The mTLS policies: how they are validated and stored, and how the
// readiness for STRICT is judged from the counts agents report.
//
// Every change takes a store revision, so SyncEntries streams wake and push
// the new policy set to every agent. Setting or deleting a policy that
// would make a workload refuse plaintext it received within the traffic
// window (Connections.MTLSWindow) is refused unless forced, naming the
// workloads; the check runs the precedence of package mtlspolicy over the
// set before and after the change, per workload and port that saw
// plaintext, so a change that does not alter a workload's effective mode
// never blocks on it.

// SetMTLSPolicy implements adminv1.AdminServiceServer. It creates the
// policy for its scope and port, or replaces the one there. A refusal for
// readiness is audited too (outcome failure), in a transaction of its own
// that changes nothing else.
func (s *AdminService) SetMTLSPolicy(ctx context.Context, req *adminv1.SetMTLSPolicyRequest) (*adminv1.SetMTLSPolicyResponse, error) {
	p, err := validateMTLSPolicy(req.GetPolicy(), s.cfg.TrustDomain)
	if err != nil {
		return nil, toStatus(ctx, s.log, "setting mtls policy", err)
	}
	now := s.cfg.Clock.Now()
	traffic := s.cfg.Connections.traffic.snapshot(now)
	if req.GetPreview() {
		return s.previewMTLSPolicy(ctx, p, traffic)
	}
	var (
		refusing []string
		refused  error
	)
	err = s.cfg.Store.Update(ctx, func(tx store.Tx) error {
		refusing, refused = nil, nil
		stored, err := tx.ListMTLSPolicies()
		if err != nil {
			return err
		}
		before := policiesFromStore(stored)
		after := slices.DeleteFunc(slices.Clone(before), func(q mtlspolicy.Policy) bool { return q.ID == p.ID })
		if len(after) >= MaxMTLSPolicies {
			return status.Errorf(codes.ResourceExhausted, "the trust domain has %d mTLS policies, the limit; delete some first", len(after))
		}
		after = append(after, policyFromStore(p))
		refusing = refusesPlaintext(before, after, traffic)
		rec := s.policyRecord(ctx, audit.TypeMTLSPolicySet, p, refusing, "SetMTLSPolicy")
		if len(refusing) > 0 && !req.GetForce() {
			refused = status.Error(codes.FailedPrecondition, readinessMessage("to set "+p.Mode+" on "+policyFromStore(p).Scope(), refusing, traffic, s.cfg.Connections.MTLSWindow()))
			rec.Outcome, rec.Details[audit.DetailReason] = audit.OutcomeFailure, "plaintext seen in the window"
			// audit: mtls.policy_set (refused)
			return recordAudit(tx, rec, now)
		}
		if p.Revision, err = tx.NextRevision(); err != nil {
			return err
		}
		p.UpdatedAt = now
		if err := tx.PutMTLSPolicy(p); err != nil {
			return err
		}
		// audit: mtls.policy_set
		return recordAudit(tx, rec, now)
	})
	if err == nil {
		err = refused
	}
	if err != nil {
		return nil, toStatus(ctx, s.log, "setting mtls policy", err)
	}
	s.log.InfoContext(ctx, "mtls policy set", logPolicyID, p.ID, logScope, policyFromStore(p).Scope(), logPort, p.Port,
		logMode, p.Mode, logDryRun, p.DryRun, logForcedOver, refusing, logActor, adminActor(ctx))
	return &adminv1.SetMTLSPolicyResponse{Policy: adminPolicyProto(p), PlaintextWorkloads: refusing}, nil
}

// previewMTLSPolicy answers SetMTLSPolicy with preview: it installs
// nothing (so it writes no audit record) and lists every workload whose
// effective mode would change on some port, with its counts over the
// window as the new policy set would have treated them: on the ports that
// would enforce STRICT, the plaintext connections seen count as refused.
func (s *AdminService) previewMTLSPolicy(ctx context.Context, p *store.MTLSPolicy, traffic map[trafficKey]trafficCounts) (*adminv1.SetMTLSPolicyResponse, error) {
	var (
		stored  []*store.MTLSPolicy
		entries []*store.Entry
	)
	err := s.cfg.Store.View(ctx, func(tx store.Tx) (err error) {
		if stored, err = tx.ListMTLSPolicies(); err != nil {
			return err
		}
		entries, err = tx.ListEntries(store.EntryFilter{})
		return err
	})
	if err != nil {
		return nil, toStatus(ctx, s.log, "previewing mtls policy", err)
	}
	before := policiesFromStore(stored)
	after := append(slices.DeleteFunc(slices.Clone(before), func(q mtlspolicy.Policy) bool { return q.ID == p.ID }), policyFromStore(p))

	ports := map[string][]uint32{} // workload -> ports with counts
	for _, e := range entries {
		if _, ok := ports[e.SPIFFEID]; !ok {
			ports[e.SPIFFEID] = nil
		}
	}
	for k := range traffic {
		ports[k.spiffeID] = append(ports[k.spiffeID], k.port)
	}
	out := &adminv1.SetMTLSPolicyResponse{Policy: adminPolicyProto(p), Preview: true}
	for id, counted := range ports {
		changes := false
		mode, dryRun, _ := mtlspolicy.Effective(after, id, 0)
		w := &adminv1.WorkloadMTLSStatus{SpiffeId: id, Mode: modeProto(mode), DryRun: dryRun}
		for _, port := range statusPorts(append(slices.Clone(before), after...), id, append(counted, 0)) {
			bm, bd, be := mtlspolicy.Effective(before, id, port)
			am, ad, ae := mtlspolicy.Effective(after, id, port)
			changes = changes || bm != am || bd != ad || be != ae
			c := traffic[trafficKey{spiffeID: id, port: port}]
			ps := &adminv1.PortMTLSStatus{Port: port, Mode: modeProto(am), DryRun: ad, Exempt: ae, MtlsConnections: c.mtls, PlaintextConnections: c.plaintext}
			if enforcesStrict(after, id, port) {
				ps.RefusedConnections = c.plaintext
			}
			if port != 0 || c.mtls+c.plaintext+c.refused > 0 {
				w.Ports = append(w.Ports, ps)
			}
			w.MtlsConnections += c.mtls
			w.PlaintextConnections += c.plaintext
			w.RefusedConnections += ps.RefusedConnections
			if ps.RefusedConnections > 0 {
				w.PlaintextSources = mergeSources(w.PlaintextSources, c.sources)
			}
		}
		if !changes {
			continue
		}
		w.Ready = w.RefusedConnections == 0
		out.WouldRefuse = append(out.WouldRefuse, w)
		if w.RefusedConnections > 0 {
			out.PlaintextWorkloads = append(out.PlaintextWorkloads, id)
		}
	}
	slices.SortFunc(out.WouldRefuse, func(a, b *adminv1.WorkloadMTLSStatus) int { return strings.Compare(a.SpiffeId, b.SpiffeId) })
	slices.Sort(out.PlaintextWorkloads)
	return out, nil
}

// policyRecord is the audit record of a change to p.
func (s *AdminService) policyRecord(ctx context.Context, typ string, p *store.MTLSPolicy, forcedOver []string, method string) audit.Record {
	subject := p.SPIFFEID
	switch {
	case p.Prefix != "":
		subject = p.Prefix
	case subject == "":
		subject = s.cfg.TrustDomain.IDString()
	}
	exempt := make([]string, 0, len(p.ExemptPorts))
	for _, e := range p.ExemptPorts {
		exempt = append(exempt, strconv.FormatUint(uint64(e), 10))
	}
	d := map[string]string{
		audit.DetailPolicyID:    p.ID,
		audit.DetailMode:        p.Mode,
		audit.DetailPort:        strconv.FormatUint(uint64(p.Port), 10),
		audit.DetailExemptPorts: strings.Join(exempt, ","),
		audit.DetailDryRun:      strconv.FormatBool(p.DryRun),
		audit.DetailMethod:      method,
	}
	if len(forcedOver) > 0 {
		d[audit.DetailForcedOver] = strings.Join(forcedOver, ",")
	}
	return audit.Record{Type: typ, Outcome: audit.OutcomeSuccess, Actor: adminActor(ctx), Subject: subject, Details: d}
}

// ListMTLSPolicies implements adminv1.AdminServiceServer.
func (s *AdminService) ListMTLSPolicies(ctx context.Context, req *adminv1.ListMTLSPoliciesRequest) (*adminv1.ListMTLSPoliciesResponse, error) {
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, err
	}
	var after store.MTLSPolicy
	paged, err := decodePageToken(req.GetPageToken(), &after)
	if err != nil {
		return nil, err
	}
	var stored []*store.MTLSPolicy
	err = s.cfg.Store.View(ctx, func(tx store.Tx) (err error) {
		stored, err = tx.ListMTLSPolicies()
		return err
	})
	if err != nil {
		return nil, toStatus(ctx, s.log, "listing mtls policies", err)
	}
	sortStored(stored)
	out := &adminv1.ListMTLSPoliciesResponse{}
	out.Policies, out.NextPageToken = takePage(stored,
		func(p *store.MTLSPolicy) bool { return !paged || compareStored(p, &after) > 0 },
		adminPolicyProto,
		// The key is what the order compares: the scope, port and id.
		func(p *store.MTLSPolicy) any {
			return &store.MTLSPolicy{ID: p.ID, SPIFFEID: p.SPIFFEID, Prefix: p.Prefix, Port: p.Port}
		}, size)
	return out, nil
}

// DeleteMTLSPolicy implements adminv1.AdminServiceServer.
func (s *AdminService) DeleteMTLSPolicy(ctx context.Context, req *adminv1.DeleteMTLSPolicyRequest) (*adminv1.DeleteMTLSPolicyResponse, error) {
	id := req.GetId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "id: is required (see mtls list)")
	}
	now := s.cfg.Clock.Now()
	traffic := s.cfg.Connections.traffic.snapshot(now)
	var (
		refusing []string
		refused  error
	)
	err := s.cfg.Store.Update(ctx, func(tx store.Tx) error {
		refusing, refused = nil, nil
		old, err := tx.GetMTLSPolicy(id)
		if isNotFound(err) {
			return status.Errorf(codes.NotFound, "mtls policy %q not found", id)
		}
		if err != nil {
			return err
		}
		stored, err := tx.ListMTLSPolicies()
		if err != nil {
			return err
		}
		before := policiesFromStore(stored)
		after := slices.DeleteFunc(slices.Clone(before), func(q mtlspolicy.Policy) bool { return q.ID == id })
		refusing = refusesPlaintext(before, after, traffic)
		rec := s.policyRecord(ctx, audit.TypeMTLSPolicyDeleted, old, refusing, "DeleteMTLSPolicy")
		if len(refusing) > 0 && !req.GetForce() {
			refused = status.Error(codes.FailedPrecondition, readinessMessage("to delete policy "+id, refusing, traffic, s.cfg.Connections.MTLSWindow()))
			rec.Outcome, rec.Details[audit.DetailReason] = audit.OutcomeFailure, "plaintext seen in the window"
			// audit: mtls.policy_deleted (refused)
			return recordAudit(tx, rec, now)
		}
		if err := tx.DeleteMTLSPolicy(id); err != nil {
			return err
		}
		if _, err := tx.NextRevision(); err != nil {
			return err
		}
		// audit: mtls.policy_deleted
		return recordAudit(tx, rec, now)
	})
	if err == nil {
		err = refused
	}
	if err != nil {
		return nil, toStatus(ctx, s.log, "deleting mtls policy", err)
	}
	s.log.InfoContext(ctx, "mtls policy deleted", logPolicyID, id, logForcedOver, refusing, logActor, adminActor(ctx))
	return &adminv1.DeleteMTLSPolicyResponse{PlaintextWorkloads: refusing}, nil
}

// GetMTLSStatus implements adminv1.AdminServiceServer: for every
// registered or reporting workload, its effective mode and its connection
// counts over the window. A workload is ready for STRICT when the window
// holds no plaintext and no refused (or would-be-refused) connection.
func (s *AdminService) GetMTLSStatus(ctx context.Context, _ *adminv1.GetMTLSStatusRequest) (*adminv1.GetMTLSStatusResponse, error) {
	var (
		stored  []*store.MTLSPolicy
		entries []*store.Entry
	)
	err := s.cfg.Store.View(ctx, func(tx store.Tx) (err error) {
		if stored, err = tx.ListMTLSPolicies(); err != nil {
			return err
		}
		entries, err = tx.ListEntries(store.EntryFilter{})
		return err
	})
	if err != nil {
		return nil, toStatus(ctx, s.log, "reading mtls status", err)
	}
	policies := policiesFromStore(stored)
	traffic := s.cfg.Connections.traffic.snapshot(s.cfg.Clock.Now())

	ports := map[string][]uint32{} // workload -> ports with counts
	for _, e := range entries {
		if _, ok := ports[e.SPIFFEID]; !ok {
			ports[e.SPIFFEID] = nil
		}
	}
	for k := range traffic {
		ports[k.spiffeID] = append(ports[k.spiffeID], k.port)
	}
	out := &adminv1.GetMTLSStatusResponse{WindowSeconds: int64(s.cfg.Connections.MTLSWindow().Seconds())}
	for id, counted := range ports {
		mode, dryRun, _ := mtlspolicy.Effective(policies, id, 0)
		w := &adminv1.WorkloadMTLSStatus{SpiffeId: id, Mode: modeProto(mode), DryRun: dryRun}
		for _, port := range statusPorts(policies, id, counted) {
			c := traffic[trafficKey{spiffeID: id, port: port}]
			pm, pd, pe := mtlspolicy.Effective(policies, id, port)
			w.Ports = append(w.Ports, &adminv1.PortMTLSStatus{
				Port: port, Mode: modeProto(pm), DryRun: pd, Exempt: pe,
				MtlsConnections: c.mtls, PlaintextConnections: c.plaintext, RefusedConnections: c.refused,
			})
			w.MtlsConnections += c.mtls
			w.PlaintextConnections += c.plaintext
			w.RefusedConnections += c.refused
			w.PlaintextSources = mergeSources(w.PlaintextSources, c.sources)
		}
		w.Ready = w.PlaintextConnections == 0 && w.RefusedConnections == 0
		out.Workloads = append(out.Workloads, w)
	}
	slices.SortFunc(out.Workloads, func(a, b *adminv1.WorkloadMTLSStatus) int { return strings.Compare(a.SpiffeId, b.SpiffeId) })
	return out, nil
}

// statusPorts are the ports shown for workload id: those with counts and
// those a policy of its scope names (port policies and exemptions).
func statusPorts(policies []mtlspolicy.Policy, id string, counted []uint32) []uint32 {
	ports := slices.Clone(counted)
	for _, p := range policies {
		if !p.Matches(id) {
			continue
		}
		if p.Port != 0 {
			ports = append(ports, p.Port)
		}
		ports = append(ports, p.ExemptPorts...)
	}
	slices.Sort(ports)
	return slices.Compact(ports)
}

// enforcesStrict reports whether policies make id refuse plaintext on port.
func enforcesStrict(policies []mtlspolicy.Policy, id string, port uint32) bool {
	mode, dryRun, exempt := mtlspolicy.Effective(policies, id, port)
	return mode == mtlspolicy.Strict && !dryRun && !exempt
}

// refusesPlaintext returns the workloads that received plaintext in the
// window on a port where after enforces STRICT and before did not: those
// a change from before to after would cut off.
func refusesPlaintext(before, after []mtlspolicy.Policy, traffic map[trafficKey]trafficCounts) []string {
	var ids []string
	for k, c := range traffic {
		if c.plaintext == 0 {
			continue
		}
		if enforcesStrict(after, k.spiffeID, k.port) && !enforcesStrict(before, k.spiffeID, k.port) {
			ids = append(ids, k.spiffeID)
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

// readinessMessage explains a refusal: which workloads, from where, and
// what to do.
func readinessMessage(what string, ids []string, traffic map[trafficKey]trafficCounts, window fmt.Stringer) string {
	var names []string
	for _, id := range ids {
		var sources []string
		var n int64
		for k, c := range traffic {
			if k.spiffeID == id {
				sources = mergeSources(sources, c.sources)
				n += c.plaintext
			}
		}
		name := id + " (" + strconv.FormatInt(n, 10) + " plaintext"
		if len(sources) > 0 {
			name += " from " + strings.Join(sources, ", ")
		}
		names = append(names, name+")")
	}
	return fmt.Sprintf("refusing %s: %d workload(s) received plaintext connections in the last %s and would refuse them under STRICT: %s; "+
		"move their clients to mTLS (watch `signet mtls status`), try --dry-run first, or use --force",
		what, len(ids), window, strings.Join(names, "; "))
}

// validateMTLSPolicy checks an operator's policy and returns it in stored
// form (normalized, with its ID), or an error naming the field.
func validateMTLSPolicy(in *adminv1.MTLSPolicy, td spiffeid.TrustDomain) (*store.MTLSPolicy, error) {
	if in == nil {
		return nil, &registration.Error{Field: "policy", Msg: "is required"}
	}
	if in.GetId() != "" || in.GetRevision() != 0 {
		return nil, &registration.Error{Field: "id", Value: in.GetId(), Msg: "id and revision are assigned by the server"}
	}
	mode, ok := modeFromProto(in.GetMode())
	if !ok {
		return nil, &registration.Error{Field: "mode", Value: in.GetMode().String(), Msg: "is required: STRICT, PERMISSIVE or DISABLE"}
	}
	out := &store.MTLSPolicy{Mode: string(mode), Port: in.GetPort(), DryRun: in.GetDryRun()}
	switch {
	case in.GetSpiffeId() != "" && in.GetPrefix() != "":
		return nil, &registration.Error{Field: "spiffe_id and prefix", Msg: "set at most one (neither sets the trust-domain default)"}
	case in.GetSpiffeId() != "":
		id, err := registration.ParseWorkloadID(in.GetSpiffeId(), td)
		if err != nil {
			return nil, err
		}
		out.SPIFFEID = id.String()
	case in.GetPrefix() != "":
		prefix, err := parsePrefix(in.GetPrefix(), td)
		if err != nil {
			return nil, err
		}
		out.Prefix = prefix
	}
	if out.Port > 65535 {
		return nil, &registration.Error{Field: "port", Value: strconv.FormatUint(uint64(out.Port), 10), Msg: "must be 1-65535, or 0 for every port"}
	}
	if len(in.GetExemptPorts()) > 0 && out.Port != 0 {
		return nil, &registration.Error{Field: "exempt_ports", Msg: "only a policy for every port (no port) exempts ports; set them on the scope's every-port policy"}
	}
	if len(in.GetExemptPorts()) > MaxExemptPorts {
		return nil, &registration.Error{Field: "exempt_ports", Msg: fmt.Sprintf("%d ports exceed the limit of %d", len(in.GetExemptPorts()), MaxExemptPorts)}
	}
	for _, p := range in.GetExemptPorts() {
		if p == 0 || p > 65535 {
			return nil, &registration.Error{Field: "exempt_ports", Value: strconv.FormatUint(uint64(p), 10), Msg: "must be 1-65535"}
		}
	}
	out.ExemptPorts = slices.Compact(slices.Sorted(slices.Values(in.GetExemptPorts())))
	if out.DryRun && mode != mtlspolicy.Strict {
		return nil, &registration.Error{Field: "dry_run", Msg: "only with mode STRICT: it lets through what STRICT would refuse"}
	}
	out.ID = mtlspolicy.ID(out.SPIFFEID, out.Prefix, out.Port)
	return out, nil
}

// parsePrefix checks a SPIFFE ID path prefix and returns it ending in "/",
// so that it matches whole path segments.
func parsePrefix(s string, td spiffeid.TrustDomain) (string, error) {
	trimmed := strings.TrimSuffix(s, "/")
	id, err := registration.ParseID("prefix", trimmed, td)
	if err != nil {
		return "", err
	}
	if id.Path() == "" {
		return "", &registration.Error{Field: "prefix", Value: s, Msg: "covers the whole trust domain: set the trust-domain default (no prefix) instead"}
	}
	return id.String() + "/", nil
}

func modeFromProto(m adminv1.MTLSMode) (mtlspolicy.Mode, bool) {
	switch m {
	case adminv1.MTLSMode_MTLS_MODE_STRICT:
		return mtlspolicy.Strict, true
	case adminv1.MTLSMode_MTLS_MODE_PERMISSIVE:
		return mtlspolicy.Permissive, true
	case adminv1.MTLSMode_MTLS_MODE_DISABLE:
		return mtlspolicy.Disable, true
	}
	return "", false
}

func modeProto(m mtlspolicy.Mode) adminv1.MTLSMode {
	switch m {
	case mtlspolicy.Strict:
		return adminv1.MTLSMode_MTLS_MODE_STRICT
	case mtlspolicy.Permissive:
		return adminv1.MTLSMode_MTLS_MODE_PERMISSIVE
	case mtlspolicy.Disable:
		return adminv1.MTLSMode_MTLS_MODE_DISABLE
	}
	return adminv1.MTLSMode_MTLS_MODE_UNSPECIFIED
}

func policyFromStore(p *store.MTLSPolicy) mtlspolicy.Policy {
	return mtlspolicy.Policy{
		ID: p.ID, SPIFFEID: p.SPIFFEID, Prefix: p.Prefix, Port: p.Port, Mode: mtlspolicy.Mode(p.Mode),
		ExemptPorts: p.ExemptPorts, DryRun: p.DryRun, Revision: p.Revision,
	}
}

func policiesFromStore(ps []*store.MTLSPolicy) []mtlspolicy.Policy {
	out := make([]mtlspolicy.Policy, 0, len(ps))
	for _, p := range ps {
		out = append(out, policyFromStore(p))
	}
	return out
}

// sortStored orders stored policies as mtlspolicy.Compare does.
func sortStored(ps []*store.MTLSPolicy) {
	slices.SortFunc(ps, compareStored)
}

// compareStored is the display order of policies, then their id: a total
// order, which the listing's pages follow.
func compareStored(a, b *store.MTLSPolicy) int {
	return cmp.Or(mtlspolicy.Compare(policyFromStore(a), policyFromStore(b)), strings.Compare(a.ID, b.ID))
}

func adminPolicyProto(p *store.MTLSPolicy) *adminv1.MTLSPolicy {
	return &adminv1.MTLSPolicy{
		Id: p.ID, SpiffeId: p.SPIFFEID, Prefix: p.Prefix, Port: p.Port, Mode: modeProto(mtlspolicy.Mode(p.Mode)),
		ExemptPorts: p.ExemptPorts, DryRun: p.DryRun, Revision: p.Revision,
	}
}

// nodePolicies is the policy set as SyncEntries sends it.
func nodePolicies(ps []*store.MTLSPolicy) *nodev1.MTLSPolicies {
	out := &nodev1.MTLSPolicies{Policies: make([]*nodev1.MTLSPolicy, 0, len(ps))}
	for _, p := range ps {
		out.Policies = append(out.Policies, &nodev1.MTLSPolicy{
			Id: p.ID, SpiffeId: p.SPIFFEID, Prefix: p.Prefix, Port: p.Port, Mode: p.Mode,
			ExemptPorts: p.ExemptPorts, DryRun: p.DryRun,
		})
	}
	return out
}

// policySetVersion identifies a policy set, to tell when SyncEntries must
// resend it: every change takes a new revision, and a deletion changes the
// set of IDs.
func policySetVersion(ps []*store.MTLSPolicy) string {
	var b strings.Builder
	for _, p := range ps {
		b.WriteString(p.ID)
		b.WriteByte('@')
		b.WriteString(strconv.FormatInt(p.Revision, 10))
		b.WriteByte(',')
	}
	return b.String()
}

// workloadsOf returns the SPIFFE IDs of the entries nodeID parents: the
// workloads it may report connection counts for.
func workloadsOf(tx store.Tx, nodeID spiffeid.ID) (map[string]bool, error) {
	entries, err := tx.ListEntries(store.EntryFilter{ParentID: nodeID.String()})
	if err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(entries))
	for _, e := range entries {
		out[e.SPIFFEID] = true
	}
	return out, nil
}

// recordConnections adds a node's reported counts to the traffic window,
// skipping (and logging) workloads the node does not parent.
func (s *NodeService) recordConnections(ctx context.Context, nodeID spiffeid.ID, counts []*nodev1.ConnectionCounts, owned map[string]bool) {
	now := s.cfg.Clock.Now()
	for _, c := range counts {
		if !owned[c.GetSpiffeId()] {
			s.log.WarnContext(ctx, "ignoring connection counts for a workload the node does not parent", logNodeID, nodeID.String(), logSPIFFEID, c.GetSpiffeId())
			continue
		}
		if c.GetPort() > 65535 {
			continue
		}
		sources := c.GetPlaintextSources()
		if len(sources) > maxTrafficSources {
			sources = sources[:maxTrafficSources]
		}
		s.cfg.Connections.traffic.add(now, trafficKey{spiffeID: c.GetSpiffeId(), port: c.GetPort()}, trafficCounts{
			mtls: c.GetMtls(), plaintext: c.GetPlaintext(), refused: c.GetRefused(), sources: sources,
		})
	}
}
