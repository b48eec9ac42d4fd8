package api

import (
	"context"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/signet-mesh/signet/ca/audit"
	"github.com/signet-mesh/signet/ca/store"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

// MaxDeleteEntries bounds one DeleteEntries transaction, as
// MaxEntriesPerCall bounds CreateEntries.
const MaxDeleteEntries = MaxEntriesPerCall

// EntryBatchService implements adminv1.EntryBatchServiceServer on the
// admin socket, authorized as AdminService is (its ServerOptions).
type EntryBatchService struct {
	adminv1.UnimplementedEntryBatchServiceServer
	admin *AdminService
}

// EntryBatch returns the bulk entry service sharing s's store and clock.
func (s *AdminService) EntryBatch() *EntryBatchService { return &EntryBatchService{admin: s} }

// DeleteEntries implements adminv1.EntryBatchServiceServer: every entry
// goes, each with its audit record, in one transaction, or none does.
func (b *EntryBatchService) DeleteEntries(ctx context.Context, req *adminv1.DeleteEntriesRequest) (*adminv1.DeleteEntriesResponse, error) {
	s := b.admin
	ids := req.GetIds()
	switch {
	case len(ids) == 0:
		return nil, status.Error(codes.InvalidArgument, "ids: no entry ids given")
	case len(ids) > MaxDeleteEntries:
		return nil, status.Errorf(codes.InvalidArgument, "ids: %d entries exceed the limit of %d per call", len(ids), MaxDeleteEntries)
	}
	seen := make(map[string]bool, len(ids))
	for i, id := range ids {
		switch {
		case id == "":
			return nil, status.Errorf(codes.InvalidArgument, "ids: id %d is empty", i+1)
		case seen[id]:
			return nil, status.Errorf(codes.InvalidArgument, "ids: entry %q is listed twice", id)
		}
		seen[id] = true
	}
	actor, now := adminActor(ctx), s.cfg.Clock.Now()
	err := s.cfg.Store.Update(ctx, func(tx store.Tx) error {
		for _, id := range ids {
			e, err := tx.GetEntry(id)
			if isNotFound(err) {
				return status.Errorf(codes.NotFound, "entry %q not found: nothing was deleted", id)
			}
			if err != nil {
				return err
			}
			if err := tx.DeleteEntry(id); err != nil {
				return fmt.Errorf("deleting entry %s: %w", id, err)
			}
			if err := recordAudit(tx, entryRecord(audit.TypeEntryDeleted, actor, e, "DeleteEntries"), now); err != nil {
				return err
			}
		}
		_, err := tx.NextRevision()
		return err
	})
	if err != nil {
		return nil, toStatus(ctx, s.log, "deleting entries", err)
	}
	s.log.InfoContext(ctx, "entries deleted", logCount, len(ids))
	return &adminv1.DeleteEntriesResponse{Deleted: int32(len(ids))}, nil
}
