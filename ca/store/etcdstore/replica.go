package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// What CA replicas sharing a store need besides the store itself: a
// unique name each, and one of them elected for once-per-cluster work.
// Both live outside the commit protocol (see doc.go), under
//
//	P/replicas/<name>   held by a live replica, bound to its session lease
//	P/election/         the election's candidates (concurrency.Election)
//	P/live/<name>       what the replica publishes of its connected agents
//	                    (Publish), bound to its session lease
//
// and both are bound to one etcd session (a lease the replica keeps
// alive): a replica that dies or loses etcd for longer than the session's
// TTL gives up its name and its leadership.
const (
	dirReplicas = "/replicas/"
	dirElection = "/election"
	dirLive     = "/live/"
)

// DefaultSessionTTL is the lease TTL of a replica's session: how long the
// other replicas wait before they take over from one that died.
const DefaultSessionTTL = 3 * time.Second

// ErrNameTaken is returned by Replica.Run when another live replica holds
// the name.
var ErrNameTaken = errors.New("etcd store: the replica name is held by another live replica")

// Replica is one CA server among those sharing the store: Run holds its
// name and campaigns for leadership until ctx ends.
type Replica struct {
	s    *Store
	name string
	ttl  time.Duration
	// OnLeading is called with true when this replica becomes the leader
	// and false when it stops being one (its session expired, or Run
	// returns). It must be quick.
	onLeading func(bool)
	// sess is the current session, nil between sessions.
	sess atomic.Pointer[concurrency.Session]
	// claimed is the session of Claim, which Run starts with.
	claimed *concurrency.Session
}

// NewReplica returns the replica named name of s. ttl is the session TTL
// (0: DefaultSessionTTL); onLeading is told of every change of leadership.
func (s *Store) NewReplica(name string, ttl time.Duration, onLeading func(bool)) *Replica {
	if ttl <= 0 {
		ttl = DefaultSessionTTL
	}
	if onLeading == nil {
		onLeading = func(bool) {}
	}
	return &Replica{s: s, name: name, ttl: ttl, onLeading: onLeading}
}

// Claim takes the replica's name for a first session, so that a start
// with a name another live replica holds fails at once with ErrNameTaken.
// Run starts with that session; Release gives it up without running.
func (r *Replica) Claim(ctx context.Context) error {
	sess, err := r.newSession(ctx)
	if err != nil {
		return err
	}
	r.claimed = sess
	return nil
}

// Release gives up the name Claim took, when Run is not to run.
func (r *Replica) Release() {
	if r.claimed != nil {
		_ = r.claimed.Close()
		r.claimed = nil
	}
}

func (r *Replica) newSession(ctx context.Context) (*concurrency.Session, error) {
	sess, err := concurrency.NewSession(r.s.cli, concurrency.WithTTL(int(r.ttl.Round(time.Second)/time.Second)), concurrency.WithContext(r.s.ctx))
	if err != nil {
		return nil, r.s.etcdErr(ctx, "starting a replica session", err)
	}
	if err := r.claim(ctx, sess); err != nil {
		_ = sess.Close()
		return nil, err
	}
	return sess, nil
}

func (r *Replica) claim(ctx context.Context, sess *concurrency.Session) error {
	key := r.s.keys.prefix + dirReplicas + r.name
	rctx, cancel := r.s.reqCtx(ctx)
	defer cancel()
	resp, err := r.s.cli.Txn(rctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, r.s.name, clientv3.WithLease(sess.Lease()))).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return r.s.etcdErr(ctx, "claiming replica name "+r.name, err)
	}
	if !resp.Succeeded {
		holder := ""
		if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
			holder = string(kvs[0].Value)
		}
		return fmt.Errorf("%w: %q is held by %s (give each replica its own server name, or wait %v after that one stopped)", ErrNameTaken, r.name, holder, r.ttl)
	}
	return nil
}

// Run campaigns for leadership (with the session of Claim, if any) until
// ctx ends, starting a new session (and claiming the name again) whenever
// the current one expires, retrying after wait while etcd is unreachable.
// It returns nil when ctx ends, after resigning.
func (r *Replica) Run(ctx context.Context, wait func(ctx context.Context) error, logErr func(error)) error {
	sess := r.claimed
	r.claimed = nil
	for {
		if sess == nil {
			var err error
			if sess, err = r.newSession(ctx); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				logErr(err)
				if wait(ctx) != nil {
					return nil
				}
				continue
			}
		}
		r.sess.Store(sess)
		r.lead(ctx, sess)
		r.sess.Store(nil)
		_ = sess.Close() // revokes the lease: the name and the candidacy go
		sess = nil
		if ctx.Err() != nil {
			return nil
		}
	}
}

// lead campaigns on sess and holds leadership until the session ends or
// ctx does.
func (r *Replica) lead(ctx context.Context, sess *concurrency.Session) {
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-sess.Done():
			cancel()
		case <-cctx.Done():
		}
	}()
	el := concurrency.NewElection(sess, r.s.keys.prefix+dirElection)
	if err := el.Campaign(cctx, r.name); err != nil {
		return
	}
	r.onLeading(true)
	<-cctx.Done()
	r.onLeading(false)
	if ctx.Err() != nil {
		rctx, cancel := context.WithTimeout(context.Background(), r.s.reqTimeout)
		_ = el.Resign(rctx)
		cancel()
	}
}

// Publish puts data as this replica's live record (P/live/<name>), bound
// to its session: it disappears when the replica dies. Before Run has a
// session it does nothing.
func (r *Replica) Publish(ctx context.Context, data []byte) error {
	sess := r.sess.Load()
	if sess == nil {
		return nil
	}
	rctx, cancel := r.s.reqCtx(ctx)
	defer cancel()
	if _, err := r.s.cli.Put(rctx, r.s.keys.prefix+dirLive+r.name, string(data), clientv3.WithLease(sess.Lease())); err != nil {
		return r.s.etcdErr(ctx, "publishing replica state", err)
	}
	return nil
}

// Peers returns the live records of the other replicas, by name.
func (r *Replica) Peers(ctx context.Context) (map[string][]byte, error) {
	rctx, cancel := r.s.reqCtx(ctx)
	defer cancel()
	dir := r.s.keys.prefix + dirLive
	resp, err := r.s.cli.Get(rctx, dir, clientv3.WithPrefix())
	if err != nil {
		return nil, r.s.etcdErr(ctx, "reading replica states", err)
	}
	out := map[string][]byte{}
	for _, kv := range resp.Kvs {
		if name := strings.TrimPrefix(string(kv.Key), dir); name != r.name {
			out[name] = kv.Value
		}
	}
	return out, nil
}

// Leader returns the name of the elected replica, "" when there is none.
func (s *Store) Leader(ctx context.Context) (string, error) {
	rctx, cancel := s.reqCtx(ctx)
	defer cancel()
	resp, err := s.cli.Get(rctx, s.keys.prefix+dirElection+"/", clientv3.WithFirstCreate()...)
	if err != nil {
		return "", s.etcdErr(ctx, "reading the elected replica", err)
	}
	if len(resp.Kvs) == 0 {
		return "", nil
	}
	return string(resp.Kvs[0].Value), nil
}
