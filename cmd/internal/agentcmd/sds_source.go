package agentcmd

import (
	"github.com/signet-mesh/signet/agent/cache"
	sdsserver "github.com/signet-mesh/signet/sds/server"
)

// NewSDSSource is the SDS server's Source of an agent's cache.
func NewSDSSource(c *cache.Cache) sdsserver.Source { return sdsSource{c} }

// sdsSource adapts the agent's cache to the SDS server's Source: sds/server
// does not import agent/, so the two meet here.
type sdsSource struct{ c *cache.Cache }

// Subscribe hands each cache update to notify as an SDS snapshot, from the
// cache's own delivery (with the cache locked, as Source allows), so a
// proxy stream costs no goroutine here.
func (s sdsSource) Subscribe(selectors []string, notify func(*sdsserver.Snapshot)) (cancel func()) {
	sub := s.c.SubscribeFunc(selectors, func(u *cache.Update) {
		notify(u.Derived(snapshotKey{}, toSnapshot).(*sdsserver.Snapshot))
	})
	return sub.Close // no delivery runs after Close returns
}

// snapshotKey keys the SDS form of a cache update (cache.Update.Derived).
type snapshotKey struct{}

// toSnapshot converts a cache update; it runs once per update (see
// cache.Update.Derived), so streams that share the update share the
// snapshot and its memoized secret encodings.
func toSnapshot(u *cache.Update) any {
	snap := &sdsserver.Snapshot{Bundle: u.Bundle, FederatedBundles: u.FederatedBundles, BundleRevision: u.BundleRevision}
	for _, id := range u.Identities {
		snap.Identities = append(snap.Identities, sdsserver.Identity{SVID: id.SVID})
	}
	return snap
}
