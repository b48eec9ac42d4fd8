package nodeapi

import (
	"errors"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Overloaded returns the ResourceExhausted status the CA answers with
// when it is at its bound of concurrent work (admission control) or a
// node exceeds its request rate: a google.rpc.RetryInfo says how long to
// wait. Agents read it with RetryHint and wait at least that long,
// jittered (internal/backoff's Config.Hint).
func Overloaded(msg string, retryAfter time.Duration) error {
	st := status.New(codes.ResourceExhausted, msg)
	if withInfo, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(retryAfter)}); err == nil {
		st = withInfo
	}
	return st.Err()
}

// RetryHint is the retry delay the CA asked for in err (possibly
// wrapped): the RetryInfo of a ResourceExhausted or Unavailable status,
// or 0 when there is none. Its signature fits internal/backoff's
// Config.Hint.
func RetryHint(err error) time.Duration {
	var se interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &se) {
		return 0
	}
	st := se.GRPCStatus()
	if c := st.Code(); c != codes.ResourceExhausted && c != codes.Unavailable {
		return 0
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.RetryInfo); ok && info.GetRetryDelay() != nil {
			return max(info.GetRetryDelay().AsDuration(), 0)
		}
	}
	return 0
}
