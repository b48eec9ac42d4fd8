package api

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/signet-mesh/signet/ca/registration"
	"github.com/signet-mesh/signet/ca/store"
)

// toStatus turns an error from the layers below into a gRPC status: the one
// place where internal errors are mapped and logged. Validation errors keep
// their message (it is written for the operator); store sentinels map to
// their codes; anything else is Internal, logged with its detail and shown
// to the caller without it.
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
	}
	log.ErrorContext(ctx, "request failed", logOp, what, logError, err)
	return status.Error(codes.Internal, what+": internal error")
}
