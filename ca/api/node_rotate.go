package api

import (
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
func (s *NodeService) signsUnderActiveRoot(tx store.Tx) (bool, error) {
	xa := s.cfg.CA.X509Authority()
	if xa == nil {
		return true, nil
	}
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
		if a.ID == xa.ID {
			return active == "" || a.ParentID == active, nil
		}
	}
	return true, nil
}
