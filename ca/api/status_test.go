package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"syscall"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/signet-mesh/signet/ca/audit"
	"github.com/signet-mesh/signet/ca/store"
	"github.com/signet-mesh/signet/internal/nodeapi"
)

// TestToStatus: an error the caller can act on keeps a code and a message
// that name its cause; only the rest is an internal error.
func TestToStatus(t *testing.T) {
	tests := []struct {
		name string
		err  error
		code codes.Code
		msg  string
	}{
		{"record too large", fmt.Errorf("creating entry %q: %w: a 70000-byte entries record, the limit is 65536", "e1", store.ErrTooLarge),
			codes.InvalidArgument, "larger than the store takes"},
		{"audit record refused", fmt.Errorf("%w: 20000-byte record, more than 16384", audit.ErrInvalidRecord),
			codes.InvalidArgument, "20000-byte record"},
		{"disk full", fmt.Errorf("committing transaction: write signet.db: %w", syscall.ENOSPC),
			codes.ResourceExhausted, "the CA's disk is full"},
		{"conflict", fmt.Errorf("appending audit record 7: %w", store.ErrConflict),
			codes.Aborted, "try again"},
		{"broken audit chain", fmt.Errorf("exporting: %w", &audit.VerifyError{Seq: 5, Missing: 5, Err: audit.ErrMissing, Reason: "record seq 5 is missing from the log"}),
			codes.DataLoss, "record seq 5 is missing"},
		{"store unavailable", fmt.Errorf("committing a transaction: etcd at 127.0.0.1:2379: %w: etcdserver: no leader", store.ErrUnavailable),
			codes.Unavailable, "etcd at 127.0.0.1:2379"},
		{"not found", fmt.Errorf("getting entry: %w", store.ErrNotFound), codes.NotFound, "not found"},
		{"something else", fmt.Errorf("bbolt: page 7 is corrupt"), codes.Internal, "internal error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := toStatus(context.Background(), slog.New(slog.DiscardHandler), "doing it", tt.err)
			if status.Code(err) != tt.code || !strings.Contains(status.Convert(err).Message(), tt.msg) {
				t.Errorf("toStatus = %v, want %s containing %q", err, tt.code, tt.msg)
			}
			if got, want := nodeapi.IsStoreUnavailable(err), errors.Is(tt.err, store.ErrUnavailable); got != want {
				t.Errorf("IsStoreUnavailable = %v, want %v", got, want)
			}
		})
	}
}
