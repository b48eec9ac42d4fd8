package rotation

import (
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"time"

	"github.com/signet-mesh/signet/ca/audit"
	"github.com/signet-mesh/signet/ca/bundle"
	"github.com/signet-mesh/signet/ca/store"
)

// Crash points of the root rotation steps, passed to Config.CrashPoint:
// "<step>.commit" inside the step's transaction just before it commits,
// "<step>.committed" right after it committed, before the running CA
// uses the result.
var CrashPoints = []string{
	"prepare.commit", "prepare.committed",
	"activate.commit", "activate.committed",
	"retire.commit", "retire.committed",
}

// snapshot is what a step is planned from: the authorities and the CSR
// keys awaiting their certificates, as one read saw them. version digests
// both; the commit proceeds only if the store still has that version.
type snapshot struct {
	auths   []*store.Authority
	pending map[string]pendingCSR
	version string
}

// readSnapshot reads what a step is planned from.
func readSnapshot(tx store.Tx) (*snapshot, error) {
	auths, err := tx.ListAuthorities()
	if err != nil {
		return nil, err
	}
	raw, err := tx.GetMeta(pendingCSRsKey)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	pending, err := decodePendingCSRs(raw)
	if err != nil {
		return nil, err
	}
	// Records are JSON already; their encoding is a faithful digest input.
	h := sha256.New()
	if err := json.NewEncoder(h).Encode(auths); err != nil {
		return nil, wrapErr("digesting authorities: %w", err)
	}
	h.Write(raw)
	return &snapshot{auths: auths, pending: pending, version: hex.EncodeToString(h.Sum(nil))}, nil
}

// work is one step in the making. The step's own part (a root rotation
// step, an op) changes the snapshot's authorities in place and says what
// else to write; the preparer (prepare.go) adds what the clock requires
// and makes the keys and certificates; the commit writes it all.
type work struct {
	base *snapshot
	// auths are the snapshot's authorities as the step leaves them, new
	// ones appended; write names those to store.
	auths []*store.Authority
	write map[string]bool
	// keys are the keys made for the step: cached once it commits,
	// deleted if it does not.
	keys []preparedKey
	// events are logged once the step committed.
	events []func()
	// created are the authorities the step makes (see add): their
	// CreatedAt is the instant of the step's transaction (stamp).
	created []*store.Authority

	// Set by the op:
	// newRoot is a root the step creates or imports (PrepareRoot); root
	// is the authority the preparer made of it.
	newRoot *rootSource
	root    *store.Authority
	// pending, if not nil, replaces the stored CSR keys (an import used
	// one).
	pending map[string]pendingCSR
	// bundleChanged: the step changes the bundle's roots; a new bundle
	// revision is taken (and recorded on a prepared root).
	bundleChanged bool
	// rotateNow increments the rotate generation; takeRevision takes a
	// store revision so that entry streams wake even if the bundle does
	// not change.
	rotateNow, takeRevision bool
	// records returns the step's audit records, built at commit time when
	// every authority of the step exists.
	records func(w *work) []audit.Record

	// step is the planner's part.
	step step
	// revision is the bundle revision the commit took, if any.
	revision int64
}

// preparedKey is a key made for a step.
type preparedKey struct {
	ref    string
	signer crypto.Signer
	// created: the step made the key (not a CSR key made earlier), so it
	// is deleted if the step does not commit.
	created bool
}

// stamp dates the authorities the step creates at, the instant of its
// transaction: taken after their keys were made and their certificates
// signed, so a new root's CreatedAt is when the trust bundle changed, the
// instant its fan-out to the agents starts from. (The op's now, taken
// before the key was made, would count the key's generation and its
// encryption at rest as part of the fan-out.)
func (w *work) stamp(at time.Time) {
	for _, a := range w.created {
		a.CreatedAt, a.StateChangedAt = at, at
	}
}

// move sets a's state and marks it for writing.
func (w *work) move(a *store.Authority, to store.AuthorityState, now time.Time, log func(from store.AuthorityState)) {
	from := a.State
	a.State, a.StateChangedAt = to, now
	w.write[a.ID] = true
	w.events = append(w.events, func() { log(from) })
}

// op is the step-specific part of a change: it validates the step against
// the snapshot in w (returning a refusal, ErrRefused or ErrUnsafe, to stop
// it), and changes w. It runs again, on a fresh snapshot, when the commit
// finds the store changed. It may read the store but not write it.
type op func(ctx context.Context, w *work, now time.Time) error

// errConflict: the authorities changed between the read a step was
// planned from and its commit.
var errConflict = errors.New("the authorities changed since they were read")

// apply runs one change: read, plan (op and next), prepare outside any
// transaction, commit with a check that nothing changed since the read,
// and only then hand the result to the CA. On a conflict the prepared
// keys are deleted and the change is planned again from a new read, up to
// maxAttempts times. name is the step's crash point prefix ("" for none).
func (m *Manager) apply(ctx context.Context, name string, o op) error {
	m.stepMu.Lock()
	defer m.stepMu.Unlock()
	for attempt := 1; ; attempt++ {
		var s *snapshot
		err := m.cfg.Store.View(ctx, func(tx store.Tx) (err error) {
			s, err = readSnapshot(tx)
			return err
		})
		if err != nil {
			return wrapErr("reading authorities: %w", err)
		}
		now := m.clock.Now()
		w := &work{base: s, auths: s.auths, write: map[string]bool{}}
		if err := o(ctx, w, now); err != nil {
			return err
		}
		if err := m.prepare(ctx, w, now); err != nil {
			m.discard(ctx, w)
			return err
		}
		committed, err := m.commit(ctx, w, name, now)
		switch {
		case errors.Is(err, errConflict):
			m.discard(ctx, w)
			if attempt < maxAttempts {
				m.log.Info("authorities changed during a step; planning it again", logStep, name, logAttempt, attempt)
				continue
			}
			return wrapErr("%w: %d attempts lost the race to another change", ErrConflict, attempt)
		case err != nil && !committed:
			m.discard(ctx, w)
			return wrapErr("updating authorities: %w", err)
		case err != nil:
			// The store failed while committing: the records may or may
			// not be on disk, so the keys stay.
			return wrapErr("updating authorities: %w", err)
		}
		if name != "" {
			m.crashPoint(name + ".committed")
		}
		return m.adopt(ctx, w)
	}
}

// commit writes w in one transaction if the store still holds the
// snapshot w was planned from, else fails with errConflict. committed is
// false when the transaction surely rolled back (w's function failed);
// an error with committed true is the store failing at commit.
func (m *Manager) commit(ctx context.Context, w *work, name string, now time.Time) (committed bool, err error) {
	w.stamp(m.clock.Now())
	fnFailed := false
	err = m.cfg.Store.Update(ctx, func(tx store.Tx) error {
		if err := m.write(tx, w, name, now); err != nil {
			fnFailed = true
			return err
		}
		return nil
	})
	return err == nil || !fnFailed, err
}

func (m *Manager) write(tx store.Tx, w *work, name string, now time.Time) error {
	cur, err := readSnapshot(tx)
	if err != nil {
		return err
	}
	if cur.version != w.base.version {
		return errConflict
	}
	switch {
	case w.bundleChanged || w.step.BundleChanged:
		if w.revision, err = bundle.BumpRevision(tx); err != nil {
			return err
		}
		if w.root != nil && w.root.State == store.StatePrepared {
			w.root.BundleRevision = w.revision
		}
	case w.takeRevision:
		if _, err := tx.NextRevision(); err != nil {
			return err
		}
	}
	if w.rotateNow {
		if _, err := bundle.BumpRotateGeneration(tx); err != nil {
			return err
		}
	}
	for _, a := range w.auths {
		if w.write[a.ID] {
			if err := tx.PutAuthority(a); err != nil {
				return err
			}
		}
	}
	if w.pending != nil {
		if err := writePendingCSRs(tx, w.pending); err != nil {
			return err
		}
	}
	if w.records != nil {
		for _, r := range w.records(w) {
			if _, err := audit.Append(tx, r, now); err != nil {
				return err
			}
		}
	}
	if name != "" {
		m.crashPoint(name + ".commit")
	}
	return nil
}

// discard deletes the keys made for a step that did not commit. A key the
// backend cannot delete is logged with its reference: its name says which
// authority it was made for, and no authority refers to it.
func (m *Manager) discard(ctx context.Context, w *work) {
	for _, k := range w.keys {
		if !k.created {
			continue
		}
		if err := m.cfg.Keys.Delete(ctx, k.ref); err != nil {
			m.log.Warn("could not delete the key of a discarded step; delete it by hand", logKeyRef, k.ref, logError, err)
		}
	}
	w.keys = nil
}

// adopt makes a committed step take effect in this process: its keys
// enter the signer cache, the CA gets the signing authorities, and the
// next look is scheduled.
func (m *Manager) adopt(ctx context.Context, w *work) error {
	for _, k := range w.keys {
		m.signers.put(k.ref, k.signer)
	}
	for _, e := range w.events {
		e()
	}
	if w.revision != 0 {
		m.log.Info("bundle changed", logRevision, w.revision)
	}
	now := m.clock.Now()
	xa, jk, err := m.signingAuthorities(ctx, w.auths, now)
	if err != nil {
		return err
	}
	m.cfg.CA.SetX509Authority(xa)
	m.cfg.CA.SetJWTKey(jk)
	m.mu.Lock()
	m.next = nextEvent(w.auths, m.cfg.ServerName)
	m.mu.Unlock()
	if root := newest(w.auths, store.KindRoot, store.StateActive, "", ""); root != nil && shouldRotate(now, root.NotBefore, root.NotAfter) {
		m.log.Warn("root is past half of its life; prepare and activate a new root", logAuthorityID, root.ID, logNotAfter, root.NotAfter)
	}
	return nil
}

// crashPoint calls Config.CrashPoint, if set.
func (m *Manager) crashPoint(point string) {
	if f := m.cfg.CrashPoint; f != nil {
		f(point)
	}
}
