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
	sub := &sdsSubscription{
		in:   s.c.Subscribe(selectors),
		out:  make(chan *sdsserver.Snapshot, 1),
		done: make(chan struct{}),
	}
	go sub.forward()
	return sub
}

// sdsSubscription converts cache updates to SDS snapshots, latest wins.
type sdsSubscription struct {
	in    *cache.Subscription
	out   chan *sdsserver.Snapshot
	done  chan struct{}
	close sync.Once
}

func (s *sdsSubscription) Updates() <-chan *sdsserver.Snapshot { return s.out }

func (s *sdsSubscription) Close() {
	s.close.Do(func() {
		close(s.done)
		s.in.Close()
	})
}

func (s *sdsSubscription) forward() {
	defer close(s.out)
	for {
		select {
		case <-s.done:
			return
		case u, ok := <-s.in.Updates():
			if !ok {
				return
			}
			snap := toSnapshot(u)
			// Latest wins: replace an unread snapshot.
			select {
			case <-s.out:
			default:
			}
			s.out <- snap
		}
	}
}

func toSnapshot(u *cache.Update) *sdsserver.Snapshot {
	snap := &sdsserver.Snapshot{Bundle: u.Bundle, FederatedBundles: u.FederatedBundles, BundleRevision: u.BundleRevision}
	for _, id := range u.Identities {
		snap.Identities = append(snap.Identities, sdsserver.Identity{SVID: id.SVID})
	}
	return snap
}
