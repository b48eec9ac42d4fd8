package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// healthEvery is how often ServeHealth re-evaluates Ready.
const healthEvery = time.Second

// Ready reports whether the agent can serve workloads: it holds a node SVID
// that has not expired and a trust bundle from the CA. It returns nil when
// ready, and an error saying what is missing otherwise. It is cheap and
// safe for concurrent use.
func (a *Agent) Ready(context.Context) error {
	notAfter := a.nodeLeafNotAfter()
	switch now := a.cfg.Clock.Now(); {
	case notAfter.IsZero():
		return errors.New("no node identity yet: attesting to the CA")
	case !now.Before(notAfter):
		return fmt.Errorf("node SVID expired at %s", notAfter.UTC().Format(time.RFC3339))
	case !a.cache.Ready():
		return errors.New("no trust bundle from the CA yet")
	}
	return nil
}

// nodeLeafNotAfter is the node SVID's expiry, zero before the agent has
// one.
func (a *Agent) nodeLeafNotAfter() time.Time {
	a.mu.Lock()
	src := a.src
	a.mu.Unlock()
	if src == nil {
		return time.Time{}
	}
	svid, err := src.GetX509SVID()
	if err != nil || svid == nil || len(svid.Certificates) == 0 {
		return time.Time{}
	}
	return svid.Certificates[0].NotAfter
}

// ServeHealth keeps hs, the gRPC health service registered on the agent
// socket (which `signet healthcheck --socket` asks), in step with Ready
// until ctx ends. It returns nil.
func (a *Agent) ServeHealth(ctx context.Context, hs *health.Server) error {
	t := a.cfg.Clock.NewTicker(healthEvery)
	defer t.Stop()
	var last error
	for first := true; ; first = false {
		err := a.Ready(ctx)
		st := healthpb.HealthCheckResponse_SERVING
		if err != nil {
			st = healthpb.HealthCheckResponse_NOT_SERVING
		}
		hs.SetServingStatus("", st)
		switch {
		case err == nil && (first || last != nil):
			a.log.Info("ready")
		case err != nil && last == nil && !first:
			a.log.Warn("not ready", "error", err)
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
