package server

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/signet-mesh/signet/ca/audit"
	"github.com/signet-mesh/signet/ca/store"
	"github.com/signet-mesh/signet/internal/clock"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

// TestCheckpointAfterRecords: once checkpointRecords records follow the
// newest checkpoint, the CA signs one at its next poll instead of waiting
// out checkpointEvery, so its next start verifies only what follows. A
// busy CA (a fleet re-minting after a root rotation) otherwise made every
// agent wait on the verifying of the whole ten minutes after a restart.
func TestCheckpointAfterRecords(t *testing.T) {
	const records = 10
	clk := clock.NewFake(time.Now())
	c := startCA(t, testOpts{clock: clk, noSync: true, checkpointRecords: records})
	ctx := context.Background()
	for i := range records {
		if _, err := c.admin.CreateJoinToken(ctx, &adminv1.CreateJoinTokenRequest{NodeName: fmt.Sprintf("n%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	var head uint64
	if err := c.srv.Store().View(ctx, func(tx store.Tx) (err error) {
		head, _, err = tx.AuditHead()
		return err
	}); err != nil {
		t.Fatal(err)
	}

	// Move the CA's clock a poll at a time, short of checkpointEvery, until
	// a checkpoint follows the tokens' records.
	var moved time.Duration
	for cp := lastCheckpoint(t, c.srv); cp <= head; cp = lastCheckpoint(t, c.srv) {
		if moved+checkpointPoll >= checkpointEvery {
			t.Fatalf("no checkpoint after record %d within %v of the CA's clock (newest: %d); want one at the first poll after %d records", head, moved, cp, records)
		}
		clk.Advance(checkpointPoll)
		moved += checkpointPoll
		time.Sleep(100 * time.Millisecond) // real time for the CA's loop to run
	}

	cp := lastCheckpoint(t, c.srv)
	var recs []audit.Record
	if err := audit.Scan(ctx, c.srv.Store(), cp, cp, func(r audit.Record) error {
		recs = append(recs, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Type != audit.TypeCheckpoint || recs[0].Details[audit.DetailReason] != audit.ReasonPeriodic {
		t.Fatalf("record %d = %+v, want a periodic checkpoint", cp, recs)
	}
	rep, err := audit.VerifyTail(ctx, c.srv.Store(), mustKeys(t, c.srv))
	if err != nil {
		t.Fatal(err)
	}
	if rep.FirstSeq != cp {
		t.Errorf("a start verifies from record %d, want %d (the new checkpoint)", rep.FirstSeq, cp)
	}
}

func lastCheckpoint(t *testing.T, s *Server) (seq uint64) {
	t.Helper()
	if err := s.Store().View(context.Background(), func(tx store.Tx) (err error) {
		seq, err = audit.LastCheckpoint(tx)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return seq
}
