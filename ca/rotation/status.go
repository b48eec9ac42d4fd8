package rotation

import (
	"context"
	"time"

	"github.com/signet-mesh/signet/ca/bundle"
	"github.com/signet-mesh/signet/ca/store"
)

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
