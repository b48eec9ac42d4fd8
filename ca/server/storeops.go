package server

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strconv"

	"google.golang.org/grpc"

	"github.com/signet-mesh/signet/ca/api"
	"github.com/signet-mesh/signet/ca/audit"
	"github.com/signet-mesh/signet/ca/store"
	"github.com/signet-mesh/signet/internal/clock"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

// The store's own events in the audit trail: schema migrations, backups
// (ca/api's StoreService) and restores.

// migrationAudit is store.Options.OnMigrate: the migration's audit record,
// in the migration's transaction.
func migrationAudit(clk clock.Clock) func(tx store.Tx, from, to uint64) error {
	return func(tx store.Tx, from, to uint64) error {
		_, err := audit.Append(tx, audit.Record{
			Type:    audit.TypeStoreMigrated,
			Outcome: audit.OutcomeSuccess,
			Details: map[string]string{
				audit.DetailFromVersion: strconv.FormatUint(from, 10),
				audit.DetailToVersion:   strconv.FormatUint(to, 10),
			},
		}, clk.Now())
		return err
	}
}

// registerStoreService serves the store API (backups) on the admin
// socket.
func (s *Server) registerStoreService(adminSrv *grpc.Server) {
	b, _ := s.store.(store.Backuper) // a backend without backups answers Unimplemented
	adminv1.RegisterStoreServiceServer(adminSrv, api.NewStoreService(api.StoreConfig{
		Store: s.store, Backuper: b, TrustDomain: s.cfg.TrustDomain, Clock: s.cfg.Clock, Logger: s.cfg.Logger,
	}))
}

// recordRestore puts a restore (store.RestoreBolt, etcdstore.Restore) in the audit trail on
// the first start after it, in one transaction: the unused join tokens of
// the backup are revoked (one of them may have been spent after the
// backup, and spending it again would attest a second node under its
// name), a store.restored record says what the store lacks (the SVIDs
// issued and the records written between the backup and now), and a
// checkpoint with reason "restore" signs the result. A store restored
// from another trust domain's backup is refused.
func (s *Server) recordRestore(ctx context.Context) error {
	var ri *store.RestoreInfo
	err := s.store.View(ctx, func(tx store.Tx) (err error) {
		ri, err = store.ReadRestoreInfo(tx)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("server: reading the restore record: %w", err)
	}
	if ri.AuditedSeq != 0 {
		return nil
	}
	if td := ri.Backup.TrustDomain; td != "" && td != s.cfg.TrustDomain.Name() {
		return fmt.Errorf("server: the store was restored from a backup of trust domain %q, but this server is configured for %q: start it with --trust-domain %s", td, s.cfg.TrustDomain.Name(), td)
	}
	signer, keyID, err := s.rot.CheckpointSigner(ctx)
	if err != nil {
		return fmt.Errorf("server: recording the restore: %w", err)
	}
	now := s.cfg.Clock.Now()
	var revoked int
	err = s.store.Update(ctx, func(tx store.Tx) error {
		revoked = 0
		toks, err := tx.ListJoinTokens()
		if err != nil {
			return err
		}
		for _, t := range toks {
			if err := tx.DeleteJoinToken(t.Hash); err != nil {
				return err
			}
			if _, err := audit.Append(tx, audit.Record{
				Type: audit.TypeTokenRevoked, Outcome: audit.OutcomeSuccess, Subject: t.SPIFFEID,
				Details: map[string]string{audit.DetailTokenID: t.ID, audit.DetailNodeName: path.Base(t.SPIFFEID), audit.DetailReason: audit.ReasonStoreRestored},
			}, now); err != nil {
				return err
			}
			revoked++
		}
		b := ri.Backup
		if _, err := audit.Append(tx, audit.Record{
			Type:    audit.TypeStoreRestored,
			Outcome: audit.OutcomeSuccess,
			Details: map[string]string{
				audit.DetailBackupCreatedAt:     audit.FormatTime(b.CreatedAt),
				audit.DetailBackupAuditHeadSeq:  strconv.FormatUint(b.AuditHeadSeq, 10),
				audit.DetailBackupAuditHeadHash: b.AuditHeadHash,
				audit.DetailBackupSchemaVersion: strconv.FormatUint(b.SchemaVersion, 10),
				audit.DetailRestoredAt:          audit.FormatTime(ri.RestoredAt),
				audit.DetailSVIDGapFrom:         audit.FormatTime(b.CreatedAt),
				audit.DetailSVIDGapUntil:        audit.FormatTime(now),
				audit.DetailTokensRevoked:       strconv.Itoa(revoked),
			},
		}, now); err != nil {
			return err
		}
		cp, err := audit.Checkpoint(tx, audit.CheckpointParams{Signer: signer, KeyID: keyID, Reason: audit.ReasonRestore}, now)
		if err != nil {
			return err
		}
		done := *ri
		done.AuditedSeq = cp.Seq
		return store.WriteRestoreInfo(tx, &done)
	})
	if err != nil {
		return fmt.Errorf("server: recording the restore in the audit trail: %w", err)
	}
	s.log.Warn("first start on a store restored from a backup: SVIDs issued and audit records written after the backup are not in it; unused join tokens were revoked",
		logBackupCreatedAt, audit.FormatTime(ri.Backup.CreatedAt), logSeq, ri.Backup.AuditHeadSeq, logTokens, revoked)
	return nil
}
