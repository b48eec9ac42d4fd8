package main

import (
	"sync"

	"github.com/signet-mesh/signet/agent/cache"
	sdsserver "github.com/signet-mesh/signet/sds/server"
)

// sdsSource adapts the agent's cache to the SDS server's Source: sds/server
// does not import agent/, so the two meet here.
type sdsSource struct{ c *cache.Cache }

func (s sdsSource) Subscribe(selectors []string) sdsserver.Subscription {
	sub := &sdsSubscription{out: make(chan *sdsserver.Snapshot, 1)}
	sub.in = s.c.SubscribeFunc(selectors, sub.deliver)
	return sub
}

// sdsSubscription converts cache updates to SDS snapshots as the cache
// delivers them, latest wins, without a goroutine of its own: an agent
// holds one per proxy stream.
type sdsSubscription struct {
	in        *cache.Subscription
	out       chan *sdsserver.Snapshot
	closeOnce sync.Once
}

func (s *sdsSubscription) Updates() <-chan *sdsserver.Snapshot { return s.out }

// deliver runs with the cache locked, the only sender on out.
func (s *sdsSubscription) deliver(u *cache.Update) {
	snap := u.Derived(snapshotKey{}, toSnapshot).(*sdsserver.Snapshot)
	select {
	case <-s.out: // drop the unread, older snapshot
	default:
	}
	s.out <- snap
}

func (s *sdsSubscription) Close() {
	s.closeOnce.Do(func() {
		s.in.Close() // no deliver runs after this returns
		close(s.out)
	})
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
