package rotation

import (
	"cmp"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.step.sm/crypto/pemutil"

	"github.com/signet-mesh/signet/ca/audit"
	"github.com/signet-mesh/signet/ca/bundle"
	"github.com/signet-mesh/signet/ca/store"
)

// pendingCSRsKey is the store meta key holding the keys of CSRs made by
// PrepareRoot with CSROnly that await their signed certificate: a JSON
// object from key ID to pendingCSR.
const pendingCSRsKey = "pending_root_csrs"

// Crash points of the root rotation steps, passed to Config.CrashPoint:
// "<step>.commit" inside the step's transaction just before it commits,
// "<step>.committed" right after it committed, before the running CA
// uses the result.
var CrashPoints = []string{
	"prepare.commit", "prepare.committed",
	"activate.commit", "activate.committed",
	"retire.commit", "retire.committed",
}

// Expiry warnings (DESIGN.md, "Root rotation").
const (
	// expiryWindow: an authority is expiring soon when it has less than
	// this left, if it lives longer than this: a 7-day intermediate is
	// always within 30 days of its end, so for such short lives only the
	// third-of-life rule speaks. (For lives over 90 days the third of
	// life comes first.)
	expiryWindow = 30 * 24 * time.Hour
	// expiryCheckEvery is how often Run logs the authorities that are
	// expiring soon: often enough to be seen, rarely enough not to drown
	// the log.
	expiryCheckEvery = time.Hour
)

// ExpiringSoon reports whether an authority valid from notBefore to
// notAfter is close to its end at now: less than a third of its life is
// left, or (for lives over 30 days) less than 30 days.
func ExpiringSoon(now, notBefore, notAfter time.Time) bool {
	left, life := notAfter.Sub(now), notAfter.Sub(notBefore)
	return left*3 < life || (life > expiryWindow && left < expiryWindow)
}

// AuthorityStatus is an authority with what `signet root status` shows.
type AuthorityStatus struct {
	store.Authority
	// UnexpiredSVIDs counts the unexpired SVIDs that chain to the
	// authority: signed by it (intermediates) or by an intermediate it
	// signed (roots). Node SVIDs count too.
	UnexpiredSVIDs int64
	// ExpiringSoon is ExpiringSoon for roots and intermediates in use
	// (not retired).
	ExpiringSoon bool
}

// Authorities returns every authority, oldest first, with its SVID count,
// and the current bundle revision. It walks the SVID index once.
func (m *Manager) Authorities(ctx context.Context) ([]AuthorityStatus, int64, error) {
	var (
		out []AuthorityStatus
		rev int64
	)
	err := m.cfg.Store.View(ctx, func(tx store.Tx) error {
		now := m.clock.Now()
		auths, err := tx.ListAuthorities()
		if err != nil {
			return err
		}
		parent := parents(auths)
		counts := map[string]int64{}
		err = tx.ForEachSVID(func(r *store.SVIDRecord) error {
			if now.After(r.NotAfter) {
				return nil
			}
			counts[r.AuthorityID]++
			if p := parent[r.AuthorityID]; p != "" {
				counts[p]++
			}
			return nil
		})
		if err != nil {
			return err
		}
		out = make([]AuthorityStatus, 0, len(auths))
		for _, a := range auths {
			out = append(out, AuthorityStatus{
				Authority:      *a,
				UnexpiredSVIDs: counts[a.ID],
				ExpiringSoon:   inUse(a) && a.Kind != store.KindJWT && ExpiringSoon(now, a.NotBefore, a.NotAfter),
			})
		}
		rev, err = bundle.Revision(tx)
		return err
	})
	if err != nil {
		return nil, 0, wrapErr("listing authorities: %w", err)
	}
	return out, rev, nil
}

// AuthorityExpiry is how long an authority in use has left.
type AuthorityExpiry struct {
	ID       string
	Kind     store.AuthorityKind
	State    store.AuthorityState
	NotAfter time.Time
	// Seconds to NotAfter from now; negative once it has passed.
	Seconds float64
	// ExpiringSoon: see ExpiringSoon (always false for JWT keys, which
	// rotate by themselves).
	ExpiringSoon bool
}

// SecondsToExpiry returns, for every authority in use (roots that are not
// retired, the active intermediate, JWT keys that are not retired), its
// seconds to expiry: what a metrics gauge exports per authority.
func (m *Manager) SecondsToExpiry(ctx context.Context) ([]AuthorityExpiry, error) {
	var auths []*store.Authority
	err := m.cfg.Store.View(ctx, func(tx store.Tx) error {
		var err error
		auths, err = tx.ListAuthorities()
		return err
	})
	if err != nil {
		return nil, wrapErr("listing authorities: %w", err)
	}
	now := m.clock.Now()
	var out []AuthorityExpiry
	for _, a := range auths {
		if !inUse(a) {
			continue
		}
		out = append(out, AuthorityExpiry{
			ID:           a.ID,
			Kind:         a.Kind,
			State:        a.State,
			NotAfter:     a.NotAfter,
			Seconds:      a.NotAfter.Sub(now).Seconds(),
			ExpiringSoon: a.Kind != store.KindJWT && ExpiringSoon(now, a.NotBefore, a.NotAfter),
		})
	}
	return out, nil
}

// inUse reports whether a still matters: a root or JWT key that is not
// retired, or the active intermediate.
func inUse(a *store.Authority) bool {
	if a.Kind == store.KindIntermediate {
		return a.State == store.StateActive
	}
	return a.State != store.StateRetired
}

// warnExpiring logs, at most every expiryCheckEvery, each root and
// intermediate that is expiring soon.
func (m *Manager) warnExpiring(ctx context.Context) {
	now := m.clock.Now()
	m.mu.Lock()
	if !m.expiryCheckedAt.IsZero() && now.Sub(m.expiryCheckedAt) < expiryCheckEvery {
		m.mu.Unlock()
		return
	}
	m.expiryCheckedAt = now
	m.mu.Unlock()
	exps, err := m.SecondsToExpiry(ctx)
	if err != nil {
		if ctx.Err() == nil {
			m.log.Error("checking authority expiry", logError, err)
		}
		return
	}
	for _, e := range exps {
		if !e.ExpiringSoon {
			continue
		}
		msg := "authority is close to expiry"
		if e.Kind == store.KindRoot {
			msg = "root is close to expiry; prepare, activate and retire a new root"
		}
		m.log.Warn(msg, logAuthorityID, e.ID, logKind, e.Kind, logState, e.State, logNotAfter, e.NotAfter,
			logExpiresIn, time.Duration(e.Seconds*float64(time.Second)).Round(time.Second).String())
	}
}

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

// pendingCSR is a key made for a CSR, awaiting its certificate.
type pendingCSR struct {
	KeyRef    string    `json:"key_ref"`
	KeyType   string    `json:"key_type"`
	CreatedAt time.Time `json:"created_at"`
}

// PrepareRoot creates (or imports) a new root in state prepared, in one
// transaction: it enters the trust bundle at once, under a new bundle
// revision recorded on it (Authority.BundleRevision), but signs nothing
// until ActivateRoot. It refuses (ErrRefused) while another root is
// prepared, and fails with ErrInvalidImport for an unusable import.
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
	err := m.reconcileWith(ctx, "prepare", func(tx store.Tx, now time.Time) error {
		auths, err := tx.ListAuthorities()
		if err != nil {
			return err
		}
		if prep := rootsIn(auths, store.StatePrepared); len(prep) > 0 {
			return refuse(ErrRefused, "root %s is already prepared: activate it (signet root activate %[1]s), or retire it to abandon it (signet root retire %[1]s)", prep[0].ID)
		}
		if imp == nil {
			root, err = m.createRoot(ctx, tx, store.StatePrepared, now)
		} else {
			root, err = m.importPrepared(ctx, tx, imp, auths, now)
		}
		if err != nil {
			return err
		}
		if root.BundleRevision, err = bundle.BumpRevision(tx); err != nil {
			return err
		}
		if err := tx.PutAuthority(root); err != nil {
			return err
		}
		how := "created"
		if imp != nil {
			how = "imported"
		}
		if err := auditAuthority(tx, audit.TypeAuthorityPrepared, p.Actor, root, now, map[string]string{audit.DetailMethod: "PrepareRoot (" + how + ")"}); err != nil {
			return err
		}
		m.log.Info("root prepared", logAuthorityID, root.ID, logNotAfter, root.NotAfter, logRevision, root.BundleRevision, logActor, p.Actor)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &PrepareResult{Authority: root}, nil
}

// parsedImport is a certificate to import with its chain and, when given,
// its key.
type parsedImport struct {
	cert  *x509.Certificate
	chain []*x509.Certificate
	key   crypto.Signer // nil: the key of a CSR
	csrID string
}

func parseImportPEM(p PrepareParams) (*parsedImport, error) {
	certs, err := pemutil.ParseCertificateBundle(p.CertPEM)
	if err != nil {
		return nil, wrapErr("%w: certificate: %v", ErrInvalidImport, err)
	}
	imp := &parsedImport{cert: certs[0], chain: certs[1:], csrID: p.CSRKeyID}
	if len(p.ChainPEM) > 0 {
		more, err := pemutil.ParseCertificateBundle(p.ChainPEM)
		if err != nil {
			return nil, wrapErr("%w: chain: %v", ErrInvalidImport, err)
		}
		imp.chain = append(imp.chain, more...)
	}
	if len(p.KeyPEM) > 0 {
		if p.CSRKeyID != "" {
			return nil, refuse(ErrRefused, "give either the key or the CSR key ID, not both")
		}
		// Never prompt: the CA runs unattended.
		k, err := pemutil.ParseKey(p.KeyPEM, pemutil.WithPasswordPrompt("", func(string) ([]byte, error) {
			return nil, errors.New("the key is encrypted: decrypt it for the import (it is re-encrypted in signet's key store)")
		}))
		if err != nil {
			return nil, wrapErr("%w: key: %v", ErrInvalidImport, err)
		}
		signer, ok := k.(crypto.Signer)
		if !ok {
			return nil, wrapErr("%w: key is a %T, not a private key", ErrInvalidImport, k)
		}
		imp.key = signer
	}
	return imp, nil
}

// importPrepared checks imp and stores it as a prepared root, taking its
// key from the import or from a pending CSR.
func (m *Manager) importPrepared(ctx context.Context, tx store.Tx, imp *parsedImport, auths []*store.Authority, now time.Time) (*store.Authority, error) {
	for _, a := range auths {
		if a.Kind == store.KindRoot && a.State != store.StateRetired && string(a.CertDER) == string(imp.cert.Raw) {
			return nil, refuse(ErrRefused, "this certificate is already root %s (%s)", a.ID, a.State)
		}
	}
	selfSigned := bundle.IsSelfSigned(imp.cert)
	id := newID()
	var (
		key     = imp.key
		ref     string
		pending map[string]pendingCSR
		csrID   string
	)
	if key == nil {
		if selfSigned {
			return nil, refuse(ErrRefused, "a self-signed root is imported with its key (--key)")
		}
		var err error
		if pending, err = readPendingCSRs(tx); err != nil {
			return nil, err
		}
		if csrID, key, err = m.findCSRKey(ctx, pending, imp); err != nil {
			return nil, err
		}
		ref, id = pending[csrID].KeyRef, csrID
	}
	if err := checkImport(imp.cert, imp.chain, key, selfSigned, now); err != nil {
		return nil, wrapErr("%w: %v", ErrInvalidImport, err)
	}
	if ref == "" {
		var err error
		if ref, err = m.cfg.Keys.Import(ctx, "root-"+id, key); err != nil {
			return nil, err
		}
	} else {
		delete(pending, csrID)
		if err := writePendingCSRs(tx, pending); err != nil {
			return nil, err
		}
	}
	a := newAuthority(id, store.KindRoot, store.StatePrepared, imp.cert.Raw, ref, describeKey(key.Public()), "", imp.cert.NotBefore, imp.cert.NotAfter, now)
	a.Imported = true
	for _, c := range imp.chain {
		a.UpstreamChainDER = append(a.UpstreamChainDER, c.Raw)
	}
	if err := m.put(tx, a, key); err != nil {
		return nil, err
	}
	m.log.Info("root imported", logAuthorityID, id, logSerial, imp.cert.SerialNumber.Text(16), "subject", imp.cert.Subject.String())
	return a, nil
}

// findCSRKey returns the pending CSR key that imp was issued for: the one
// imp names, or the one whose public key is the certificate's.
func (m *Manager) findCSRKey(ctx context.Context, pending map[string]pendingCSR, imp *parsedImport) (string, crypto.Signer, error) {
	ids := make([]string, 0, len(pending))
	for id := range pending {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	if imp.csrID != "" {
		if _, ok := pending[imp.csrID]; !ok {
			return "", nil, refuse(ErrRefused, "no CSR is waiting under key ID %q (waiting: %s)", imp.csrID, listOrNone(ids))
		}
		ids = []string{imp.csrID}
	}
	for _, id := range ids {
		s, err := m.cfg.Keys.Load(ctx, pending[id].KeyRef)
		if err != nil {
			return "", nil, wrapErr("loading key of CSR %s: %w", id, err)
		}
		if publicKeysEqual(s.Public(), imp.cert.PublicKey) {
			return id, s, nil
		}
	}
	if imp.csrID != "" {
		return "", nil, wrapErr("%w: the certificate is not for the key of CSR %s", ErrInvalidImport, imp.csrID)
	}
	return "", nil, refuse(ErrRefused, "no key was given (--key) and the certificate matches no waiting CSR (waiting: %s)", listOrNone(ids))
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ae, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ae.Equal(b)
}

func listOrNone(ids []string) string {
	if len(ids) == 0 {
		return "none"
	}
	return strings.Join(ids, ", ")
}

// prepareCSR creates a key and a CSR for a CA certificate under the
// organisation's PKI, and remembers the key until the certificate is
// imported.
func (m *Manager) prepareCSR(ctx context.Context, p PrepareParams) (*PrepareResult, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id := newID()
	var csrPEM []byte
	err := m.cfg.Store.Update(ctx, func(tx store.Tx) error {
		pending, err := readPendingCSRs(tx)
		if err != nil {
			return err
		}
		signer, ref, err := m.cfg.Keys.Create(ctx, "root-"+id, m.cfg.KeyType)
		if err != nil {
			return err
		}
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
			Subject: pkix.Name{Organization: []string{"SPIFFE"}, CommonName: "signet CA " + m.cfg.TrustDomain.Name()},
			URIs:    []*url.URL{m.cfg.TrustDomain.ID().URL()},
		}, signer)
		if err != nil {
			return wrapErr("creating CSR: %w", err)
		}
		csrPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
		pending[id] = pendingCSR{KeyRef: ref, KeyType: string(m.cfg.KeyType), CreatedAt: m.clock.Now()}
		if _, err := audit.Append(tx, audit.Record{Type: audit.TypeAuthorityPrepared, Outcome: audit.OutcomeSuccess, Actor: p.Actor,
			Details: map[string]string{audit.DetailKeyID: id, audit.DetailMethod: "PrepareRoot (CSR for an upstream CA)"}}, m.clock.Now()); err != nil {
			return err
		}
		return writePendingCSRs(tx, pending)
	})
	if err != nil {
		return nil, wrapErr("making CSR: %w", err)
	}
	m.log.Info("root CSR created", logCSRKeyID, id, logActor, p.Actor)
	return &PrepareResult{CSRPEM: csrPEM, CSRKeyID: id}, nil
}

func readPendingCSRs(tx store.Tx) (map[string]pendingCSR, error) {
	out := map[string]pendingCSR{}
	v, err := tx.GetMeta(pendingCSRsKey)
	switch {
	case errors.Is(err, store.ErrNotFound) || (err == nil && len(v) == 0):
		return out, nil
	case err != nil:
		return nil, err
	}
	if err := json.Unmarshal(v, &out); err != nil {
		return nil, wrapErr("%s: %w", pendingCSRsKey, err)
	}
	return out, nil
}

func writePendingCSRs(tx store.Tx, pending map[string]pendingCSR) error {
	v, err := json.Marshal(pending)
	if err != nil {
		return err
	}
	return tx.PutMeta(pendingCSRsKey, v)
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
// new intermediate is signed by the new root and signs every SVID from
// then on, and with RotateNow the rotate generation grows. It refuses with
// ErrUnsafe while some connected agent has not applied the bundle that
// holds the root (unless Force), and with ErrRefused when there is no
// single prepared root, or another root is still retiring.
func (m *Manager) ActivateRoot(ctx context.Context, p ActivateParams) (*store.Authority, error) {
	var root *store.Authority
	err := m.reconcileWith(ctx, "activate", func(tx store.Tx, now time.Time) error {
		auths, err := tx.ListAuthorities()
		if err != nil {
			return err
		}
		if root, err = candidate(auths, p.ID, "activate", store.StatePrepared); err != nil {
			return err
		}
		if old := rootsIn(auths, store.StateRetiring); len(old) > 0 {
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
		for _, a := range rootsIn(auths, store.StateActive) {
			if err := m.transition(tx, a, store.StateRetiring, now); err != nil {
				return err
			}
		}
		if err := m.transition(tx, root, store.StateActive, now); err != nil {
			return err
		}
		if p.RotateNow {
			if _, err := bundle.BumpRotateGeneration(tx); err != nil {
				return err
			}
		}
		// Wake the sync streams (rotate generation) and the server's
		// client-certificate pool.
		if _, err := tx.NextRevision(); err != nil {
			return err
		}
		details := map[string]string{audit.DetailMethod: "ActivateRoot", "rotate_now": strconv.FormatBool(p.RotateNow)}
		if len(stale) > 0 {
			details["forced"] = "true"
			details["stale_agents"] = strings.Join(stale, ",")
		}
		if err := auditAuthority(tx, audit.TypeAuthorityActivated, p.Actor, root, now, details); err != nil {
			return err
		}
		if len(stale) > 0 {
			m.log.Warn("root activated with --force before every agent applied its bundle", logAuthorityID, root.ID, logStaleAgents, strings.Join(stale, ","), logActor, p.Actor)
		}
		m.log.Info("root activated", logAuthorityID, root.ID, logRotateNow, p.RotateNow, logActor, p.Actor)
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
// workload's or node's current SVID (the newest unexpired one per entry
// and node) still chains to the root, unless Force, and with ErrRefused
// when there is no single retiring root.
func (m *Manager) RetireRoot(ctx context.Context, p RetireParams) (*store.Authority, error) {
	var root *store.Authority
	err := m.reconcileWith(ctx, "retire", func(tx store.Tx, now time.Time) error {
		auths, err := tx.ListAuthorities()
		if err != nil {
			return err
		}
		states := []store.AuthorityState{store.StateRetiring}
		if p.ID != "" {
			states = append(states, store.StatePrepared)
		}
		if root, err = candidate(auths, p.ID, "retire", states...); err != nil {
			return err
		}
		var blockers []*store.SVIDRecord
		if root.State == store.StateRetiring {
			if blockers, err = currentSVIDsUnder(tx, auths, root.ID, now); err != nil {
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
		if err := m.transition(tx, root, store.StateRetired, now); err != nil {
			return err
		}
		rev, err := bundle.BumpRevision(tx)
		if err != nil {
			return err
		}
		details := map[string]string{audit.DetailMethod: "RetireRoot"}
		if len(blockers) > 0 {
			details["forced"] = "true"
			details["current_svids"] = strconv.Itoa(len(blockers))
		}
		if err := auditAuthority(tx, audit.TypeAuthorityRetired, p.Actor, root, now, details); err != nil {
			return err
		}
		if len(blockers) > 0 {
			m.log.Warn("root retired with --force while current SVIDs chain to it", logAuthorityID, root.ID, logSVIDs, len(blockers), logActor, p.Actor)
		}
		m.log.Info("root retired", logAuthorityID, root.ID, logRevision, rev, logActor, p.Actor)
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

// rootsIn returns the roots in state, oldest first.
func rootsIn(auths []*store.Authority, state store.AuthorityState) []*store.Authority {
	var out []*store.Authority
	for _, a := range auths {
		if a.Kind == store.KindRoot && a.State == state {
			out = append(out, a)
		}
	}
	return out
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
// SVID of a node that still exists, the newest unexpired SVID, if it was
// signed under root.
func currentSVIDsUnder(tx store.Tx, auths []*store.Authority, rootID string, now time.Time) ([]*store.SVIDRecord, error) {
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
	// Authorities only move forward: among SVIDs issued in the same
	// second (certificate times have no finer grain), the one signed by
	// the younger intermediate is the newer.
	rank := make(map[string]int, len(auths))
	for i, a := range auths {
		rank[a.ID] = i
	}
	type key struct{ entry, node string }
	current := map[key]*store.SVIDRecord{}
	err = tx.ForEachSVID(func(r *store.SVIDRecord) error {
		if now.After(r.NotAfter) {
			return nil
		}
		if r.EntryID == "" && !nodeExists[r.NodeID] || r.EntryID != "" && entryParent[r.EntryID] != r.NodeID {
			return nil // evicted node, deleted entry: nobody is served it
		}
		k := key{r.EntryID, r.NodeID}
		if cur, ok := current[k]; !ok || newer(r, cur, rank) {
			current[k] = r
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	parent := parents(auths)
	var out []*store.SVIDRecord
	for _, r := range current {
		if r.AuthorityID == rootID || parent[r.AuthorityID] == rootID {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b *store.SVIDRecord) int {
		return cmp.Or(cmp.Compare(a.SPIFFEID, b.SPIFFEID), cmp.Compare(a.NodeID, b.NodeID))
	})
	return out, nil
}

// newer reports whether a was issued after b; rank orders authorities
// oldest first.
func newer(a, b *store.SVIDRecord, rank map[string]int) bool {
	return cmp.Or(
		a.NotBefore.Compare(b.NotBefore),
		cmp.Compare(rank[a.AuthorityID], rank[b.AuthorityID]),
		a.NotAfter.Compare(b.NotAfter),
		cmp.Compare(a.Serial, b.Serial),
	) > 0
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

// crashPoint calls Config.CrashPoint, if set.
func (m *Manager) crashPoint(point string) {
	if f := m.cfg.CrashPoint; f != nil {
		f(point)
	}
}

// auditAuthority records one root rotation step in tx, the step's own
// transaction.
func auditAuthority(tx store.Tx, typ, actor string, a *store.Authority, now time.Time, details map[string]string) error {
	details[audit.DetailAuthorityID] = a.ID
	details[audit.DetailKind] = string(a.Kind)
	details[audit.DetailNotAfter] = audit.FormatTime(a.NotAfter)
	_, err := audit.Append(tx, audit.Record{Type: typ, Outcome: audit.OutcomeSuccess, Actor: actor, Details: details}, now)
	return err
}
