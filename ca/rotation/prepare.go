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
	"maps"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/signet-mesh/signet/ca"
	"github.com/signet-mesh/signet/ca/bundle"
	"github.com/signet-mesh/signet/ca/store"
)

// The preparer: everything slow a step needs (generating keys, loading
// them, signing certificates) happens here, before the step's transaction
// and outside it, so no mint waits for it. Keys are named after the
// authority they are for (keyName), so one whose step never committed can
// be recognised.

// prepare completes w: the root the op asked for, then what next (the
// planner) finds the authorities need, with their keys and certificates.
func (m *Manager) prepare(ctx context.Context, w *work, now time.Time) error {
	if w.newRoot != nil {
		root, err := m.prepareRoot(ctx, w, w.newRoot, now)
		if err != nil {
			return err
		}
		w.root = root
	}
	w.step = next(w.auths, now, m.cfg.ServerName)
	if w.step.CreateRoot {
		if _, err := m.prepareRoot(ctx, w, m.configuredRoot(), now); err != nil {
			return err
		}
	}
	for _, t := range w.step.Transitions {
		a := byID(w.auths, t.ID)
		w.move(a, t.To, now, m.logMove(a))
	}
	root := newest(w.auths, store.KindRoot, store.StateActive, "", "")
	if w.step.Intermediate {
		if err := m.prepareIntermediate(ctx, w, root, now); err != nil {
			return err
		}
	}
	if w.step.CrossSignBy != "" {
		inter := newest(w.auths, store.KindIntermediate, store.StateActive, root.ID, m.cfg.ServerName)
		if err := m.crossSign(ctx, w, inter, byID(w.auths, w.step.CrossSignBy)); err != nil {
			return err
		}
	}
	if w.step.JWT != "" {
		if err := m.prepareJWTKey(ctx, w, w.step.JWT, now); err != nil {
			return err
		}
	}
	return nil
}

// keyName is the name of the key of authority id of kind: deterministic,
// so a key left by a step that never committed names the authority it
// was for, which no stored authority has.
func keyName(kind store.AuthorityKind, id string) string { return string(kind) + "-" + id }

// newID returns a random authority ID: 16 hex digits, short enough to
// type in `signet root activate`, long enough never to collide.
func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// createKey makes a new key for authority id and records it in w.
func (m *Manager) createKey(ctx context.Context, w *work, kind store.AuthorityKind, id string) (crypto.Signer, string, error) {
	signer, ref, err := m.cfg.Keys.Create(ctx, keyName(kind, id), m.cfg.KeyType)
	if err != nil {
		return nil, "", err
	}
	w.keys = append(w.keys, preparedKey{ref: ref, signer: signer, created: true})
	return signer, ref, nil
}

// signer returns the private key of a: one made for this step, or a
// stored authority's (loaded once and cached).
func (m *Manager) signer(ctx context.Context, w *work, a *store.Authority) (crypto.Signer, error) {
	for _, k := range w.keys {
		if k.ref == a.KeyRef {
			return k.signer, nil
		}
	}
	return m.signers.get(ctx, a)
}

// add appends a new authority to w.
func (m *Manager) add(w *work, a *store.Authority) {
	w.auths = append(w.auths, a)
	w.created = append(w.created, a)
	w.write[a.ID] = true
	w.events = append(w.events, func() {
		m.log.Info("authority created", logAuthorityID, a.ID, logKind, a.Kind, logState, a.State, logParentID, a.ParentID, logNotAfter, a.NotAfter, logServer, a.ServerName)
	})
}

func (m *Manager) logMove(a *store.Authority) func(from store.AuthorityState) {
	return func(from store.AuthorityState) {
		m.log.Info("authority state changed", logAuthorityID, a.ID, logKind, a.Kind, logFrom, from, logState, a.State)
	}
}

// rootSource says where a new root comes from: created by signet (no
// field set), imported from files (the configured import), or from PEM
// (PrepareRoot).
type rootSource struct {
	state store.AuthorityState
	// files and selfSigned: Config.ImportRoot (self-signed) or
	// Config.ImportIntermediate.
	files      *Import
	selfSigned bool
	// parsed: a certificate given to PrepareRoot.
	parsed *parsedImport
}

// configuredRoot is the root a store without one gets.
func (m *Manager) configuredRoot() *rootSource {
	switch {
	case m.cfg.ImportRoot != nil:
		return &rootSource{state: store.StateActive, files: m.cfg.ImportRoot, selfSigned: true}
	case m.cfg.ImportIntermediate != nil:
		return &rootSource{state: store.StateActive, files: m.cfg.ImportIntermediate}
	default:
		return &rootSource{state: store.StateActive}
	}
}

// prepareRoot makes the root src describes and adds it to w.
func (m *Manager) prepareRoot(ctx context.Context, w *work, src *rootSource, now time.Time) (*store.Authority, error) {
	if src.files == nil && src.parsed == nil {
		id := newID()
		signer, ref, err := m.createKey(ctx, w, store.KindRoot, id)
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
		a := newAuthority(id, store.KindRoot, src.state, cert.Raw, ref, string(m.cfg.KeyType), "", cert.NotBefore, cert.NotAfter, now)
		m.add(w, a)
		return a, nil
	}

	imp, selfSigned, what := src.parsed, false, "the certificate"
	if src.files != nil {
		var err error
		if imp, err = readImport(src.files); err != nil {
			return nil, err
		}
		selfSigned, what = src.selfSigned, src.files.CertFile
	} else {
		selfSigned = bundle.IsSelfSigned(imp.cert)
	}
	id := newID()
	key, ref := imp.key, ""
	if key == nil {
		if selfSigned {
			return nil, refuse(ErrRefused, "a self-signed root is imported with its key (--key)")
		}
		csrID, signer, err := m.findCSRKey(ctx, w.base.pending, imp)
		if err != nil {
			return nil, err
		}
		id, key, ref = csrID, signer, w.base.pending[csrID].KeyRef
		w.pending = maps.Clone(w.base.pending)
		delete(w.pending, csrID)
		w.keys = append(w.keys, preparedKey{ref: ref, signer: signer})
	}
	if err := checkImport(imp.cert, imp.chain, key, selfSigned, now); err != nil {
		return nil, wrapErr("%w: %s: %v", ErrInvalidImport, what, err)
	}
	if ref == "" {
		var err error
		if ref, err = m.cfg.Keys.Import(ctx, keyName(store.KindRoot, id), key); err != nil {
			return nil, err
		}
		w.keys = append(w.keys, preparedKey{ref: ref, signer: key, created: true})
	}
	a := newAuthority(id, store.KindRoot, src.state, imp.cert.Raw, ref, describeKey(key.Public()), "", imp.cert.NotBefore, imp.cert.NotAfter, now)
	a.Imported = true
	for _, c := range imp.chain {
		a.UpstreamChainDER = append(a.UpstreamChainDER, c.Raw)
	}
	m.add(w, a)
	w.events = append(w.events, func() {
		m.log.Info("root imported", logAuthorityID, id, logSerial, imp.cert.SerialNumber.Text(16), logSubject, imp.cert.Subject.String())
	})
	return a, nil
}

// prepareIntermediate signs a new active intermediate for this server with
// root's key.
func (m *Manager) prepareIntermediate(ctx context.Context, w *work, root *store.Authority, now time.Time) error {
	rootCert, err := x509.ParseCertificate(root.CertDER)
	if err != nil {
		return wrapErr("root %s: %w", root.ID, err)
	}
	rootSigner, err := m.signer(ctx, w, root)
	if err != nil {
		return err
	}
	id := newID()
	signer, ref, err := m.createKey(ctx, w, store.KindIntermediate, id)
	if err != nil {
		return err
	}
	tmpl, err := ca.NewIntermediateTemplate(m.cfg.TrustDomain, signer.Public(), now, m.cfg.IntermediateTTL, rootCert)
	if err != nil {
		return err
	}
	cert, err := ca.CreateCertificate(tmpl, rootCert, signer.Public(), rootSigner)
	if err != nil {
		return err
	}
	a := newAuthority(id, store.KindIntermediate, store.StateActive, cert.Raw, ref, string(m.cfg.KeyType), root.ID, cert.NotBefore, cert.NotAfter, now)
	a.ServerName = m.cfg.ServerName
	m.add(w, a)
	return nil
}

// crossSign issues inter's certificate again, signed by the retiring root
// old: peers outside signet's bundle distribution (a federated domain, a
// device with a pinned copy) may still trust only the old root while
// SVIDs move to the new one, and sent in each SVID's chain, the
// cross-signed intermediate gives them a path.
func (m *Manager) crossSign(ctx context.Context, w *work, inter, old *store.Authority) error {
	interCert, err := x509.ParseCertificate(inter.CertDER)
	if err != nil {
		return wrapErr("intermediate %s: %w", inter.ID, err)
	}
	oldCert, err := x509.ParseCertificate(old.CertDER)
	if err != nil {
		return wrapErr("root %s: %w", old.ID, err)
	}
	oldSigner, err := m.signer(ctx, w, old)
	if err != nil {
		return err
	}
	tmpl, err := ca.NewCrossSignedTemplate(interCert, oldCert)
	if err != nil {
		return err
	}
	cert, err := ca.CreateCertificate(tmpl, oldCert, interCert.PublicKey, oldSigner)
	if err != nil {
		return err
	}
	inter.CrossSignedDER, inter.CrossSignedBy = cert.Raw, old.ID
	w.write[inter.ID] = true
	w.events = append(w.events, func() {
		m.log.Info("intermediate cross-signed by the retiring root", logAuthorityID, inter.ID, logRootID, old.ID, logNotAfter, cert.NotAfter)
	})
	return nil
}

// prepareJWTKey makes a new JWT key for this server in state. Its
// "certificate" is the PKIX public key, which is what the bundle needs.
func (m *Manager) prepareJWTKey(ctx context.Context, w *work, state store.AuthorityState, now time.Time) error {
	id := newID()
	signer, ref, err := m.createKey(ctx, w, store.KindJWT, id)
	if err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(signer.Public())
	if err != nil {
		return wrapErr("jwt key %s: %w", id, err)
	}
	a := newAuthority(id, store.KindJWT, state, pub, ref, string(m.cfg.KeyType), "", now, now.Add(m.cfg.JWTKeyTTL), now)
	a.ServerName = m.cfg.ServerName
	m.add(w, a)
	return nil
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

// signingAuthorities builds what the CA signs with from the committed
// authorities: this server's active intermediate under the active root,
// with the chain above it, its cross-signed twin while a root retires, and
// the bundle's anchors to check against; and this server's active JWT
// key.
func (m *Manager) signingAuthorities(ctx context.Context, auths []*store.Authority, now time.Time) (*ca.X509Authority, *ca.JWTKey, error) {
	root := newest(auths, store.KindRoot, store.StateActive, "", "")
	if root == nil {
		return nil, nil, wrapErr("no active root after a step")
	}
	inter := newest(auths, store.KindIntermediate, store.StateActive, root.ID, m.cfg.ServerName)
	jwt := newest(auths, store.KindJWT, store.StateActive, "", m.cfg.ServerName)
	if inter == nil || jwt == nil {
		return nil, nil, wrapErr("no active intermediate or JWT key of server %q after a step", m.cfg.ServerName)
	}
	cert, err := x509.ParseCertificate(inter.CertDER)
	if err != nil {
		return nil, nil, wrapErr("intermediate %s: %w", inter.ID, err)
	}
	// Both keys at once: a soft key takes a deliberate few hundred
	// milliseconds to decrypt, and a restarted CA serves no agent until
	// both are loaded.
	var interSigner, jwtSigner crypto.Signer
	var g errgroup.Group
	g.Go(func() (err error) { interSigner, err = m.signers.get(ctx, inter); return err })
	g.Go(func() (err error) { jwtSigner, err = m.signers.get(ctx, jwt); return err })
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	rc, err := bundle.ParseRoot(root)
	if err != nil {
		return nil, nil, err
	}
	b, err := bundle.FromAuthorities(auths, m.cfg.TrustDomain)
	if err != nil {
		return nil, nil, err
	}
	xa := &ca.X509Authority{
		ID:            inter.ID,
		Certificate:   cert,
		Signer:        interSigner,
		UpstreamChain: rc.Upstream,
		Roots:         b.X509Authorities,
	}
	if old := byID(auths, inter.CrossSignedBy); old != nil && len(inter.CrossSignedDER) > 0 &&
		old.Kind == store.KindRoot && old.State == store.StateRetiring && len(old.UpstreamChainDER) == 0 && now.Before(old.NotAfter) {
		cross, err := x509.ParseCertificate(inter.CrossSignedDER)
		if err != nil {
			return nil, nil, wrapErr("cross-signed intermediate %s: %w", inter.ID, err)
		}
		xa.CrossSigned = []*x509.Certificate{cross}
	}
	return xa, &ca.JWTKey{ID: jwt.ID, Signer: jwtSigner, NotAfter: jwt.NotAfter}, nil
}

// signerCache holds the private keys of stored authorities by KeyRef.
type signerCache struct {
	keys interface {
		Load(ctx context.Context, ref string) (crypto.Signer, error)
	}
	mu sync.Mutex
	m  map[string]crypto.Signer
}

// get returns a's key, loading it (outside the lock: a soft key takes a
// deliberate few hundred milliseconds to decrypt) on first use.
func (c *signerCache) get(ctx context.Context, a *store.Authority) (crypto.Signer, error) {
	c.mu.Lock()
	s, ok := c.m[a.KeyRef]
	c.mu.Unlock()
	if ok {
		return s, nil
	}
	s, err := c.keys.Load(ctx, a.KeyRef)
	if err != nil {
		return nil, wrapErr("loading key of %s %s: %w", a.Kind, a.ID, err)
	}
	c.put(a.KeyRef, s)
	return s, nil
}

func (c *signerCache) put(ref string, s crypto.Signer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[ref] = s
}

func (c *signerCache) has(ref string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.m[ref]
	return ok
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
