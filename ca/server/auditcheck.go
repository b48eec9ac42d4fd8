package server

import (
	"context"
	"errors"

	"github.com/signet-mesh/signet/ca/audit"
	"github.com/signet-mesh/signet/ca/rotation"
)

// checkAuditChain verifies the audit log from its newest checkpoint to its
// head (audit.VerifyTail) when the server starts. A record that is missing
// or altered is logged at ERROR, naming the first bad seq, and shown by
// the signet_audit_chain_ok and signet_audit_chain_first_bad_seq metrics;
// the server starts all the same (refusing to issue would not bring the
// record back), and `signet audit verify` names the same seq.
func (s *Server) checkAuditChain(ctx context.Context) {
	keys, err := rotation.CheckpointKeys(ctx, s.store)
	var rep audit.Report
	if err == nil {
		rep, err = audit.VerifyTail(ctx, s.store, keys)
	}
	var ve *audit.VerifyError
	switch {
	case errors.As(err, &ve):
		s.cfg.Metrics.setAuditChain(false, ve.FirstBad())
		s.log.Error("audit chain is broken: a record is missing or was altered; the trail cannot be trusted from this record on (see signet audit verify)",
			logSeq, ve.FirstBad(), logReason, ve.Reason)
	case err != nil:
		s.cfg.Metrics.setAuditChain(false, 0)
		s.log.Error("checking the audit chain", logError, err)
	default:
		s.cfg.Metrics.setAuditChain(true, 0)
		s.log.Info("audit chain verified", logFromSeq, rep.FirstSeq, logToSeq, rep.LastSeq, logRecords, rep.Records)
	}
}
