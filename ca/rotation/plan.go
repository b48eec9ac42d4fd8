package rotation

import (
	"slices"
	"time"

	"github.com/signet-mesh/signet/ca/store"
)

// step is what a server's authorities need at some instant: the planner's
// answer (next), which the preparer carries out and the commit writes. It
// holds no keys or certificates, only decisions, so it can be compared in
// tests.
type step struct {
	// CreateRoot: there is no active root; create one (or import the
	// configured one). Only a first start, or a store whose root an
	// operator retired without a successor, needs it.
	CreateRoot bool
	// Intermediate: sign a new active intermediate for this server under
	// the active root (the one CreateRoot makes, if set). The server's
	// other active intermediates retire (listed in Transitions).
	Intermediate bool
	// CrossSignBy is a retiring root that must also sign this server's
	// active intermediate (the new one, with Intermediate), so that peers
	// still trusting only that root accept SVIDs; empty when none.
	CrossSignBy string
	// JWT, if not empty, is the state of a new JWT key to create for this
	// server: active (there is no usable one) or prepared (the active key
	// is at half its life).
	JWT store.AuthorityState
	// Transitions move existing authorities to a new state, in the order
	// of the authorities they name.
	Transitions []transition
	// BundleChanged: the roots or JWT keys in the bundle change, so the
	// commit takes a new bundle revision.
	BundleChanged bool
}

// transition moves authority ID to state To.
type transition struct {
	ID string
	To store.AuthorityState
}

// IsZero reports whether the step changes nothing.
func (s step) IsZero() bool {
	return !s.CreateRoot && !s.Intermediate && s.CrossSignBy == "" && s.JWT == "" && len(s.Transitions) == 0 && !s.BundleChanged
}

// next plans what server's authorities need at now, given every authority
// of the store (oldest first). It is a pure function: no I/O, no clock,
// no keys.
//
//   - no active root: create one;
//   - no active intermediate of server under the active root, or one at
//     half its life: a new one, and the server's other active
//     intermediates retire;
//   - a retiring root (self-signed, unexpired) that has not cross-signed
//     the active intermediate: cross-sign it;
//   - JWT keys: at half of the active key's life a successor is prepared
//     (it enters the bundle); at three quarters it becomes active and the
//     old key retiring (still in the bundle, so its tokens verify) until
//     its NotAfter, when it is retired. Without a usable active key, a
//     usable prepared one is activated, or else a new one made.
func next(auths []*store.Authority, now time.Time, server string) step {
	var st step
	moves := map[string]store.AuthorityState{}

	root := newest(auths, store.KindRoot, store.StateActive, "", "")
	var inter *store.Authority
	if root == nil {
		st.CreateRoot, st.BundleChanged = true, true
	} else {
		inter = newest(auths, store.KindIntermediate, store.StateActive, root.ID, server)
	}
	if inter == nil || shouldRotate(now, inter.NotBefore, inter.NotAfter) {
		st.Intermediate = true
		for _, a := range auths {
			if a.Kind == store.KindIntermediate && a.State == store.StateActive && serverOf(a) == server {
				moves[a.ID] = store.StateRetired
			}
		}
	}

	// A retiring root other than the intermediate's own.
	if root != nil {
		var old *store.Authority
		for _, r := range rootsIn(auths, store.StateRetiring) {
			if r.ID != root.ID && len(r.UpstreamChainDER) == 0 && now.Before(r.NotAfter) {
				old = r
			}
		}
		if old != nil && (st.Intermediate || inter.CrossSignedBy != old.ID || len(inter.CrossSignedDER) == 0) {
			st.CrossSignBy = old.ID
		}
	}

	active := newest(auths, store.KindJWT, store.StateActive, "", server)
	prepared := newest(auths, store.KindJWT, store.StatePrepared, "", server)
	usable := func(a *store.Authority) bool { return a != nil && now.Before(a.NotAfter) }
	var keep *store.Authority // the JWT key that signs after the step; nil: a new one
	switch {
	case !usable(active) && usable(prepared):
		// The CA was down through the activation point.
		keep = prepared
	case !usable(active):
		// First start, or the CA was down past the key's whole life.
		st.JWT, st.BundleChanged = store.StateActive, true
	case prepared == nil && shouldRotate(now, active.NotBefore, active.NotAfter):
		st.JWT, st.BundleChanged = store.StatePrepared, true
		keep = active
	case prepared != nil && !now.Before(lifePoint(active.NotBefore, active.NotAfter, 3, 4)):
		keep = prepared
	default:
		keep = active
	}
	if keep != nil && keep.State != store.StateActive {
		moves[keep.ID] = store.StateActive
	}
	for _, a := range auths {
		if a.Kind != store.KindJWT || serverOf(a) != server || (keep != nil && a.ID == keep.ID) {
			continue
		}
		state := a.State
		if state == store.StateActive {
			state, moves[a.ID] = store.StateRetiring, store.StateRetiring
		}
		if (state == store.StateRetiring || state == store.StatePrepared) && !now.Before(a.NotAfter) {
			moves[a.ID], st.BundleChanged = store.StateRetired, true
		}
	}

	for _, a := range auths {
		if to, ok := moves[a.ID]; ok {
			st.Transitions = append(st.Transitions, transition{ID: a.ID, To: to})
		}
	}
	return st
}

// nextEvent is when server's authorities next need a step, after one that
// left them as auths: the active intermediate's half-life, the active JWT
// key's half-life (or three quarters once a successor is prepared), or
// the expiry of a retiring JWT key. Zero when nothing is scheduled.
func nextEvent(auths []*store.Authority, server string) time.Time {
	var next time.Time
	at := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	root := newest(auths, store.KindRoot, store.StateActive, "", "")
	prepared := newest(auths, store.KindJWT, store.StatePrepared, "", server) != nil
	for _, a := range auths {
		if serverOf(a) != server {
			continue
		}
		switch {
		case a.Kind == store.KindIntermediate && a.State == store.StateActive && root != nil && a.ParentID == root.ID:
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

// serverOf names the server an authority belongs to; roots and records
// written before servers were named belong to the default server.
func serverOf(a *store.Authority) string {
	if a.ServerName == "" {
		return DefaultServerName
	}
	return a.ServerName
}

// newest returns the most recently created authority of kind in state,
// with parentID (if set) as parent and belonging to server (if set), or
// nil.
func newest(auths []*store.Authority, kind store.AuthorityKind, state store.AuthorityState, parentID, server string) *store.Authority {
	// Authorities are oldest first.
	for _, a := range slices.Backward(auths) {
		if a.Kind == kind && a.State == state && (parentID == "" || a.ParentID == parentID) && (server == "" || serverOf(a) == server) {
			return a
		}
	}
	return nil
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

// byID returns the authority with id, or nil.
func byID(auths []*store.Authority, id string) *store.Authority {
	for _, a := range auths {
		if a.ID == id {
			return a
		}
	}
	return nil
}
