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

// checkpointRecords is how many records may follow the newest checkpoint
// before the CA signs another, without waiting for checkpointEvery. Every
// start verifies the records after the newest checkpoint before it serves
// (audit.VerifyTail), so the count, not the time, bounds how long a
// restart takes: a 10,000-node CA re-minting after a root rotation writes
// a few hundred thousand records in ten minutes, a few seconds of
// verifying while every agent waits. 20,000 records verify in about 0.1 s.
const checkpointRecords = 20_000

// checkpointPoll is how often the CA counts the records after its newest
// checkpoint: one read transaction.
const checkpointPoll = 10 * time.Second

// checkpointLoop signs the audit log's head every checkpointEvery, or
// sooner once checkpointRecords records follow the newest checkpoint,
// unless the head already is a checkpoint (nothing happened since).
func (s *Server) checkpointLoop(ctx context.Context) error {
	t := s.cfg.Clock.NewTicker(checkpointPoll)
	defer t.Stop()
	last := s.cfg.Clock.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C():
		}
		if !s.Leading() {
			continue // the elected replica signs checkpoints
		}
		now := s.cfg.Clock.Now()
		if now.Sub(last) < checkpointEvery {
			n, err := s.recordsSinceCheckpoint(ctx)
			if err != nil {
				if ctx.Err() == nil {
					s.log.Error("counting the audit records since the last checkpoint", logError, err)
				}
				continue
			}
			if n < s.checkpointRecords {
				continue
			}
		}
		if err := s.checkpoint(ctx); err != nil {
			if ctx.Err() == nil {
				s.log.Error("signing audit checkpoint", logError, err)
			}
			continue
		}
		last = now
	}
}

// recordsSinceCheckpoint is how many audit records follow the newest
// checkpoint (all of them when there is none).
func (s *Server) recordsSinceCheckpoint(ctx context.Context) (uint64, error) {
	var head, last uint64
	err := s.store.View(ctx, func(tx store.Tx) (err error) {
		if head, _, err = tx.AuditHead(); err != nil {
			return err
		}
		last, err = audit.LastCheckpoint(tx)
		return err
	})
	if err != nil || head < last {
		return 0, err
	}
	return head - last, nil
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
