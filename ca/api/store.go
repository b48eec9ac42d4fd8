package api

import (
	"context"
	"errors"
	"log/slog"
	"strconv"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/signet-mesh/signet/ca/audit"
	"github.com/signet-mesh/signet/ca/store"
	"github.com/signet-mesh/signet/internal/clock"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

// backupChunk is the size of one BackupResponse: well under gRPC's
// default 4 MiB message limit.
const backupChunk = 256 << 10

// StoreConfig configures the store API.
type StoreConfig struct {
	// Store records the backups in the audit trail.
	Store store.Store
	// Backuper copies the store; nil answers Backup with Unimplemented.
	Backuper    store.Backuper
	TrustDomain spiffeid.TrustDomain
	Clock       clock.Clock
	Logger      *slog.Logger
}

// StoreService implements adminv1.StoreServiceServer. Serve it on the
// admin socket with AdminService.ServerOptions, which check the callers.
type StoreService struct {
	adminv1.UnimplementedStoreServiceServer
	cfg StoreConfig
	log *slog.Logger
}

// NewStoreService returns the store API with cfg's zero fields defaulted.
func NewStoreService(cfg StoreConfig) *StoreService {
	cfg.Clock = clock.OrReal(cfg.Clock)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &StoreService{cfg: cfg, log: cfg.Logger.With(logComponent, "store_api")}
}

// Backup implements adminv1.StoreServiceServer: it streams the file the
// store's Backuper writes, then records the backup in the audit trail
// (in a transaction of its own: the copy is of the instant before it).
func (s *StoreService) Backup(_ *adminv1.BackupRequest, stream adminv1.StoreService_BackupServer) error {
	ctx := stream.Context()
	if s.cfg.Backuper == nil {
		return status.Error(codes.Unimplemented, "this store cannot be backed up by signet; use the backend's own tools")
	}
	w := &chunkWriter{send: func(b []byte) error { return stream.Send(&adminv1.BackupResponse{Data: b}) }}
	h, err := s.cfg.Backuper.Backup(ctx, w, store.BackupHeader{
		TrustDomain: s.cfg.TrustDomain.Name(),
		CreatedAt:   s.cfg.Clock.Now().UTC(),
	})
	if err == nil {
		err = w.flush()
	}
	if err != nil {
		if ctx.Err() != nil || errors.Is(err, context.Canceled) {
			return status.Error(codes.Canceled, "backup: canceled")
		}
		return toStatus(ctx, s.log, "backing up the store", err)
	}
	actor := adminActor(ctx)
	err = s.cfg.Store.Update(ctx, func(tx store.Tx) error {
		return recordAudit(tx, audit.Record{
			Type:    audit.TypeStoreBackedUp,
			Outcome: audit.OutcomeSuccess,
			Actor:   actor,
			Details: map[string]string{
				audit.DetailBackupCreatedAt:    audit.FormatTime(h.CreatedAt),
				audit.DetailBackupAuditHeadSeq: strconv.FormatUint(h.AuditHeadSeq, 10),
				audit.DetailBytes:              strconv.FormatInt(w.n, 10),
			},
		}, s.cfg.Clock.Now())
	})
	if err != nil {
		return toStatus(ctx, s.log, "recording the backup", err)
	}
	s.log.InfoContext(ctx, "store backed up", logActor, actor, logAuditSeq, h.AuditHeadSeq, logBytes, w.n)
	return stream.Send(&adminv1.BackupResponse{Summary: &adminv1.BackupSummary{
		Format:        uint32(h.Format),
		Backend:       h.Backend,
		SchemaVersion: h.SchemaVersion,
		TrustDomain:   h.TrustDomain,
		CreatedAt:     h.CreatedAt.Unix(),
		AuditHeadSeq:  h.AuditHeadSeq,
		Bytes:         w.n,
	}})
}

// chunkWriter sends what is written in messages of backupChunk bytes.
type chunkWriter struct {
	send func([]byte) error
	buf  []byte
	n    int64
}

func (c *chunkWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		k := min(len(p), backupChunk-len(c.buf))
		c.buf = append(c.buf, p[:k]...)
		p = p[k:]
		written += k
		if len(c.buf) == backupChunk {
			if err := c.flush(); err != nil {
				return written, err
			}
		}
	}
	return written, nil
}

func (c *chunkWriter) flush() error {
	if len(c.buf) == 0 {
		return nil
	}
	if err := c.send(c.buf); err != nil {
		return err
	}
	c.n += int64(len(c.buf))
	c.buf = make([]byte, 0, backupChunk) // the stream may still hold the old one
	return nil
}
