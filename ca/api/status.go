package api

import (
	"context"
	"errors"
	"log/slog"
	"syscall"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/signet-mesh/signet/ca/audit"
	"github.com/signet-mesh/signet/ca/registration"
	"github.com/signet-mesh/signet/ca/store"
	"github.com/signet-mesh/signet/internal/nodeapi"
)

// toStatus turns an error from the layers below into a gRPC status: the one
// place where internal errors are mapped and logged. Validation errors keep
// their message (it is written for the operator); store sentinels and the
// conditions a caller can act on (a record too large, a full disk, an
// unreachable etcd, a concurrent change, a broken audit chain) map to their codes with a
// message that names the cause; anything else is Internal, logged with
// its detail and shown to the caller without it.
func toStatus(ctx context.Context, log *slog.Logger, what string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, what+": canceled")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, what+": deadline exceeded")
	case registration.IsInvalid(err):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, store.ErrNotFound):
		return status.Error(codes.NotFound, what+": not found")
	case errors.Is(err, store.ErrAlreadyExists):
		return status.Error(codes.AlreadyExists, what+": already exists")
	case errors.Is(err, store.ErrTooLarge):
		return status.Error(codes.InvalidArgument, what+": the request makes a record larger than the store takes: "+err.Error())
	case errors.Is(err, audit.ErrInvalidRecord):
		return status.Error(codes.InvalidArgument, what+": the change's audit record would be refused, make the request smaller: "+err.Error())
	case errors.Is(err, syscall.ENOSPC):
		log.ErrorContext(ctx, "request failed: disk full", logOp, what, logError, err)
		return status.Error(codes.ResourceExhausted, what+": the CA's disk is full; nothing was changed")
	case errors.Is(err, store.ErrUnavailable):
		// etcd unreachable or without quorum: the caller may retry, on
		// this replica or another. The cause names etcd and its endpoints.
		log.WarnContext(ctx, "request failed: store unavailable", logOp, what, logError, err)
		return nodeapi.StoreUnavailable(what + ": the CA's store is unavailable, try again: " + err.Error())
	case errors.Is(err, store.ErrConflict):
		return status.Error(codes.Aborted, what+": a concurrent change got there first; nothing was changed, try again")
	}
	var ve *audit.VerifyError
	if errors.As(err, &ve) {
		log.ErrorContext(ctx, "audit log is broken", logOp, what, logError, err)
		return status.Error(codes.DataLoss, what+": "+err.Error())
	}
	log.ErrorContext(ctx, "request failed", logOp, what, logError, err)
	return status.Error(codes.Internal, what+": internal error")
}
