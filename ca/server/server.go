// Package server assembles the CA: it opens the store, loads or creates the
// authorities, and serves the node API (TLS, TCP) and the admin API (Unix
// socket, peer credentials). cmd/signet builds a Config from flags or a file
// and calls New then Serve.
//
//	srv, err := server.New(ctx, server.Config{TrustDomain: td, DataDir: dir, Passphrase: pass})
//	nodeLn, _ := net.Listen("tcp", "127.0.0.1:8081")
//	adminLn, _ := peercred.Listen(filepath.Join(dir, "admin.sock"), 0o600)
//	err = srv.Serve(ctx, nodeLn, adminLn) // until ctx ends
//	srv.Close()
//
// With Config.Etcd the state is in etcd instead, shared by several
// servers (replicas), each with its own name and keys, one of them elected
// for the once-per-store work (replica.go).
//
// Tests reach a few hooks (crash points, a store without fsync or
// without audit records, wrapped stores and key managers) through
// NewForTest and TestOptions, never through Config: a product binary
// refuses them (testhooks.go).
package server

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"github.com/signet-mesh/signet/ca"
	"github.com/signet-mesh/signet/ca/api"
	"github.com/signet-mesh/signet/ca/bundle"
	"github.com/signet-mesh/signet/ca/federation"
	"github.com/signet-mesh/signet/ca/k8spsat"
	"github.com/signet-mesh/signet/ca/keys"
	"github.com/signet-mesh/signet/ca/rotation"
	"github.com/signet-mesh/signet/ca/servercert"
	"github.com/signet-mesh/signet/ca/store"
	"github.com/signet-mesh/signet/internal/clock"
	"github.com/signet-mesh/signet/internal/grpcserve"
	"github.com/signet-mesh/signet/internal/peercred"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
	nodev1 "github.com/signet-mesh/signet/proto/signet/node/v1"
)

const (
	// DBFile is the bbolt file under the data dir.
	DBFile = "signet.db"
	// KeysDir holds the encrypted soft keys under the data dir.
	KeysDir = "keys"
	// maxRecvMsgSize bounds one node API message: a full mint batch of
	// CSRs fits with room to spare; anything bigger is refused by gRPC
	// with ResourceExhausted before it is decoded.
	maxRecvMsgSize = 4 << 20
	// svidRetention is how long an expired SVID stays in the index, so
	// "what was issued yesterday" can still be answered.
	svidRetention = 24 * time.Hour
	pruneEvery    = time.Hour
)

// Config is the CA's configuration. Zero values take the documented
// defaults.
type Config struct {
	TrustDomain spiffeid.TrustDomain
	// DataDir holds the store and the soft keys; created 0700.
	DataDir string
	// ServerName names this server among the CA servers sharing its store
	// (rotation.Config.ServerName); its intermediate and JWT keys carry
	// it. Empty means rotation.DefaultServerName, all a store with one
	// server needs.
	ServerName string
	// AdminUIDs may use the admin socket besides the server's own uid.
	AdminUIDs []uint32
	// KeyType of new authorities; default EC-P256.
	KeyType keys.KeyType
	// KMSURI selects the key manager; empty means soft keys in DataDir.
	KMSURI string
	// Passphrase encrypts soft keys at rest. Required for soft keys.
	Passphrase []byte
	// RootTTL and IntermediateTTL default to 1 year and 7 days.
	RootTTL, IntermediateTTL time.Duration
	// AutoRotateRoots turns on the automatic root schedule
	// (rotation.Config.AutoRotateRoots).
	AutoRotateRoots bool
	// ImportRoot / ImportIntermediate put signet under existing PKI.
	ImportRoot, ImportIntermediate *rotation.Import
	// NodeRate is the per-node request rate limit; see api.NodeConfig.
	NodeRate float64
	// Admission bounds concurrent attestations and mint batches; the
	// zero value takes api.Admission's defaults.
	Admission api.Admission
	// ReconnectRate paces agents back after a restart; see
	// api.NodeConfig. 0 means api.DefaultReconnectRate.
	ReconnectRate float64
	// MTLSWindow is how far back `mtls status` and the STRICT readiness
	// check look at the proxies' connection counts; 0 means
	// api.DefaultMTLSWindow (10 minutes).
	MTLSWindow time.Duration
	Clock      clock.Clock
	Logger     *slog.Logger
	// Metrics receives the CA's metrics (see NewMetrics); nil records
	// none.
	Metrics *Metrics
	// K8sPSAT attests Kubernetes nodes (k8s_clusters); nil refuses
	// k8s_psat attestation.
	K8sPSAT *k8spsat.Attestor
	// Etcd, when set, keeps the state in etcd instead of DataDir's bbolt
	// file, shared by every server (replica) given the same endpoints and
	// prefix, each with its own ServerName (empty: the host name). See
	// replica.go.
	Etcd *EtcdConfig
}

// Server is a running CA.
type Server struct {
	cfg    Config
	log    *slog.Logger
	store  store.Store
	be     *backend
	ca     *ca.CA
	rot    *rotation.Manager
	cert   *servercert.Manager
	conns  *api.Connections
	node   *api.NodeService
	admin  *api.AdminService
	pool   poolCache
	signer signerCheck
	closed sync.Once
	// Federation (federation.go): the store components write through,
	// the relationship manager, and the bundle endpoint if served.
	sst         store.Store
	fed         *federation.Manager
	fedLn       net.Listener
	fedEndpoint federation.EndpointConfig
	// checkpointRecords is checkpointRecords, or a test's
	// (TestOptions.CheckpointRecords).
	checkpointRecords uint64
}

// New opens the store under cfg.DataDir and loads (or, on first start,
// creates) the authorities. It does not listen; see Serve.
func New(ctx context.Context, cfg Config) (*Server, error) {
	return newServer(ctx, cfg, TestOptions{})
}

func newServer(ctx context.Context, cfg Config, hooks TestOptions) (*Server, error) {
	if cfg.TrustDomain.IsZero() {
		return nil, errors.New("server: trust domain must be configured")
	}
	if cfg.DataDir == "" {
		return nil, errors.New("server: data dir must be configured")
	}
	cfg.Clock = clock.OrReal(cfg.Clock)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("server: creating data dir: %w", err)
	}
	var err error
	if cfg.ServerName, err = defaultServerName(cfg); err != nil {
		return nil, err
	}
	km, err := keys.New(ctx, keys.Config{KMSURI: cfg.KMSURI, Dir: filepath.Join(cfg.DataDir, KeysDir), Passphrase: cfg.Passphrase, KDFIterations: hooks.KeyKDFIterations})
	if err != nil {
		return nil, fmt.Errorf("server: key manager: %w", err)
	}
	be, err := openBackend(ctx, cfg, hooks)
	if err != nil {
		return nil, err
	}
	if be.etcd != nil && keys.IsSoft(cfg.KMSURI) {
		km = &sharedRootKeys{Manager: km, st: be.st, dir: filepath.Join(cfg.DataDir, KeysDir)}
	}
	if hooks.WrapKeys != nil {
		km = hooks.WrapKeys(km)
	}
	// Components write through sst, which times commits for the metrics.
	sst := cfg.Metrics.instrument(be.st)
	if hooks.NoAudit {
		sst = noAuditStore{sst}
	}
	if hooks.WrapStore != nil {
		sst = hooks.WrapStore(sst)
	}
	c := ca.New(ca.Config{TrustDomain: cfg.TrustDomain, Clock: cfg.Clock, Logger: cfg.Logger})
	conns := api.NewConnections()
	if be.replica != nil {
		conns.SetPeers(cfg.ServerName, be.peers.get)
	}
	rot, err := rotation.New(rotation.Config{
		Store:              sst,
		Keys:               km,
		CA:                 c,
		TrustDomain:        cfg.TrustDomain,
		ServerName:         cfg.ServerName,
		Clock:              cfg.Clock,
		Logger:             cfg.Logger,
		KeyType:            cfg.KeyType,
		RootTTL:            cfg.RootTTL,
		IntermediateTTL:    cfg.IntermediateTTL,
		ImportRoot:         cfg.ImportRoot,
		ImportIntermediate: cfg.ImportIntermediate,
		AutoRotateRoots:    cfg.AutoRotateRoots,
		ConnectedAgents:    conns.AppliedRevisions,
		Leading:            be.leading.Load,
		CrashPoint:         hooks.CrashPoint,
	})
	if err != nil {
		be.close()
		return nil, fmt.Errorf("server: %w", err)
	}
	be.onLead = rot.Wake
	if err := rot.Init(ctx); err != nil {
		be.close()
		return nil, fmt.Errorf("server: loading authorities: %w", err)
	}
	cert, err := servercert.New(servercert.Config{CA: c, Clock: cfg.Clock, Logger: cfg.Logger})
	if err != nil {
		be.close()
		return nil, fmt.Errorf("server: %w", err)
	}
	if _, err := cert.Certificate(); err != nil {
		be.close()
		return nil, fmt.Errorf("server: signing the server certificate: %w", err)
	}
	conns.SetMTLSWindow(cfg.MTLSWindow)
	s := &Server{
		cfg:   cfg,
		log:   cfg.Logger.With(logComponent, "server"),
		store: be.st,
		be:    be,
		ca:    c,
		rot:   rot,
		cert:  cert,
		conns: conns,
		node: api.NewNodeService(api.NodeConfig{
			Store: sst, CA: c, TrustDomain: cfg.TrustDomain, Clock: cfg.Clock, Logger: cfg.Logger,
			NodeRate: cfg.NodeRate, Connections: conns, Metrics: cfg.Metrics.nodeHooks(), Admission: cfg.Admission,
			ReconnectRate: cfg.ReconnectRate, K8sPSAT: cfg.K8sPSAT,
		}),
		admin: api.NewAdminService(api.AdminConfig{
			Store: sst, TrustDomain: cfg.TrustDomain, AdminUIDs: cfg.AdminUIDs, SelfUID: uint32(os.Getuid()),
			K8sClusters: cfg.K8sPSAT.Clusters(),
			Connections: conns, Clock: cfg.Clock, Logger: cfg.Logger, Roots: rot,
			CheckpointSigner: rot.CheckpointSigner,
		}),
	}
	s.sst = sst
	s.checkpointRecords = checkpointRecords
	if hooks.CheckpointRecords > 0 {
		s.checkpointRecords = uint64(hooks.CheckpointRecords)
	}
	if err := s.newFederation(); err != nil {
		be.close()
		return nil, err
	}
	if err := s.pool.refresh(ctx, be.st, cfg.TrustDomain); err != nil {
		be.close()
		return nil, err
	}
	cfg.Metrics.bind(s)
	s.checkAuditChain(ctx)
	if err := s.recordRestore(ctx); err != nil {
		be.close()
		return nil, err
	}
	return s, nil
}

// Store returns the server's store (for in-process callers such as dev).
func (s *Server) Store() store.Store { return s.store }

// Bundle returns the current trust bundle.
func (s *Server) Bundle(ctx context.Context) (*bundle.Bundle, error) {
	return bundle.Read(ctx, s.store, s.cfg.TrustDomain)
}

// nodeServerOptions are the node API's gRPC server options: its TLS,
// limits, workers and interceptors.
func (s *Server) nodeServerOptions() []grpc.ServerOption {
	// Re-read per handshake: the server certificate and the roots that
	// verify agents both rotate.
	creds := newNodeTLS(&nodeConfigs{cert: s.cert.Certificate, roots: s.pool.get})
	return append(fleetServerOptions(),
		grpc.Creds(creds),
		grpc.MaxRecvMsgSize(maxRecvMsgSize),
		// A fixed pool of workers serves the RPCs instead of a goroutine
		// per call: less stack growth and scheduling under load.
		grpc.NumStreamWorkers(uint32(runtime.GOMAXPROCS(0))),
		grpc.SharedWriteBuffer(true),
		grpc.ChainUnaryInterceptor(s.cfg.Metrics.countRequests()),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	)
}

// Serve serves the node API on nodeLn and the admin API on adminLn (which
// should come from peercred.Listen) until ctx ends, then stops gracefully.
// It returns nil on cancellation.
func (s *Server) Serve(ctx context.Context, nodeLn, adminLn net.Listener) error {
	nodeSrv := grpc.NewServer(s.nodeServerOptions()...)
	nodev1.RegisterNodeServiceServer(nodeSrv, s.node)
	adminSrv := grpc.NewServer(append([]grpc.ServerOption{grpc.Creds(peercred.TransportCredentials())}, s.admin.ServerOptions()...)...)
	adminv1.RegisterAdminServiceServer(adminSrv, s.admin)
	adminv1.RegisterEntryBatchServiceServer(adminSrv, s.admin.EntryBatch())
	// Exec probes (signet healthcheck --admin-socket) ask this.
	healthSrv := health.NewServer()
	healthpb.RegisterHealthServer(adminSrv, healthSrv)
	s.registerStoreService(adminSrv)
	s.registerFederation(adminSrv)

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return serveAPI(ctx, nodeSrv, nodeLn) })
	if adminLn != nil {
		g.Go(func() error { return serveAPI(ctx, adminSrv, adminLn) })
	}
	g.Go(func() error { return s.rot.Run(ctx) })
	g.Go(func() error { return s.watchBundle(ctx) })
	g.Go(func() error { return s.pruneLoop(ctx) })
	g.Go(func() error { return s.cfg.K8sPSAT.Run(ctx, s.cfg.Clock, s.log.With(logComponent, "k8spsat")) })
	g.Go(func() error { return s.checkpointLoop(ctx) })
	g.Go(func() error { return s.watchHealth(ctx, healthSrv) })
	s.runFederation(ctx, g)
	g.Go(func() error { return s.be.runElection(ctx, s) })
	g.Go(func() error { return s.shareAgents(ctx) })
	g.Go(func() error { return s.followAuthorities(ctx) })
	s.log.Debug("serving", logTrustDomain, s.cfg.TrustDomain.Name(), logNodeAPI, nodeLn.Addr().String(), logAdminSocket, addrOf(adminLn))
	return g.Wait()
}

// serveAPI serves one of the CA's gRPC servers until ctx ends.
func serveAPI(ctx context.Context, srv *grpc.Server, ln net.Listener) error {
	if err := grpcserve.Serve(ctx, srv, ln); err != nil {
		return fmt.Errorf("server: %w", err)
	}
	return nil
}

func addrOf(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}

// watchBundle keeps the client-verification pool in step with the bundle.
func (s *Server) watchBundle(ctx context.Context) error {
	changes, cancel := s.store.Subscribe()
	defer cancel()
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-changes:
			if !ok {
				return nil // store closed
			}
			if err := s.pool.refresh(ctx, s.store, s.cfg.TrustDomain); err != nil && ctx.Err() == nil {
				s.log.Error("refreshing trust pool", logError, err)
			}
		}
	}
}

func (s *Server) pruneLoop(ctx context.Context) error {
	t := s.cfg.Clock.NewTicker(pruneEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C():
			if !s.Leading() {
				continue // the elected replica prunes
			}
			var n, toks, nodes int
			err := s.store.Update(ctx, func(tx store.Tx) error {
				before := s.cfg.Clock.Now().Add(-svidRetention)
				var err error
				if n, err = tx.PruneSVIDs(before); err != nil {
					return err
				}
				if toks, err = tx.PruneJoinTokens(before); err != nil {
					return err
				}
				nodes, err = tx.PruneEvictedNodes(before)
				return err
			})
			if err != nil {
				s.log.Error("pruning expired SVIDs, join tokens and eviction records", logError, err)
			} else if n+toks+nodes > 0 {
				s.log.Info("pruned expired SVIDs, join tokens and eviction records", logCount, n, logTokens, toks, logNodes, nodes)
			}
		}
	}
}

// Close closes the store. It is idempotent.
func (s *Server) Close() error {
	var err error
	s.closed.Do(func() { err = s.be.close() })
	return err
}

// poolCache holds the roots that verify agents' client certificates.
type poolCache struct {
	mu   sync.RWMutex
	pool *x509.CertPool
}

func (p *poolCache) get() *x509.CertPool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.pool
}

func (p *poolCache) refresh(ctx context.Context, st store.Store, td spiffeid.TrustDomain) error {
	b, err := bundle.Read(ctx, st, td)
	if err != nil {
		return fmt.Errorf("server: reading bundle: %w", err)
	}
	pool := x509.NewCertPool()
	for _, c := range b.X509Authorities {
		pool.AddCert(c)
	}
	p.mu.Lock()
	p.pool = pool
	p.mu.Unlock()
	return nil
}

// Admin returns the admin API for in-process callers (signet dev). Calls
// made this way skip the peer-credential check of the socket.
func (s *Server) Admin() *api.AdminService { return s.admin }
