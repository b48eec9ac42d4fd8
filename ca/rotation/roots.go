package rotation

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/signet-mesh/signet/ca/audit"
	"github.com/signet-mesh/signet/ca/store"
)

// The root rotation steps. Each is an op (commit.go): it checks the step
// against the authorities read from the store and changes them; the
// planner then adds what follows from the change (a new intermediate
// under a newly active root, a cross-signature by a retiring one), the
// preparer makes the keys and certificates, and one transaction commits
// it all with the step's audit record, provided the authorities did not
// change meanwhile. A crash leaves the state before or after the step,
// never between (tests crash the process at Config.CrashPoint).

// PrepareParams are the inputs of PrepareRoot. With no field set, a new
// self-signed root is created.
type PrepareParams struct {
	// CertPEM imports this CA certificate as the new root instead: either
	// a self-signed root, with its key in KeyPEM, or a CA certificate
	// issued by the organisation's PKI (signet's intermediates go under
	// it), with the certificates above it, up to the root(s) that become
	// trust anchors, after it or in ChainPEM. The key of an issued
	// certificate is in KeyPEM, or is the key of an earlier CSROnly call:
	// the one named by CSRKeyID, or else the one that matches.
	CertPEM, ChainPEM, KeyPEM []byte
	CSRKeyID                  string
	// CSROnly creates a key and returns a CSR for it, for the
	// organisation's CA to sign; nothing enters the bundle until the
	// certificate is imported with CertPEM.
	CSROnly bool
	// Actor names who asked, for the audit record.
	Actor string
}

// PrepareResult is the outcome of PrepareRoot: the prepared root, or for
// CSROnly the CSR (PEM) and the ID of its key.
type PrepareResult struct {
	Authority *store.Authority
	CSRPEM    []byte
	CSRKeyID  string
}

// PrepareRoot creates (or imports) a new root in state prepared: it
// enters the trust bundle at once, under a new bundle revision recorded
// on it (Authority.BundleRevision), but signs nothing until ActivateRoot.
// It refuses (ErrRefused) while another root is prepared, and fails with
// ErrInvalidImport for an unusable import.
func (m *Manager) PrepareRoot(ctx context.Context, p PrepareParams) (*PrepareResult, error) {
	if p.CSROnly {
		if len(p.CertPEM) > 0 || len(p.KeyPEM) > 0 {
			return nil, refuse(ErrRefused, "a CSR is made for a new key: it cannot be combined with a certificate or key to import")
		}
		return m.prepareCSR(ctx, p)
	}
	var imp *parsedImport
	if len(p.CertPEM) > 0 {
		var err error
		if imp, err = parseImportPEM(p); err != nil {
			return nil, err
		}
	} else if len(p.KeyPEM) > 0 || len(p.ChainPEM) > 0 || p.CSRKeyID != "" {
		return nil, refuse(ErrRefused, "a key, chain or CSR key ID was given without the certificate to import")
	}
	var root *store.Authority
	err := m.apply(ctx, "prepare", func(_ context.Context, w *work, now time.Time) error {
		if prep := rootsIn(w.auths, store.StatePrepared); len(prep) > 0 {
			return refuse(ErrRefused, "root %s is already prepared: activate it (signet root activate %[1]s), or retire it to abandon it (signet root retire %[1]s)", prep[0].ID)
		}
		how := "created"
		if imp != nil {
			how = "imported"
			for _, a := range w.auths {
				if a.Kind == store.KindRoot && a.State != store.StateRetired && string(a.CertDER) == string(imp.cert.Raw) {
					return refuse(ErrRefused, "this certificate is already root %s (%s)", a.ID, a.State)
				}
			}
		}
		w.newRoot = &rootSource{state: store.StatePrepared, parsed: imp}
		w.bundleChanged = true
		w.records = func(w *work) []audit.Record {
			root = w.root
			return []audit.Record{authorityRecord(audit.TypeAuthorityPrepared, p.Actor, w.root, map[string]string{audit.DetailMethod: "PrepareRoot (" + how + ")"})}
		}
		w.events = append(w.events, func() {
			m.log.Info("root prepared", logAuthorityID, w.root.ID, logNotAfter, w.root.NotAfter, logRevision, w.root.BundleRevision, logActor, p.Actor)
		})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &PrepareResult{Authority: root}, nil
}

// ActivateParams are the inputs of ActivateRoot.
type ActivateParams struct {
	// ID of the prepared root; empty means the only prepared root.
	ID string
	// Agents maps each connected agent's SPIFFE ID to the bundle revision
	// it last reported applying.
	Agents map[string]int64
	// Force activates even though some connected agents have not applied
	// the bundle that holds the root.
	Force bool
	// RotateNow makes every agent re-mint every SVID now (spread with
	// jitter) instead of at its half-life.
	RotateNow bool
	// Actor names who asked, for the audit record.
	Actor string
}

// ActivateRoot makes a prepared root the active one, in one transaction:
// the active root becomes retiring (still trusted, no longer signing), a
// new intermediate is signed by the new root (and cross-signed by the
// old one) and signs every SVID from then on, and with RotateNow the
// rotate generation grows. It refuses with ErrUnsafe while some connected
// agent has not applied the bundle that holds the root (unless Force),
// and with ErrRefused when there is no single prepared root, or another
// root is still retiring.
func (m *Manager) ActivateRoot(ctx context.Context, p ActivateParams) (*store.Authority, error) {
	var root *store.Authority
	err := m.apply(ctx, "activate", func(_ context.Context, w *work, now time.Time) error {
		var err error
		if root, err = candidate(w.auths, p.ID, "activate", store.StatePrepared); err != nil {
			return err
		}
		if old := rootsIn(w.auths, store.StateRetiring); len(old) > 0 {
			return refuse(ErrRefused, "root %s is still retiring: retire it (signet root retire %[1]s) before activating another", old[0].ID)
		}
		if now.Before(root.NotBefore) || !now.Before(root.NotAfter) {
			return refuse(ErrRefused, "root %s is not valid now (valid %s to %s)", root.ID, root.NotBefore.UTC().Format(time.RFC3339), root.NotAfter.UTC().Format(time.RFC3339))
		}
		stale := StaleAgents(root.BundleRevision, p.Agents)
		if len(stale) > 0 && !p.Force {
			return refuse(ErrUnsafe, "%d of %d connected agents have not applied bundle revision %d (%s); wait or use --force",
				len(stale), len(p.Agents), root.BundleRevision, sample(stale, 3))
		}
		for _, a := range rootsIn(w.auths, store.StateActive) {
			w.move(a, store.StateRetiring, now, m.logMove(a))
		}
		w.move(root, store.StateActive, now, m.logMove(root))
		// Wake the sync streams (rotate generation) and the server's
		// client-certificate pool.
		w.rotateNow, w.takeRevision = p.RotateNow, true
		details := map[string]string{audit.DetailMethod: "ActivateRoot", detailRotateNow: strconv.FormatBool(p.RotateNow)}
		if len(stale) > 0 {
			details[detailForced] = "true"
			details[detailStaleAgents] = strings.Join(stale, ",")
		}
		w.records = func(*work) []audit.Record {
			return []audit.Record{authorityRecord(audit.TypeAuthorityActivated, p.Actor, root, details)}
		}
		w.events = append(w.events, func() {
			if len(stale) > 0 {
				m.log.Warn("root activated with --force before every agent applied its bundle", logAuthorityID, root.ID, logStaleAgents, strings.Join(stale, ","), logActor, p.Actor)
			}
			m.log.Info("root activated", logAuthorityID, root.ID, logRotateNow, p.RotateNow, logActor, p.Actor)
		})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return root, nil
}

// RetireParams are the inputs of RetireRoot.
type RetireParams struct {
	// ID of the root; empty means the only retiring root. A prepared
	// root may be retired (abandoned) when named.
	ID string
	// Force retires even though current SVIDs still chain to the root.
	Force bool
	// Actor names who asked, for the audit record.
	Actor string
}

// RetireRoot takes a retiring root out of the bundle, in one transaction
// that takes a new bundle revision. It refuses with ErrUnsafe while any
// workload's or node's current SVID (the newest one per entry and node,
// if unexpired) still chains to the root, unless Force, and with
// ErrRefused when there is no single retiring root. The check reads the
// store before the transaction; the root has signed nothing new since it
// stopped being active, so nothing can start chaining to it meanwhile.
func (m *Manager) RetireRoot(ctx context.Context, p RetireParams) (*store.Authority, error) {
	var root *store.Authority
	err := m.apply(ctx, "retire", func(ctx context.Context, w *work, now time.Time) error {
		states := []store.AuthorityState{store.StateRetiring}
		if p.ID != "" {
			states = append(states, store.StatePrepared)
		}
		var err error
		if root, err = candidate(w.auths, p.ID, "retire", states...); err != nil {
			return err
		}
		var blockers []*store.SVIDRecord
		if root.State == store.StateRetiring {
			if blockers, err = m.currentSVIDsUnder(ctx, w.auths, root.ID, now); err != nil {
				return err
			}
		}
		if len(blockers) > 0 && !p.Force {
			last := blockers[0].NotAfter
			names := make([]string, 0, len(blockers))
			for _, r := range blockers {
				last = later(last, r.NotAfter)
				names = append(names, describeSVID(r))
			}
			return refuse(ErrUnsafe, "%d current SVIDs still chain to root %s (%s); wait until agents re-mint them (at the latest by %s) or use --force",
				len(blockers), root.ID, sample(names, 3), last.UTC().Format(time.RFC3339))
		}
		w.move(root, store.StateRetired, now, m.logMove(root))
		w.bundleChanged = true
		details := map[string]string{audit.DetailMethod: "RetireRoot"}
		if len(blockers) > 0 {
			details[detailForced] = "true"
			details[detailCurrentSVIDs] = strconv.Itoa(len(blockers))
		}
		w.records = func(*work) []audit.Record {
			return []audit.Record{authorityRecord(audit.TypeAuthorityRetired, p.Actor, root, details)}
		}
		w.events = append(w.events, func() {
			if len(blockers) > 0 {
				m.log.Warn("root retired with --force while current SVIDs chain to it", logAuthorityID, root.ID, logSVIDs, len(blockers), logActor, p.Actor)
			}
			m.log.Info("root retired", logAuthorityID, root.ID, logRevision, w.revision, logActor, p.Actor)
		})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return root, nil
}

// candidate picks the root a step acts on: the one named id, which must be
// in one of states, or else the only root in states[0].
func candidate(auths []*store.Authority, id, step string, states ...store.AuthorityState) (*store.Authority, error) {
	if id != "" {
		for _, a := range auths {
			if a.ID != id {
				continue
			}
			if a.Kind != store.KindRoot {
				return nil, refuse(ErrAuthorityNotFound, "authority %s is a %s, not a root", id, a.Kind)
			}
			if !slices.Contains(states, a.State) {
				return nil, refuse(ErrRefused, "cannot %s root %s: it is %s, not %s", step, id, a.State, states[0])
			}
			return a, nil
		}
		return nil, refuse(ErrAuthorityNotFound, "no root with id %q", id)
	}
	found := rootsIn(auths, states[0])
	switch len(found) {
	case 0:
		if states[0] == store.StatePrepared {
			return nil, refuse(ErrRefused, "no prepared root to activate: run signet root prepare first")
		}
		return nil, refuse(ErrRefused, "no retiring root to retire: a root becomes retiring when signet root activate replaces it")
	case 1:
		return found[0], nil
	}
	ids := make([]string, len(found))
	for i, a := range found {
		ids[i] = a.ID
	}
	return nil, refuse(ErrRefused, "%d roots are %s (%s): name the one to %s", len(found), states[0], strings.Join(ids, ", "), step)
}

// parents maps each intermediate's ID to its root's.
func parents(auths []*store.Authority) map[string]string {
	out := map[string]string{}
	for _, a := range auths {
		if a.Kind == store.KindIntermediate {
			out[a.ID] = a.ParentID
		}
	}
	return out
}

// currentSVIDsUnder returns the current SVIDs that chain to root: for each
// (entry, node) whose entry still exists under that node, and each node
// that still exists, its current SVID (the store's current index: the
// newest one issued) if it is unexpired and was signed under root. The
// index has one record per entry and node, so this reads what the
// entries and nodes do, not every SVID ever issued.
func (m *Manager) currentSVIDsUnder(ctx context.Context, auths []*store.Authority, rootID string, now time.Time) (out []*store.SVIDRecord, err error) {
	err = m.cfg.Store.View(ctx, func(tx store.Tx) error {
		out, err = currentSVIDsUnderTx(tx, auths, rootID, now)
		return err
	})
	return out, err
}

func currentSVIDsUnderTx(tx store.Tx, auths []*store.Authority, rootID string, now time.Time) ([]*store.SVIDRecord, error) {
	entries, err := tx.ListEntries(store.EntryFilter{})
	if err != nil {
		return nil, err
	}
	entryParent := make(map[string]string, len(entries))
	for _, e := range entries {
		entryParent[e.ID] = e.ParentID
	}
	nodes, err := tx.ListNodes()
	if err != nil {
		return nil, err
	}
	nodeExists := make(map[string]bool, len(nodes))
	for _, n := range nodes {
		nodeExists[n.SPIFFEID] = true
	}
	parent := parents(auths)
	var out []*store.SVIDRecord
	err = tx.ForEachCurrentSVID(func(r *store.SVIDRecord) error {
		switch {
		case now.After(r.NotAfter):
		case r.EntryID == "" && !nodeExists[r.NodeID], r.EntryID != "" && entryParent[r.EntryID] != r.NodeID:
			// Evicted node, deleted entry: nobody is served it.
		case r.AuthorityID == rootID || parent[r.AuthorityID] == rootID:
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b *store.SVIDRecord) int {
		return cmp.Or(cmp.Compare(a.SPIFFEID, b.SPIFFEID), cmp.Compare(a.NodeID, b.NodeID))
	})
	return out, nil
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func describeSVID(r *store.SVIDRecord) string {
	if r.EntryID == "" {
		return "node SVID of " + r.NodeID
	}
	return r.SPIFFEID + " on " + r.NodeID
}

// sample names up to n items, and how many more there are.
func sample(items []string, n int) string {
	if len(items) <= n {
		return strings.Join(items, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(items[:n], ", "), len(items)-n)
}

// StaleAgents returns, sorted, the agents of agents (SPIFFE ID -> applied
// bundle revision) that have not applied bundle revision rev.
func StaleAgents(rev int64, agents map[string]int64) []string {
	var out []string
	for id, applied := range agents {
		if applied < rev {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// Details of the root rotation steps' audit records.
const (
	detailRotateNow    = "rotate_now"
	detailForced       = "forced"
	detailStaleAgents  = "stale_agents"
	detailCurrentSVIDs = "current_svids"
)

// authorityRecord is the audit record of one root rotation step.
func authorityRecord(typ, actor string, a *store.Authority, details map[string]string) audit.Record {
	details[audit.DetailAuthorityID] = a.ID
	details[audit.DetailKind] = string(a.Kind)
	details[audit.DetailNotAfter] = audit.FormatTime(a.NotAfter)
	return audit.Record{Type: typ, Outcome: audit.OutcomeSuccess, Actor: actor, Details: details}
}
