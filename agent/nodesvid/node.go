package nodesvid

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/signet-mesh/signet/agent/client"
	"github.com/signet-mesh/signet/agent/internal/logkey"
	"github.com/signet-mesh/signet/internal/backoff"
	"github.com/signet-mesh/signet/internal/clock"
	"github.com/signet-mesh/signet/internal/kubeapi"
	"github.com/signet-mesh/signet/internal/nodeapi"
)

// CA is the call a Node makes once connected (agent/client.Client
// implements it).
type CA interface {
	RenewNodeSVID(ctx context.Context, key crypto.Signer) (*x509svid.SVID, error)
}

// Metrics are optional hooks; nil fields are skipped.
type Metrics struct {
	// Rotated counts a renewed node SVID; RotationFailed a failed attempt.
	Rotated, RotationFailed func()
	// AttestBackoff and RenewBackoff are the delay before the next retry
	// of attestation and renewal; 0 once they succeeded.
	AttestBackoff, RenewBackoff func(time.Duration)
}

// Config configures a Node.
type Config struct {
	// ServerAddress is the CA's node API (host:port), or a comma-separated
	// list of the replicas' (see package client). Required.
	ServerAddress string
	// TrustDomain is the node's trust domain. Required.
	TrustDomain spiffeid.TrustDomain
	// TrustBundle authenticates the CA on first contact; once the CA has
	// sent a bundle, the stored one (DataDir/bundle.pem) is used instead.
	TrustBundle []*x509.Certificate
	// InsecureBootstrap attests without authenticating the CA
	// (development only).
	InsecureBootstrap bool
	// JoinToken attests the node when DataDir holds no usable identity,
	// or when it is not the token the stored identity came from.
	JoinToken string
	// K8sPSAT attests with the agent pod's Kubernetes service account
	// token instead of a join token: at every start (a new agent pod on
	// the node attests again) and whenever the stored identity is not
	// usable. Nil: join tokens.
	K8sPSAT *K8sPSAT
	// DataDir keeps the node SVID (see the package documentation).
	// Required.
	DataDir string
	// KeyPassphrase encrypts the node key at rest. Required.
	KeyPassphrase []byte
	// KeyKDFIterations is the PBKDF2 iteration count the node key is
	// encrypted with; 0 means keypass.KDFIterations (600,000), most of a
	// second of CPU per node SVID. Only tests lower it.
	KeyKDFIterations int
	// MemoryOnly keeps the node SVID and its key in memory: nothing is
	// read from or written to DataDir's node SVID file, so a restart needs
	// a new join token. For many simulated agents in one process (signet
	// bench fleet), each of which would otherwise spend a quarter second
	// of CPU deriving the key that encrypts its node key; a real agent
	// leaves it false.
	MemoryOnly bool
	// NewKey makes node keys. Required.
	NewKey func() (crypto.Signer, error)
	// CA renews the node SVID (Run). Required for Run.
	CA CA
	// Renewed is told of each renewed node SVID (the agent schedules its
	// next renewal). Nil ignores.
	Renewed func(*x509svid.SVID)
	// Backoff paces the retries of attestation and renewal.
	Backoff backoff.Config
	Clock   clock.Clock
	Logger  *slog.Logger
	Metrics Metrics
}

// K8sPSAT configures Kubernetes node attestation (k8s_psat).
type K8sPSAT struct {
	// Cluster is the cluster's name in the CA's k8s_clusters.
	Cluster string
	// TokenFile holds the projected service account token (audience
	// "signet"); it is read again for each attempt, as the kubelet
	// rotates it.
	TokenFile string
}

// DefaultK8sTokenFile is where the agent DaemonSet mounts its projected
// token.
const DefaultK8sTokenFile = "/var/run/secrets/tokens/signet-agent"

// Node is the node's identity (see the package documentation). It is safe
// for concurrent use.
type Node struct {
	cfg Config
	log *slog.Logger

	mu        sync.Mutex
	src       *client.Source // nil until Obtain
	rejection error          // why the CA refused the identity, once it did
	rejecting bool           // Rejected has begun (it sets rejection last)
	// latest is the roots of the last SetBundle; saved is the roots
	// bundle.pem holds (read by Obtain, or written since). SaveBundle
	// rewrites the file only when they differ, so a reconnect or a
	// revision that moved without the roots costs no write.
	latest, saved []*x509.Certificate
	saveMu        sync.Mutex // one SaveBundle at a time

	renew chan struct{} // RenewNow

	// refusedKey is the key of the last renewal the CA refused before
	// looking at it (ResourceExhausted): the next attempt sends it again
	// instead of making a new one. Used only by Run's goroutine.
	refusedKey crypto.Signer
}

// New returns a Node with cfg's zero fields defaulted.
func New(cfg Config) *Node {
	cfg.Clock = clock.OrReal(cfg.Clock)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Renewed == nil {
		cfg.Renewed = func(*x509svid.SVID) {}
	}
	return &Node{cfg: cfg, log: cfg.Logger.With(logkey.Component, "nodesvid"), renew: make(chan struct{}, 1)}
}

// Obtain returns the node's identity, with the trust bundle that
// authenticates the CA, as a Source for the connection to the CA. It uses
// the stored node SVID unless a configured join token is new to it (see the
// package documentation); otherwise it attests with the join token,
// retrying with backoff while the CA is unreachable, and stores the
// result. It fails at once when there is nothing to attest with, or when
// the CA refuses the token.
func (n *Node) Obtain(ctx context.Context) (*client.Source, error) {
	svid, roots, err := n.obtain(ctx)
	if err != nil {
		return nil, err
	}
	src := client.NewSource(svid, x509bundle.FromX509Authorities(n.cfg.TrustDomain, roots))
	n.mu.Lock()
	n.src = src
	n.mu.Unlock()
	return src, nil
}

func (n *Node) obtain(ctx context.Context) (*x509svid.SVID, []*x509.Certificate, error) {
	dir := n.cfg.DataDir
	roots := n.cfg.TrustBundle
	if stored, err := LoadBundleFile(filepath.Join(dir, BundleFile)); err == nil && len(stored) > 0 {
		roots = stored
		n.setSaved(stored)
	}
	svid, err := n.load(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, nil, fmt.Errorf("loading node identity: %w", err)
	case n.cfg.K8sPSAT != nil:
		n.log.Info("attesting with the pod's service account token (k8s_psat)", logkey.SPIFFEID, svid.ID.String())
	case n.newToken():
		n.log.Info("the join token is not the one the stored node identity came from: attesting with it", logkey.SPIFFEID, svid.ID.String())
	case !n.cfg.Clock.Now().Before(svid.Certificates[0].NotAfter):
		n.log.Warn("stored node SVID has expired; attesting again", logkey.SPIFFEID, svid.ID.String())
	default:
		n.log.Info("using stored node identity", logkey.SPIFFEID, svid.ID.String(), logkey.NotAfter, svid.Certificates[0].NotAfter)
		return svid, roots, nil
	}
	if n.cfg.JoinToken == "" && n.cfg.K8sPSAT == nil {
		if id, ok := n.rejectedID(); ok {
			return nil, nil, fmt.Errorf("the node identity %s in %s was rejected by the CA; %s", id, dir, whatToDo(id))
		}
		return nil, nil, fmt.Errorf("no usable node identity in %s and no join token to attest with", dir)
	}
	if len(roots) == 0 && !n.cfg.InsecureBootstrap {
		return nil, nil, errors.New("a trust bundle (--trust-bundle) is required to authenticate the CA")
	}
	key, err := n.cfg.NewKey()
	if err != nil {
		return nil, nil, fmt.Errorf("generating node key: %w", err)
	}
	var bundle *x509bundle.Bundle
	err = backoff.Retry(ctx, n.cfg.Clock, backoff.New(n.cfg.Backoff), func(ctx context.Context) error {
		p := client.AttestParams{
			Address: n.cfg.ServerAddress, TrustDomain: n.cfg.TrustDomain, Bootstrap: roots,
			Insecure: n.cfg.InsecureBootstrap && len(roots) == 0, JoinToken: n.cfg.JoinToken, Key: key,
		}
		if k := n.cfg.K8sPSAT; k != nil {
			// Read for each attempt: the kubelet rotates the token.
			token, err := kubeapi.ReadTokenFile(k.TokenFile)
			if err != nil {
				return backoff.Permanent(fmt.Errorf("reading the service account token (--k8s-token-file): %w; mount a projected token with audience signet there", err))
			}
			p.K8sCluster, p.K8sToken = k.Cluster, token
		}
		s, b, err := client.Attest(ctx, p)
		switch status.Code(err) {
		case codes.OK:
		case codes.PermissionDenied, codes.InvalidArgument:
			return backoff.Permanent(err) // the token is refused: retrying cannot help
		default:
			return err
		}
		xb, err := client.BundleFromProto(n.cfg.TrustDomain, b)
		if err != nil {
			return backoff.Permanent(err)
		}
		svid, bundle = s, xb
		return nil
	}, func(err error, d time.Duration) {
		n.attestBackoff(d)
		n.log.Warn("attestation failed; retrying", logkey.Error, err, logkey.RetryIn, d)
	})
	n.attestBackoff(0)
	if err != nil {
		return nil, nil, err
	}
	if err := n.save(dir, svid); err != nil {
		return nil, nil, fmt.Errorf("saving node identity: %w", err)
	}
	if n.cfg.JoinToken != "" { // k8s_psat has no join token to remember
		if err := saveTokenHash(dir, n.cfg.JoinToken); err != nil {
			return nil, nil, fmt.Errorf("saving node identity: %w", err)
		}
	}
	if err := saveBundle(dir, bundle.X509Authorities()); err != nil {
		return nil, nil, fmt.Errorf("saving bundle: %w", err)
	}
	n.setSaved(bundle.X509Authorities())
	// An identity rejected earlier is history now.
	if err := os.Remove(filepath.Join(dir, RejectedSVIDFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		n.log.Warn("removing the rejected node identity", logkey.Error, err)
	}
	leaf := svid.Certificates[0]
	n.log.Info("node attested", logkey.SPIFFEID, svid.ID.String(), logkey.Serial, nodeapi.FormatSerial(leaf.SerialNumber), logkey.NotAfter, leaf.NotAfter)
	return svid, bundle.X509Authorities(), nil
}

// newToken reports whether the configured join token is not the one the
// stored identity came from. An identity stored without a token hash (by
// an agent before it recorded them) counts as coming from the configured
// token: a used token cannot attest again.
func (n *Node) newToken() bool {
	if n.cfg.JoinToken == "" {
		return false
	}
	same, known, err := tokenOrigin(n.cfg.DataDir, n.cfg.JoinToken)
	if err != nil {
		n.log.Warn("reading the join token hash; keeping the stored node identity", logkey.Error, err)
		return false
	}
	return known && !same
}

// rejectedID returns the SPIFFE ID of the identity set aside when the CA
// rejected it, if there is one.
func (n *Node) rejectedID() (spiffeid.ID, bool) {
	svid, err := parseNodeSVID(filepath.Join(n.cfg.DataDir, RejectedSVIDFile), n.cfg.KeyPassphrase)
	if err != nil {
		return spiffeid.ID{}, false
	}
	return svid.ID, true
}

// SVID returns the current node SVID, nil before Obtain.
func (n *Node) SVID() *x509svid.SVID {
	n.mu.Lock()
	src := n.src
	n.mu.Unlock()
	if src == nil {
		return nil
	}
	svid, _ := src.GetX509SVID()
	return svid
}

// SetBundle makes b the bundle that authenticates the CA, from the next
// handshake on. It only sets it in memory: SaveBundle stores it for a
// restart, and agent/report calls SaveBundle before it tells the CA which
// bundle the agent serves, so the CA hears of a root only once the node
// has stored it. Keeping the file write out of the sync path matters when
// a bundle change reaches a whole fleet at once: the reports, and so the
// writes, are spread over the CA's reconnect window.
func (n *Node) SetBundle(b *x509bundle.Bundle) {
	roots := b.X509Authorities()
	n.mu.Lock()
	src := n.src
	n.latest = roots
	n.mu.Unlock()
	if src != nil {
		src.SetBundle(b)
	}
}

// SaveBundle writes (and fsyncs) the roots of the last SetBundle to
// bundle.pem when they differ from those it holds: the CA sends the
// bundle again on every reconnect, and with every new revision, most of
// which keep the roots. It returns nil when there is nothing to write.
func (n *Node) SaveBundle() error {
	n.saveMu.Lock()
	defer n.saveMu.Unlock()
	n.mu.Lock()
	roots, saved := n.latest, n.saved
	n.mu.Unlock()
	if roots == nil || slices.EqualFunc(roots, saved, (*x509.Certificate).Equal) {
		return nil
	}
	if err := saveBundle(n.cfg.DataDir, roots); err != nil {
		return fmt.Errorf("saving bundle: %w", err)
	}
	n.setSaved(roots)
	return nil
}

// setSaved records the roots bundle.pem now holds.
func (n *Node) setSaved(roots []*x509.Certificate) {
	n.mu.Lock()
	n.saved = roots
	n.mu.Unlock()
}

// RenewNow asks Run to renew the node SVID (agent/rotate decides when). It
// never blocks.
func (n *Node) RenewNow() {
	select {
	case n.renew <- struct{}{}:
	default:
	}
}

// Run renews the node SVID each time RenewNow asks, retrying with backoff
// until it succeeds, until ctx ends; then it returns nil. It returns an
// error only when the CA refuses the node's identity for good
// (nodeapi.NodeRejection). Call it after Obtain.
func (n *Node) Run(ctx context.Context) error {
	b := backoff.New(n.cfg.Backoff)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-n.renew:
		}
		err := backoff.Retry(ctx, n.cfg.Clock, b, n.renewOnce, func(err error, d time.Duration) {
			n.rotationFailed()
			n.renewBackoff(d)
			n.log.Warn("renewing node SVID failed; retrying", logkey.Error, err, logkey.RetryIn, d)
		})
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("renewing node SVID: %w", err)
		}
	}
}

func (n *Node) renewOnce(ctx context.Context) error {
	key := n.refusedKey
	n.refusedKey = nil
	if key == nil {
		var err error
		if key, err = n.cfg.NewKey(); err != nil {
			return err
		}
	}
	fresh, err := n.cfg.CA.RenewNodeSVID(ctx, key)
	if status.Code(err) == codes.ResourceExhausted {
		n.refusedKey = key
	}
	if _, ok := nodeapi.NodeRejection(err); ok {
		return backoff.Permanent(err)
	}
	if err != nil {
		return err
	}
	if err := n.save(n.cfg.DataDir, fresh); err != nil {
		return fmt.Errorf("saving node identity: %w", err)
	}
	n.mu.Lock()
	n.src.SetSVID(fresh)
	n.mu.Unlock()
	n.rotated()
	n.renewBackoff(0)
	leaf := fresh.Certificates[0]
	n.log.Info("node SVID renewed", logkey.SPIFFEID, fresh.ID.String(), logkey.Serial, nodeapi.FormatSerial(leaf.SerialNumber), logkey.NotAfter, leaf.NotAfter)
	n.cfg.Renewed(fresh)
	return nil
}

// Rejected records that the CA refused the node's identity for good (err
// carries nodeapi's reason): it logs one ERROR line that says what to do,
// moves the stored identity aside (RejectedSVIDFile) so that no restart
// uses it again, and makes Ready fail from now on. Calls after the first
// do nothing.
func (n *Node) Rejected(err error) {
	reason, _ := nodeapi.NodeRejection(err)
	n.mu.Lock()
	if n.rejecting {
		n.mu.Unlock()
		return
	}
	n.rejecting = true
	var id spiffeid.ID
	if n.src != nil {
		if svid, _ := n.src.GetX509SVID(); svid != nil {
			id = svid.ID
		}
	}
	n.mu.Unlock()
	msg := fmt.Sprintf("node identity %s %s; %s", id, reasonText(reason), whatToDo(id))
	if err := setAside(n.cfg.DataDir); err != nil {
		msg += fmt.Sprintf(" (moving it aside failed: %v)", err)
	}
	n.log.Error(msg, logkey.SPIFFEID, id.String(), logkey.Reason, string(reason))
	// Not ready only now: whoever sees the agent not ready finds the
	// ERROR line that says why, and the identity already set aside.
	n.mu.Lock()
	n.rejection = fmt.Errorf("node identity %s was rejected by the CA (%s): %s", id, reason, whatToDo(id))
	n.mu.Unlock()
}

// reasonText says what a rejection means, for the log.
func reasonText(r nodeapi.Reason) string {
	switch r {
	case nodeapi.ReasonEvicted:
		return "was evicted by the CA"
	case nodeapi.ReasonSuperseded:
		return "was superseded: the node name was attested again with a newer join token"
	default:
		return "is unknown to the CA (it was evicted, or the CA's data predates it)"
	}
}

// joinTokenPrefix is the path of join-token node IDs before the node name.
const joinTokenPrefix = "/signet/agent/join_token/"

// whatToDo tells the operator how to give the node an identity again.
func whatToDo(id spiffeid.ID) string {
	if strings.HasPrefix(id.Path(), "/signet/agent/k8s_psat/") {
		// Readiness fails, the kubelet restarts the container, and a
		// new start attests again with the pod's token.
		return "restart the agent pod: it attests again with its service account token (k8s_psat)"
	}
	if name, ok := strings.CutPrefix(id.Path(), joinTokenPrefix); ok && name != "" {
		return fmt.Sprintf("create a new join token with `signet token create --node-name %s` and restart the agent with --join-token", name)
	}
	return "create a new join token for this node and restart the agent with --join-token"
}

// Ready returns nil while the node holds an identity the CA accepts and
// that has not expired, and otherwise an error saying what is missing.
func (n *Node) Ready() error {
	n.mu.Lock()
	rejection, src := n.rejection, n.src
	n.mu.Unlock()
	if rejection != nil {
		return rejection
	}
	if src == nil {
		return errors.New("no node identity yet: attesting to the CA")
	}
	svid, _ := src.GetX509SVID()
	if notAfter := svid.Certificates[0].NotAfter; !n.cfg.Clock.Now().Before(notAfter) {
		return fmt.Errorf("node SVID expired at %s", notAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

func (n *Node) rotated() {
	if n.cfg.Metrics.Rotated != nil {
		n.cfg.Metrics.Rotated()
	}
}

func (n *Node) rotationFailed() {
	if n.cfg.Metrics.RotationFailed != nil {
		n.cfg.Metrics.RotationFailed()
	}
}

func (n *Node) attestBackoff(d time.Duration) {
	if n.cfg.Metrics.AttestBackoff != nil {
		n.cfg.Metrics.AttestBackoff(d)
	}
}

func (n *Node) renewBackoff(d time.Duration) {
	if n.cfg.Metrics.RenewBackoff != nil {
		n.cfg.Metrics.RenewBackoff(d)
	}
}

// load reads the stored node SVID (none with MemoryOnly).
func (n *Node) load(dir string) (*x509svid.SVID, error) {
	if n.cfg.MemoryOnly {
		return nil, fmt.Errorf("node identity kept in memory only: %w", os.ErrNotExist)
	}
	return loadNodeSVID(dir, n.cfg.KeyPassphrase)
}

// save stores the node SVID (nothing with MemoryOnly).
func (n *Node) save(dir string, svid *x509svid.SVID) error {
	if n.cfg.MemoryOnly {
		return nil
	}
	return saveNodeSVID(dir, n.cfg.KeyPassphrase, n.cfg.KeyKDFIterations, svid)
}
