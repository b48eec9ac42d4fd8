package rotation

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/signet-mesh/signet/ca"
	"github.com/signet-mesh/signet/ca/bundle"
	"github.com/signet-mesh/signet/ca/store"
)

// reconcile brings the stored authorities to what the config and the clock
// require, in one transaction, and hands the signing ones to the CA:
//
//   - no active root: create one (or import the configured one);
//   - no active intermediate under the active root, or one at half its
//     life: sign a new one with the active root, retire the old;
//   - JWT keys: see ensureJWTKeys;
//   - when the bundle's roots or JWT keys changed, take a new bundle
//     revision.
//
// Root prepare/activate/retire (roots.go) change authority states through
// reconcileWith, so the intermediate is re-issued under whichever root is
// active, in the same transaction.
func (m *Manager) reconcile(ctx context.Context) error {
	return m.reconcileWith(ctx, "", nil)
}

// reconcileWith is reconcile with change applied first, in the same
// transaction. step names the change for the crash points (see
// Config.CrashPoint): step+".commit" just before the transaction commits,
// step+".committed" after it committed and before the CA is handed the
// result.
func (m *Manager) reconcileWith(ctx context.Context, step string, change func(tx store.Tx, now time.Time) error) error {
	m.mu.Lock()
	defer m.mu.Unlock()

	var (
		xa        *ca.X509Authority
		jk        *ca.JWTKey
		next      time.Time
		changeErr error
	)
	err := m.cfg.Store.Update(ctx, func(tx store.Tx) error {
		now := m.clock.Now()
		if change != nil {
			if changeErr = change(tx, now); changeErr != nil {
				return changeErr
			}
		}
		root, rootCreated, err := m.ensureRoot(ctx, tx, now)
		if err != nil {
			return err
		}
		inter, interSigner, err := m.ensureIntermediate(ctx, tx, root, now)
		if err != nil {
			return err
		}
		cross, err := m.ensureCrossSigned(ctx, tx, inter, now)
		if err != nil {
			return err
		}
		jwt, jwtSigner, jwtChanged, err := m.ensureJWTKeys(ctx, tx, now)
		if err != nil {
			return err
		}
		if rootCreated || jwtChanged {
			rev, err := bundle.BumpRevision(tx)
			if err != nil {
				return err
			}
			m.log.Info("bundle changed", logRevision, rev)
		}

		b, err := bundle.FromTx(tx, m.cfg.TrustDomain)
		if err != nil {
			return err
		}
		if xa, err = x509Authority(inter, interSigner, root, cross, b.X509Authorities); err != nil {
			return err
		}
		jk = &ca.JWTKey{ID: jwt.ID, Signer: jwtSigner, NotAfter: jwt.NotAfter}
		auths, err := tx.ListAuthorities()
		if err != nil {
			return err
		}
		next = nextEvent(auths, root.ID)
		if shouldRotate(now, root.NotBefore, root.NotAfter) {
			m.log.Warn("root is past half of its life; prepare and activate a new root", logAuthorityID, root.ID, logNotAfter, root.NotAfter)
		}
		if step != "" {
			m.crashPoint(step + ".commit")
		}
		return nil
	})
	if changeErr != nil {
		// The change's own error (a refusal) reaches the caller as is.
		return changeErr
	}
	if err != nil {
		return wrapErr("updating authorities: %w", err)
	}
	if step != "" {
		m.crashPoint(step + ".committed")
	}
	m.cfg.CA.SetX509Authority(xa)
	m.cfg.CA.SetJWTKey(jk)
	m.next = next
	return nil
}

// ensureRoot returns the active root, creating or importing one if there
// is none.
func (m *Manager) ensureRoot(ctx context.Context, tx store.Tx, now time.Time) (*store.Authority, bool, error) {
	root, err := newest(tx, store.KindRoot, store.StateActive, "")
	if err != nil || root != nil {
		return root, false, err
	}
	switch {
	case m.cfg.ImportRoot != nil:
		root, err = m.importRoot(ctx, tx, m.cfg.ImportRoot, true, store.StateActive, now)
	case m.cfg.ImportIntermediate != nil:
		root, err = m.importRoot(ctx, tx, m.cfg.ImportIntermediate, false, store.StateActive, now)
	default:
		root, err = m.createRoot(ctx, tx, store.StateActive, now)
	}
	if err != nil {
		return nil, false, err
	}
	return root, true, nil
}

// createRoot makes a new self-signed root in the given state (active on
// first start; prepared for a root rotation).
func (m *Manager) createRoot(ctx context.Context, tx store.Tx, state store.AuthorityState, now time.Time) (*store.Authority, error) {
	id := newID()
	signer, ref, err := m.cfg.Keys.Create(ctx, "root-"+id, m.cfg.KeyType)
	if err != nil {
		return nil, err
	}
	tmpl, err := ca.NewRootTemplate(m.cfg.TrustDomain, signer.Public(), now, m.cfg.RootTTL)
	if err != nil {
		return nil, err
	}
	cert, err := ca.CreateCertificate(tmpl, tmpl, signer.Public(), signer)
	if err != nil {
		return nil, err
	}
	a := newAuthority(id, store.KindRoot, state, cert.Raw, ref, string(m.cfg.KeyType), "", cert.NotBefore, cert.NotAfter, now)
	return a, m.put(tx, a, signer)
}

// ensureIntermediate returns the active intermediate under root and its
// signer, first replacing it with a new one if there is none, it belongs
// to another root, or it is at half its life.
func (m *Manager) ensureIntermediate(ctx context.Context, tx store.Tx, root *store.Authority, now time.Time) (*store.Authority, crypto.Signer, error) {
	cur, err := newest(tx, store.KindIntermediate, store.StateActive, root.ID)
	if err != nil {
		return nil, nil, err
	}
	if cur != nil && !shouldRotate(now, cur.NotBefore, cur.NotAfter) {
		signer, err := m.signer(ctx, cur)
		return cur, signer, err
	}
	inter, signer, err := m.createIntermediate(ctx, tx, root, now)
	if err != nil {
		return nil, nil, err
	}
	// Whatever else was active (the one replaced, or one under an older
	// root) stops signing. SVIDs it signed stay valid: they carry it in
	// their chain and chain to a root still in the bundle.
	auths, err := tx.ListAuthorities()
	if err != nil {
		return nil, nil, err
	}
	for _, a := range auths {
		if a.Kind == store.KindIntermediate && a.State == store.StateActive && a.ID != inter.ID {
			if err := m.transition(tx, a, store.StateRetired, now); err != nil {
				return nil, nil, err
			}
		}
	}
	return inter, signer, nil
}

// createIntermediate signs a new active intermediate with root's key.
func (m *Manager) createIntermediate(ctx context.Context, tx store.Tx, root *store.Authority, now time.Time) (*store.Authority, crypto.Signer, error) {
	rootCert, err := x509.ParseCertificate(root.CertDER)
	if err != nil {
		return nil, nil, wrapErr("root %s: %w", root.ID, err)
	}
	rootSigner, err := m.signer(ctx, root)
	if err != nil {
		return nil, nil, err
	}
	id := newID()
	signer, ref, err := m.cfg.Keys.Create(ctx, "intermediate-"+id, m.cfg.KeyType)
	if err != nil {
		return nil, nil, err
	}
	tmpl, err := ca.NewIntermediateTemplate(m.cfg.TrustDomain, signer.Public(), now, m.cfg.IntermediateTTL, rootCert)
	if err != nil {
		return nil, nil, err
	}
	cert, err := ca.CreateCertificate(tmpl, rootCert, signer.Public(), rootSigner)
	if err != nil {
		return nil, nil, err
	}
	a := newAuthority(id, store.KindIntermediate, store.StateActive, cert.Raw, ref, string(m.cfg.KeyType), root.ID, cert.NotBefore, cert.NotAfter, now)
	if err := m.put(tx, a, signer); err != nil {
		return nil, nil, err
	}
	return a, signer, nil
}

// ensureJWTKeys keeps the JWT keys moving through their states and returns
// the active one. A new key must reach every verifier before it signs, so
// rotation has two steps:
//
//   - at half of the active key's life, a new key is prepared: it enters
//     the bundle but does not sign yet;
//   - at three quarters, the prepared key becomes active and the old one
//     retiring: still in the bundle, so its tokens keep verifying, until
//     its NotAfter (which capped their expiry), when it is retired.
//
// changed reports whether the bundle's JWT keys changed.
func (m *Manager) ensureJWTKeys(ctx context.Context, tx store.Tx, now time.Time) (active *store.Authority, signer crypto.Signer, changed bool, err error) {
	if active, err = newest(tx, store.KindJWT, store.StateActive, ""); err != nil {
		return nil, nil, false, err
	}
	prepared, err := newest(tx, store.KindJWT, store.StatePrepared, "")
	if err != nil {
		return nil, nil, false, err
	}
	usable := func(a *store.Authority) bool { return a != nil && now.Before(a.NotAfter) }
	switch {
	case !usable(active) && usable(prepared):
		// The CA was down through the activation point.
		active, prepared = prepared, nil
	case !usable(active):
		// First start, or the CA was down past the key's whole life.
		if active, signer, err = m.createJWTKey(ctx, tx, store.StateActive, now); err != nil {
			return nil, nil, false, err
		}
		prepared = nil
		changed = true
	case prepared == nil && shouldRotate(now, active.NotBefore, active.NotAfter):
		if _, _, err = m.createJWTKey(ctx, tx, store.StatePrepared, now); err != nil {
			return nil, nil, false, err
		}
		changed = true
	case prepared != nil && !now.Before(lifePoint(active.NotBefore, active.NotAfter, 3, 4)):
		active = prepared
	}
	if active.State != store.StateActive {
		if err := m.transition(tx, active, store.StateActive, now); err != nil {
			return nil, nil, false, err
		}
	}

	auths, err := tx.ListAuthorities()
	if err != nil {
		return nil, nil, false, err
	}
	for _, a := range auths {
		if a.Kind != store.KindJWT || a.ID == active.ID {
			continue
		}
		if a.State == store.StateActive {
			if err := m.transition(tx, a, store.StateRetiring, now); err != nil {
				return nil, nil, false, err
			}
		}
		if (a.State == store.StateRetiring || a.State == store.StatePrepared) && !now.Before(a.NotAfter) {
			if err := m.transition(tx, a, store.StateRetired, now); err != nil {
				return nil, nil, false, err
			}
			changed = true
		}
	}
	if signer == nil {
		if signer, err = m.signer(ctx, active); err != nil {
			return nil, nil, false, err
		}
	}
	return active, signer, changed, nil
}

// createJWTKey makes a new JWT key in state. Its "certificate" is the PKIX
// public key, which is what the bundle needs.
func (m *Manager) createJWTKey(ctx context.Context, tx store.Tx, state store.AuthorityState, now time.Time) (*store.Authority, crypto.Signer, error) {
	id := newID()
	signer, ref, err := m.cfg.Keys.Create(ctx, "jwt-"+id, m.cfg.KeyType)
	if err != nil {
		return nil, nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(signer.Public())
	if err != nil {
		return nil, nil, wrapErr("jwt key %s: %w", id, err)
	}
	a := newAuthority(id, store.KindJWT, state, pub, ref, string(m.cfg.KeyType), "", now, now.Add(m.cfg.JWTKeyTTL), now)
	if err := m.put(tx, a, signer); err != nil {
		return nil, nil, err
	}
	return a, signer, nil
}

func newAuthority(id string, kind store.AuthorityKind, state store.AuthorityState, der []byte, ref, keyType, parentID string, notBefore, notAfter, now time.Time) *store.Authority {
	return &store.Authority{
		ID:             id,
		Kind:           kind,
		State:          state,
		CertDER:        der,
		KeyRef:         ref,
		KeyType:        keyType,
		ParentID:       parentID,
		NotBefore:      notBefore,
		NotAfter:       notAfter,
		CreatedAt:      now,
		StateChangedAt: now,
	}
}

// put stores a new authority and caches its signer.
func (m *Manager) put(tx store.Tx, a *store.Authority, signer crypto.Signer) error {
	if err := tx.PutAuthority(a); err != nil {
		return err
	}
	m.signers[a.KeyRef] = signer
	m.log.Info("authority created", logAuthorityID, a.ID, logKind, a.Kind, logState, a.State, logParentID, a.ParentID, logNotAfter, a.NotAfter)
	return nil
}

// transition moves one authority to state.
func (m *Manager) transition(tx store.Tx, a *store.Authority, state store.AuthorityState, now time.Time) error {
	from := a.State
	a.State, a.StateChangedAt = state, now
	if err := tx.PutAuthority(a); err != nil {
		return err
	}
	m.log.Info("authority state changed", logAuthorityID, a.ID, logKind, a.Kind, "from", from, logState, state)
	return nil
}

// newest returns the most recently created authority of kind in state
// (and, if parentID is set, with that parent), or nil.
func newest(tx store.Tx, kind store.AuthorityKind, state store.AuthorityState, parentID string) (*store.Authority, error) {
	auths, err := tx.ListAuthorities()
	if err != nil {
		return nil, err
	}
	// ListAuthorities is oldest first.
	for _, a := range slices.Backward(auths) {
		if a.Kind == kind && a.State == state && (parentID == "" || a.ParentID == parentID) {
			return a, nil
		}
	}
	return nil, nil
}

// signer returns a's private key, loading it once.
func (m *Manager) signer(ctx context.Context, a *store.Authority) (crypto.Signer, error) {
	if s, ok := m.signers[a.KeyRef]; ok {
		return s, nil
	}
	s, err := m.cfg.Keys.Load(ctx, a.KeyRef)
	if err != nil {
		return nil, wrapErr("loading key of %s %s: %w", a.Kind, a.ID, err)
	}
	m.signers[a.KeyRef] = s
	return s, nil
}

// x509Authority builds what the CA signs with: the intermediate, the
// chain above it up to (not including) the trust anchor, its cross-signed
// twin if any (cross), and the bundle's anchors to check against.
func x509Authority(inter *store.Authority, signer crypto.Signer, root *store.Authority, cross *x509.Certificate, anchors []*x509.Certificate) (*ca.X509Authority, error) {
	cert, err := x509.ParseCertificate(inter.CertDER)
	if err != nil {
		return nil, wrapErr("intermediate %s: %w", inter.ID, err)
	}
	rc, err := bundle.ParseRoot(root)
	if err != nil {
		return nil, err
	}
	xa := &ca.X509Authority{
		ID:            inter.ID,
		Certificate:   cert,
		Signer:        signer,
		UpstreamChain: rc.Upstream,
		Roots:         anchors,
	}
	if cross != nil {
		xa.CrossSigned = []*x509.Certificate{cross}
	}
	return xa, nil
}

// ensureCrossSigned returns the active intermediate cross-signed by the
// retiring root, issuing it on first need, or nil when there is no
// retiring root to cross-sign with. Peers outside signet's bundle
// distribution (a federated domain, a device with a pinned copy) may
// still trust only the old root while SVIDs move to the new one; sent in
// each SVID's chain, the cross-signed intermediate gives them a path. A
// root imported with an upstream chain (an intermediate of the
// organisation's PKI) is not used: its anchors are the organisation's.
func (m *Manager) ensureCrossSigned(ctx context.Context, tx store.Tx, inter *store.Authority, now time.Time) (*x509.Certificate, error) {
	auths, err := tx.ListAuthorities()
	if err != nil {
		return nil, err
	}
	var old *store.Authority
	for _, r := range rootsIn(auths, store.StateRetiring) {
		if r.ID != inter.ParentID && len(r.UpstreamChainDER) == 0 && now.Before(r.NotAfter) {
			old = r
		}
	}
	if old == nil {
		return nil, nil
	}
	if inter.CrossSignedBy == old.ID && len(inter.CrossSignedDER) > 0 {
		cert, err := x509.ParseCertificate(inter.CrossSignedDER)
		if err != nil {
			return nil, wrapErr("cross-signed intermediate %s: %w", inter.ID, err)
		}
		return cert, nil
	}
	interCert, err := x509.ParseCertificate(inter.CertDER)
	if err != nil {
		return nil, wrapErr("intermediate %s: %w", inter.ID, err)
	}
	oldCert, err := x509.ParseCertificate(old.CertDER)
	if err != nil {
		return nil, wrapErr("root %s: %w", old.ID, err)
	}
	oldSigner, err := m.signer(ctx, old)
	if err != nil {
		return nil, err
	}
	tmpl, err := ca.NewCrossSignedTemplate(interCert, oldCert)
	if err != nil {
		return nil, err
	}
	cert, err := ca.CreateCertificate(tmpl, oldCert, interCert.PublicKey, oldSigner)
	if err != nil {
		return nil, err
	}
	inter.CrossSignedDER, inter.CrossSignedBy = cert.Raw, old.ID
	if err := tx.PutAuthority(inter); err != nil {
		return nil, err
	}
	m.log.Info("intermediate cross-signed by the retiring root", logAuthorityID, inter.ID, "root_id", old.ID, logNotAfter, cert.NotAfter)
	return cert, nil
}

// nextEvent is when the authorities next need reconcile: the active
// intermediate's half-life, the active JWT key's half-life (or three
// quarters once a successor is prepared), or the expiry of a retiring JWT
// key.
func nextEvent(auths []*store.Authority, rootID string) time.Time {
	var next time.Time
	at := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	prepared := false
	for _, a := range auths {
		if a.Kind == store.KindJWT && a.State == store.StatePrepared {
			prepared = true
		}
	}
	for _, a := range auths {
		switch {
		case a.Kind == store.KindIntermediate && a.State == store.StateActive && a.ParentID == rootID:
			at(lifePoint(a.NotBefore, a.NotAfter, 1, 2))
		case a.Kind == store.KindJWT && a.State == store.StateActive && prepared:
			at(lifePoint(a.NotBefore, a.NotAfter, 3, 4))
		case a.Kind == store.KindJWT && a.State == store.StateActive:
			at(lifePoint(a.NotBefore, a.NotAfter, 1, 2))
		case a.Kind == store.KindJWT && a.State == store.StateRetiring:
			at(a.NotAfter)
		}
	}
	return next
}

// newID returns a random authority ID: 16 hex digits, short enough to
// type in `signet root activate`, long enough never to collide.
func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// describeKey names a public key's type the way keys.KeyType does, for
// imported keys whose type signet did not choose.
func describeKey(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return "EC-" + strings.ReplaceAll(k.Curve.Params().Name, "-", "")
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA-%d", k.N.BitLen())
	case ed25519.PublicKey:
		return "Ed25519"
	default:
		return fmt.Sprintf("%T", pub)
	}
}
