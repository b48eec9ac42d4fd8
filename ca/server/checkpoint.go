package server

import (
	"context"
	"time"

	"github.com/signet-mesh/signet/ca/audit"
	"github.com/signet-mesh/signet/ca/store"
)

// checkpointEvery is how often the CA signs the audit log's head on its
// own (exports always end with a fresh checkpoint too): a copy of the store
// taken at any time is at most this far from a signed head.
const checkpointEvery = 10 * time.Minute

// checkpointLoop signs the audit log's head periodically, unless the head
// already is a checkpoint (nothing happened since).
func (s *Server) checkpointLoop(ctx context.Context) error {
	t := s.cfg.Clock.NewTicker(checkpointEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C():
			if !s.Leading() {
				continue // the elected replica signs checkpoints
			}
			if err := s.checkpoint(ctx); err != nil && ctx.Err() == nil {
				s.log.Error("signing audit checkpoint", logError, err)
			}
		}
	}
}

func (s *Server) checkpoint(ctx context.Context) error {
	signer, keyID, err := s.rot.CheckpointSigner(ctx)
	if err != nil {
		return err
	}
	return s.store.Update(ctx, func(tx store.Tx) error {
		head, ok, err := audit.Head(tx)
		if err != nil {
			return err
		}
		if !ok || head.Type == audit.TypeCheckpoint {
			return nil
		}
		_, err = audit.Checkpoint(tx, audit.CheckpointParams{Signer: signer, KeyID: keyID, Reason: audit.ReasonPeriodic}, s.cfg.Clock.Now())
		return err
	})
}
