package server

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"

	"github.com/signet-mesh/signet/ca/audit"
	"github.com/signet-mesh/signet/ca/rotation"
	"github.com/signet-mesh/signet/ca/store"
)

// checkAuditChain verifies the audit log from its newest checkpoint to its
// head (audit.VerifyTail) when the server starts. A record that is missing
// or altered is logged at ERROR, naming the first bad seq, and shown by
// the signet_audit_chain_ok and signet_audit_chain_first_bad_seq metrics;
// the server starts all the same (refusing to issue would not bring the
// record back), and `signet audit verify` names the same seq.
func (s *Server) checkAuditChain(ctx context.Context) {
	keys, err := checkpointKeys(ctx, s.store)
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

// checkpointKeys are the keys that may have signed checkpoints: every
// root's, retired ones included.
func checkpointKeys(ctx context.Context, st store.Store) (audit.Keys, error) {
	keys := map[string]crypto.PublicKey{}
	err := st.View(ctx, func(tx store.Tx) error {
		auths, err := tx.ListAuthorities()
		if err != nil {
			return err
		}
		for _, a := range auths {
			if a.Kind != store.KindRoot {
				continue
			}
			c, err := x509.ParseCertificate(a.CertDER)
			if err != nil {
				return err
			}
			keys[rotation.CheckpointKeyID(c)] = c.PublicKey
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return audit.KeyMap(keys), nil
}
