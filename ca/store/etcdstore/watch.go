package etcdstore

import (
	"context"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/signet-mesh/signet/ca/store"
	"github.com/signet-mesh/signet/internal/backoff"
)

// watch keeps the mirror current: it watches the mirrored keys from the
// revision the mirror was loaded at, applies what commits publish and
// wakes the subscribers. When etcd has compacted past what the watch
// missed (a long disconnection), it reloads the mirror. It returns when
// the store closes.
func (s *Store) watch() {
	defer s.wg.Done()
	bo := backoff.New(backoff.Config{Initial: 50 * time.Millisecond, Max: 5 * time.Second})
	reload := false
	for s.ctx.Err() == nil {
		if reload {
			if err := s.reload(); err != nil {
				s.log.Warn("reloading the mirror of the store", logKeyError, err)
			} else {
				reload = false
			}
		}
		if !reload {
			var err error
			reload, err = s.watchOnce(bo)
			if err != nil && s.ctx.Err() == nil {
				s.log.Warn("watching the store", logKeyError, err)
			}
		}
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(bo.Next()):
		}
	}
}

// watchOnce runs one etcd watch until it fails; reload says the mirror
// must be read again.
func (s *Store) watchOnce(bo *backoff.Backoff) (reload bool, err error) {
	ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(s.ctx))
	defer cancel()
	from := s.m.watchFrom()
	wch := s.cli.Watch(ctx, s.keys.mirrorDir(), clientv3.WithPrefix(), clientv3.WithRev(from))
	for resp := range wch {
		if resp.CompactRevision != 0 {
			return true, fmt.Errorf("etcd compacted revision %d before the watch read it", from)
		}
		if err := resp.Err(); err != nil {
			return false, s.etcdErr(s.ctx, "watching "+s.keys.mirrorDir(), err)
		}
		bo.Reset()
		published, err := s.m.apply(s.keys, resp.Events)
		s.wake(published)
		if err != nil {
			return true, err
		}
	}
	return false, nil
}

// reload replaces the mirror with a fresh read, and wakes every
// subscriber: what changed meanwhile is unknown.
func (s *Store) reload() error {
	ctx, cancel := context.WithTimeout(s.ctx, s.reqTimeout)
	defer cancel()
	st, in, watchRev, err := s.load(ctx)
	if err != nil {
		return err
	}
	s.m.reset(st, in, watchRev)
	s.subs.notify()
	s.auditSubs.notify()
	s.changes.Publish(store.Change{All: true})
	return nil
}

// waitSeen waits until the mirror knows the commit key at mod revision
// rev (or later): a rerun after a conflict must start from there.
func (s *Store) waitSeen(ctx context.Context, rev int64) error {
	for {
		seen, changed := s.m.seenAndChanged()
		if seen >= rev {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("etcd: waiting for the watch to deliver revision %d: %w", rev, ctx.Err())
		case <-s.ctx.Done():
			return store.ErrClosed
		}
	}
}

// waitWritable returns the newest committed state once no chunked commit
// of another writer is in flight: its writes are not in that state, and a
// commit on top of them would publish them half done. A writer whose
// lease has expired is dead; its chunks are rolled back here.
func (s *Store) waitWritable(ctx context.Context) (*state, error) {
	checked := int64(0) // the intent whose lease was last found alive
	for {
		snap, in, changed := s.m.view()
		if in == nil {
			return snap, nil
		}
		var wait <-chan time.Time
		if checked == in.modRev {
			wait = time.After(s.intentTTL / 2)
		} else {
			wait = time.After(0)
		}
		select {
		case <-changed:
			continue
		case <-ctx.Done():
			return nil, fmt.Errorf("etcd: waiting for the chunked commit of %s: %w", in.rec.Intent.Owner, ctx.Err())
		case <-s.ctx.Done():
			return nil, store.ErrClosed
		case <-wait:
		}
		alive, err := s.leaseAlive(ctx, in.rec.Intent.Lease)
		if err != nil {
			return nil, err
		}
		if alive {
			checked = in.modRev
			continue
		}
		if err := s.rollback(ctx, in); err != nil {
			return nil, err
		}
	}
}

func (s *Store) leaseAlive(ctx context.Context, id int64) (bool, error) {
	rctx, cancel := s.reqCtx(ctx)
	defer cancel()
	resp, err := s.cli.TimeToLive(rctx, clientv3.LeaseID(id))
	if err != nil {
		return false, s.etcdErr(ctx, "checking the lease of a chunked commit", err)
	}
	return resp.TTL > 0, nil
}
