package server

import (
	"context"
	"crypto"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/signet-mesh/signet/ca/api"
	"github.com/signet-mesh/signet/ca/keys"
	"github.com/signet-mesh/signet/ca/rotation"
	"github.com/signet-mesh/signet/ca/store"
	"github.com/signet-mesh/signet/ca/store/etcdstore"
	"github.com/signet-mesh/signet/internal/backoff"
)

// Several CA servers (replicas) can share one etcd store (Config.Etcd):
// each has its own name (Config.ServerName) and its own intermediate and
// JWT keys, made on its machine; the roots are shared (a soft root key is
// kept in the store encrypted under the passphrase, see sharedRootKeys);
// one replica, elected through etcd, does the once-per-store work (the
// automatic root schedule, audit checkpoints, pruning). With bbolt the
// one server always leads.

// EtcdConfig selects the etcd store.
type EtcdConfig struct {
	// Endpoints of the etcd cluster (URLs). Required.
	Endpoints []string
	// Prefix of the store's keys; empty means etcdstore.DefaultPrefix.
	Prefix string
	// TLS for the client connection; nil connects in plain text.
	TLS *tls.Config
}

// backend is the opened store and, for etcd, the replica's membership.
type backend struct {
	st      store.Store
	etcd    *etcdstore.Store // nil for bbolt
	replica *etcdstore.Replica
	leading atomic.Bool
	// onLead is called when this replica becomes the leader (set once,
	// before the election runs).
	onLead func()
	// peers are the other replicas' agents (shareAgents).
	peers peerAgents
}

// openBackend opens the store cfg names: bbolt under DataDir, or etcd;
// with etcd it also claims cfg.ServerName among the live replicas, so that
// two replicas never run under one name.
func openBackend(ctx context.Context, cfg Config, hooks TestOptions) (*backend, error) {
	if cfg.Etcd == nil {
		st, err := store.Open(filepath.Join(cfg.DataDir, DBFile), store.Options{Logger: cfg.Logger, NoSync: hooks.StoreNoSync, OnGroupCommit: cfg.Metrics.groupCommitHook(), OnMigrate: migrationAudit(cfg.Clock)})
		if err != nil {
			return nil, fmt.Errorf("server: opening store: %w", err)
		}
		b := &backend{st: st}
		b.leading.Store(true)
		return b, nil
	}
	st, err := etcdstore.Open(ctx, etcdstore.Options{
		Endpoints:     cfg.Etcd.Endpoints,
		TLS:           cfg.Etcd.TLS,
		Prefix:        cfg.Etcd.Prefix,
		Name:          cfg.ServerName,
		Logger:        cfg.Logger,
		OnGroupCommit: cfg.Metrics.groupCommitHook(),
	})
	if err != nil {
		return nil, fmt.Errorf("server: opening the etcd store: %w", err)
	}
	b := &backend{st: st, etcd: st}
	log := cfg.Logger.With(logComponent, "replica")
	b.replica = st.NewReplica(cfg.ServerName, 0, func(leading bool) {
		b.leading.Store(leading)
		if leading {
			log.Info("leading: this replica does the once-per-cluster work", logServerName, cfg.ServerName)
			if b.onLead != nil {
				b.onLead()
			}
		} else {
			log.Info("no longer leading", logServerName, cfg.ServerName)
		}
	})
	if err := b.replica.Claim(ctx); err != nil {
		st.Close()
		return nil, fmt.Errorf("server: server_name: %w", err)
	}
	return b, nil
}

// runElection keeps this replica a candidate until ctx ends (bbolt:
// nothing to do, the server always leads).
func (b *backend) runElection(ctx context.Context, s *Server) error {
	if b.replica == nil {
		return nil
	}
	s.log.Info("replica of a shared store", logServerName, s.cfg.ServerName, logStore, b.kind(), logLeading, s.Leading())
	bo := backoff.New(backoff.Config{})
	return b.replica.Run(ctx, func(ctx context.Context) error {
		return backoff.Sleep(ctx, s.cfg.Clock, bo.Next())
	}, func(err error) {
		s.log.Error("campaigning for leadership", logError, err)
	})
}

// Leading reports whether this server does the once-per-store work now:
// always with bbolt, while elected with etcd.
func (s *Server) Leading() bool { return s.be.leading.Load() }

// ServerName is this server's name among those sharing its store.
func (s *Server) ServerName() string { return s.cfg.ServerName }

func (b *backend) close() error {
	if b.replica != nil {
		b.replica.Release() // a server closed before Serve
	}
	return b.st.Close()
}

// defaultServerName fills Config.ServerName: the host name with etcd
// (each machine one replica), rotation.DefaultServerName with bbolt.
func defaultServerName(cfg Config) (string, error) {
	if cfg.ServerName != "" {
		return cfg.ServerName, nil
	}
	if cfg.Etcd == nil {
		return rotation.DefaultServerName, nil
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		return "", errors.New("server: server name must be configured with an etcd store (the host name is unknown)")
	}
	return host, nil
}

// sharedRootKeys keeps the soft keys of roots reachable by every replica:
// after a root key is made (or imported) in this replica's key directory,
// its encrypted PEM (never the key in clear) is copied into the store
// under rootKeyMeta; a replica that lacks the file fetches it from there
// on Load. Intermediate and JWT keys stay on the machine that made them.
type sharedRootKeys struct {
	keys.Manager
	st  store.Store
	dir string
}

// rootKeyMeta is the meta key of a root's encrypted key file.
func rootKeyMeta(ref string) string { return "root_key/" + ref }

// SharedRootKeyMeta is the meta key under which replicas on a shared store
// find the encrypted key file of the root whose Authority.KeyRef is ref
// (signet store migrate puts a bbolt server's root keys there).
func SharedRootKeyMeta(ref string) string { return rootKeyMeta(ref) }

// isRootKey reports whether a key name or reference is a root's (see
// rotation's key names: kind, a dash, the authority ID).
func isRootKey(ref string) bool {
	return len(ref) > len(store.KindRoot)+1 && ref[:len(store.KindRoot)+1] == string(store.KindRoot)+"-"
}

func (m *sharedRootKeys) share(ctx context.Context, ref string) error {
	if !isRootKey(ref) {
		return nil
	}
	pemBytes, err := os.ReadFile(filepath.Join(m.dir, ref))
	if err != nil {
		return fmt.Errorf("sharing root key %s: %w", ref, err)
	}
	return m.st.Update(ctx, func(tx store.Tx) error { return tx.PutMeta(rootKeyMeta(ref), pemBytes) })
}

func (m *sharedRootKeys) Create(ctx context.Context, name string, kt keys.KeyType) (_ crypto.Signer, _ string, err error) {
	signer, ref, err := m.Manager.Create(ctx, name, kt)
	if err != nil {
		return nil, "", err
	}
	if err := m.share(ctx, ref); err != nil {
		_ = m.Manager.Delete(ctx, ref)
		return nil, "", err
	}
	return signer, ref, nil
}

func (m *sharedRootKeys) Import(ctx context.Context, name string, key crypto.Signer) (string, error) {
	ref, err := m.Manager.Import(ctx, name, key)
	if err != nil {
		return "", err
	}
	if err := m.share(ctx, ref); err != nil {
		_ = m.Manager.Delete(ctx, ref)
		return "", err
	}
	return ref, nil
}

func (m *sharedRootKeys) Load(ctx context.Context, ref string) (crypto.Signer, error) {
	signer, err := m.Manager.Load(ctx, ref)
	if !errors.Is(err, keys.ErrKeyNotFound) || !isRootKey(ref) {
		return signer, err
	}
	var pemBytes []byte
	err2 := m.st.View(ctx, func(tx store.Tx) (err error) {
		pemBytes, err = tx.GetMeta(rootKeyMeta(ref))
		return err
	})
	if err2 != nil || len(pemBytes) == 0 {
		return nil, err // not shared either: the key manager's error
	}
	if err := keys.WriteSoftKeyFile(m.dir, ref, pemBytes); err != nil {
		return nil, fmt.Errorf("fetching root key %s from the store: %w", ref, err)
	}
	return m.Manager.Load(ctx, ref)
}

func (m *sharedRootKeys) Delete(ctx context.Context, ref string) error {
	err := m.Manager.Delete(ctx, ref)
	if isRootKey(ref) {
		// A key made for a step that lost its race: no authority names
		// it. Meta has no delete; an empty value reads as absent.
		if uerr := m.st.Update(ctx, func(tx store.Tx) error { return tx.PutMeta(rootKeyMeta(ref), nil) }); uerr != nil && err == nil {
			err = uerr
		}
	}
	return err
}

func (b *backend) kind() string {
	if b.etcd != nil {
		return "etcd"
	}
	return "bolt"
}

// followEvery is how often a replica looks for another's change to the
// authorities besides the store's change notifications (a root step takes
// no store revision when the bundle is unchanged, as activation).
const followEvery = 10 * time.Second

// followAuthorities keeps this replica's authorities in step with the
// other replicas' root steps, until ctx ends: when the authorities change
// (a root activated through another replica), this replica's
// intermediate moves under the new active root now, not at its own next
// rotation, so the old root can be retired. With bbolt there is nothing
// to follow: the one server's own steps do it.
func (s *Server) followAuthorities(ctx context.Context) error {
	if s.be.replica == nil {
		return nil
	}
	changes, cancel := s.store.Subscribe()
	defer cancel()
	t := s.cfg.Clock.NewTicker(followEvery)
	defer t.Stop()
	last := ""
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-changes:
			if !ok {
				return nil
			}
		case <-t.C():
		}
		fp, err := s.authoritiesFingerprint(ctx)
		if err != nil || fp == last {
			continue
		}
		if last != "" {
			if err := s.rot.Reconcile(ctx); err != nil && ctx.Err() == nil {
				s.log.Error("following another replica's change to the authorities", logError, err)
				continue
			}
		}
		last = fp
	}
}

// authoritiesFingerprint names the authorities and their states.
func (s *Server) authoritiesFingerprint(ctx context.Context) (string, error) {
	var b strings.Builder
	err := s.store.View(ctx, func(tx store.Tx) error {
		auths, err := tx.ListAuthorities()
		for _, a := range auths {
			fmt.Fprintf(&b, "%s:%s:%s;", a.ID, a.State, a.ParentID)
		}
		return err
	})
	return b.String(), err
}

// shareEvery is how often a replica publishes its agents (and reads the
// others'): the activation gate and `root status` see an agent of another
// replica within about this long.
const shareEvery = time.Second

// peerAgents holds what the other replicas published of their agents.
type peerAgents struct {
	cur atomic.Pointer[map[string]api.PeerAgent]
}

func (p *peerAgents) get() map[string]api.PeerAgent {
	if m := p.cur.Load(); m != nil {
		return *m
	}
	return nil
}

// shareAgents publishes this replica's connected agents and the bundle
// revision each applied (bound to its session: a dead replica's agents
// vanish with its lease) and reads the other replicas', until ctx ends.
func (s *Server) shareAgents(ctx context.Context) error {
	if s.be.replica == nil {
		return nil
	}
	t := s.cfg.Clock.NewTicker(shareEvery)
	defer t.Stop()
	var lastErr string
	for {
		err := s.shareOnce(ctx)
		if msg := fmt.Sprint(err); err != nil && msg != lastErr && ctx.Err() == nil {
			s.log.Warn("sharing connected agents with the other replicas", logError, err)
		}
		lastErr = fmt.Sprint(err)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C():
		}
	}
}

func (s *Server) shareOnce(ctx context.Context) error {
	data, err := json.Marshal(s.conns.LocalAppliedRevisions())
	if err != nil {
		return err
	}
	if err := s.be.replica.Publish(ctx, data); err != nil {
		return err
	}
	peers, err := s.be.replica.Peers(ctx)
	if err != nil {
		return err
	}
	merged := map[string]api.PeerAgent{}
	for name, raw := range peers {
		var agents map[string]int64
		if err := json.Unmarshal(raw, &agents); err != nil {
			return fmt.Errorf("replica %s published %w", name, err)
		}
		for id, rev := range agents {
			if old, ok := merged[id]; !ok || rev > old.Applied {
				merged[id] = api.PeerAgent{Replica: name, Applied: rev}
			}
		}
	}
	s.be.peers.cur.Store(&merged)
	return nil
}
