package agent

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/signet-mesh/signet/agent/internal/logkey"
)

// healthEvery is how often ServeHealth re-evaluates Ready.
const healthEvery = time.Second

// Ready reports whether the agent can serve workloads: it holds a node SVID
// that the CA has not refused and that has not expired, a trust bundle from
// the CA, and its socket (once ListenSocket made it) is still in place. It
// returns nil when ready, and an error saying what is missing otherwise.
// It is cheap and safe for concurrent use.
func (a *Agent) Ready(context.Context) error {
	if err := a.node.Ready(); err != nil {
		return err
	}
	if !a.cache.Ready() {
		return errors.New("no trust bundle from the CA yet")
	}
	return a.socket.check()
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
			if path := a.socket.path(); path != "" {
				a.log.Info("ready", logkey.Socket, path)
			} else {
				a.log.Info("ready")
			}
		case err != nil && last == nil && !first:
			a.log.Warn("not ready", logkey.Error, err)
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
