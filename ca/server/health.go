package server

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/signet-mesh/signet/ca"
	"github.com/signet-mesh/signet/ca/store"
)

// Readiness checks. A signing probe may reach an HSM or a cloud KMS, so its
// result is reused for a while; a failure is retried sooner than a success
// is repeated, so readiness comes back quickly once the key is reachable.
const (
	signOKTTL     = 10 * time.Second
	signFailTTL   = time.Second
	healthEvery   = 2 * time.Second
	healthTimeout = 5 * time.Second
)

// probeDigest is what the readiness probe signs: a fixed SHA-256 that
// nothing else ever signs, so the signature is useless outside the probe.
var probeDigest = sha256.Sum256([]byte("signet CA readiness probe; not a certificate"))

// signerCheck caches the result of the last signing probe.
type signerCheck struct {
	mu      sync.Mutex
	authID  string
	at      time.Time
	err     error
	running chan struct{} // non-nil while a probe runs
}

// Ready reports whether the CA can serve: its store answers a read
// transaction and its current X.509 signing key signs (a test digest,
// verified against the authority's certificate). It returns nil when
// ready, and an error naming what is missing otherwise. It is safe for
// concurrent use; the signing probe is shared and cached (see signOKTTL).
func (s *Server) Ready(ctx context.Context) error {
	err := s.store.View(ctx, func(tx store.Tx) error {
		_, err := tx.Revision()
		return err
	})
	if err != nil {
		return fmt.Errorf("store is not usable: %w", err)
	}
	a := s.ca.X509Authority()
	if a == nil {
		return errors.New("no active X.509 signing authority")
	}
	if now := s.cfg.Clock.Now(); !now.Before(a.Certificate.NotAfter) {
		return fmt.Errorf("signing authority %s expired at %s", a.ID, a.Certificate.NotAfter.UTC().Format(time.RFC3339))
	}
	return s.signer.check(ctx, a)
}

// check returns the cached probe result for a, or runs a probe (one at a
// time) and waits for it or for ctx.
func (c *signerCheck) check(ctx context.Context, a *ca.X509Authority) error {
	for {
		c.mu.Lock()
		if c.authID == a.ID && !c.at.IsZero() {
			ttl := signOKTTL
			if c.err != nil {
				ttl = signFailTTL
			}
			if time.Since(c.at) < ttl {
				err := c.err
				c.mu.Unlock()
				return err
			}
		}
		if c.running == nil {
			done := make(chan struct{})
			c.running = done
			go func() {
				err := probeSigner(a)
				c.mu.Lock()
				c.authID, c.at, c.err, c.running = a.ID, time.Now(), err, nil
				c.mu.Unlock()
				close(done)
			}()
		}
		running := c.running
		c.mu.Unlock()
		select {
		case <-running:
		case <-ctx.Done():
			return fmt.Errorf("signing key of authority %s did not answer: %w", a.ID, ctx.Err())
		}
	}
}

// probeSigner signs probeDigest with a's key and verifies the signature
// with its certificate's public key: the key is reachable and is the
// certificate's.
func probeSigner(a *ca.X509Authority) error {
	sig, err := a.Signer.Sign(rand.Reader, probeDigest[:], crypto.SHA256)
	if err != nil {
		return fmt.Errorf("signing key of authority %s cannot sign: %w", a.ID, err)
	}
	ok := true
	switch pub := a.Certificate.PublicKey.(type) {
	case *ecdsa.PublicKey:
		ok = ecdsa.VerifyASN1(pub, probeDigest[:], sig)
	case *rsa.PublicKey:
		ok = rsa.VerifyPKCS1v15(pub, crypto.SHA256, probeDigest[:], sig) == nil
	}
	if !ok {
		return fmt.Errorf("signing key of authority %s does not match its certificate", a.ID)
	}
	return nil
}

// watchHealth keeps the gRPC health service of the admin socket (which
// `signet healthcheck --admin-socket` asks) in step with Ready, until ctx
// ends.
func (s *Server) watchHealth(ctx context.Context, hs *health.Server) error {
	t := s.cfg.Clock.NewTicker(healthEvery)
	defer t.Stop()
	var last error
	for first := true; ; first = false {
		cctx, cancel := context.WithTimeout(ctx, healthTimeout)
		err := s.Ready(cctx)
		cancel()
		st := healthpb.HealthCheckResponse_SERVING
		if err != nil {
			st = healthpb.HealthCheckResponse_NOT_SERVING
		}
		hs.SetServingStatus("", st)
		switch {
		case err != nil && ctx.Err() == nil && (first || last == nil):
			s.log.Warn("not ready", logError, err)
		case err == nil && last != nil:
			s.log.Info("ready again")
		}
		last = err
		select {
		case <-ctx.Done():
			hs.Shutdown()
			return nil
		case <-t.C():
		}
	}
}
