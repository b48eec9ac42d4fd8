package api

import (
	"sync"
	"time"

	"github.com/signet-mesh/signet/ca/store"
)

// A new rotate generation (root activate --rotate-now) makes every agent
// re-mint every SVID at once, and only once. The server that signs those
// SVIDs must already sign under the newly active root: otherwise they
// chain to the old root, the agent does not re-mint them again before
// their half-life, and the old root cannot be retired until then. This
// server's intermediate moves under the new root after the activation is
// committed: at once when the activation went through it, a moment later
// when another replica sharing the store committed it (followAuthorities
// in ca/server). Until then SyncEntries holds the new generation back.
const (
	// rotateHoldMax bounds the hold: past it the generation is sent
	// anyway (the agents then re-mint at their half-life, as before).
	rotateHoldMax = 30 * time.Second
	// rotateHoldRecheck is how often a held generation is looked at
	// again: the CA's authority changes after the store commit, so no
	// store notification marks the moment it can be sent.
	rotateHoldRecheck = 100 * time.Millisecond
)

// signsUnderActiveRoot reports whether this server's CA signs with an
// intermediate whose parent is the active root in tx. Without an active
// root, or an intermediate the store knows, there is nothing to wait for.
// The answer is shared by every stream (rotateCheck): after a rotate-now
// every stream asks at once, and again every rotateHoldRecheck while it
// holds the generation back.
func (s *NodeService) signsUnderActiveRoot(tx store.Tx) (bool, error) {
	xa := s.cfg.CA.X509Authority()
	if xa == nil {
		return true, nil
	}
	rev, err := tx.Revision()
	if err != nil {
		return false, err
	}
	return s.syncShared.rotateCheck.get(rev, xa.ID, func() (bool, error) { return signsUnder(tx, xa.ID) })
}

// rotateCheck is the answer of signsUnderActiveRoot for one store
// revision and intermediate. The active root changes only in a commit
// that takes a revision (ca/rotation), and an intermediate's parent never
// changes: the answer holds for both.
type rotateCheck struct {
	mu    sync.Mutex
	rev   int64
	xaID  string
	ok    bool
	valid bool
}

// get returns the answer for (rev, xaID), computing it with fn the first
// time while the other streams wait for it.
func (c *rotateCheck) get(rev int64, xaID string, fn func() (bool, error)) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.valid && c.rev == rev && c.xaID == xaID {
		return c.ok, nil
	}
	ok, err := fn()
	if err != nil {
		return false, err
	}
	if !c.valid || rev >= c.rev {
		c.rev, c.xaID, c.ok, c.valid = rev, xaID, ok, true
	}
	return ok, nil
}

// signsUnder reports whether the intermediate xaID's parent is the active
// root in tx (or either is unknown).
func signsUnder(tx store.Tx, xaID string) (bool, error) {
	auths, err := tx.ListAuthorities()
	if err != nil {
		return false, err
	}
	active := ""
	for _, a := range auths {
		if a.Kind == store.KindRoot && a.State == store.StateActive {
			active = a.ID
		}
	}
	for _, a := range auths {
		if a.ID == xaID {
			return active == "" || a.ParentID == active, nil
		}
	}
	return true, nil
}
