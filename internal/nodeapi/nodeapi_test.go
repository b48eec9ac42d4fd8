package nodeapi

import (
	"errors"
	"fmt"
	"math/big"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestNodeRejection(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		reason Reason
		ok     bool
	}{
		{"evicted", RejectNode(ReasonEvicted, "node x was evicted"), ReasonEvicted, true},
		{"superseded, wrapped", fmt.Errorf("renewing: %w", RejectNode(ReasonSuperseded, "old")), ReasonSuperseded, true},
		{"unknown", RejectNode(ReasonUnknown, "who"), ReasonUnknown, true},
		{"plain permission denied is not a rejection", status.Error(codes.PermissionDenied, "token used"), "", false},
		{"unavailable", status.Error(codes.Unavailable, "down"), "", false},
		{"not a status", errors.New("boom"), "", false},
		{"nil", nil, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reason, ok := NodeRejection(tt.err)
			if reason != tt.reason || ok != tt.ok {
				t.Errorf("NodeRejection() = %q, %v; want %q, %v", reason, ok, tt.reason, tt.ok)
			}
		})
	}
	if c := status.Code(RejectNode(ReasonEvicted, "x")); c != codes.PermissionDenied {
		t.Errorf("RejectNode code = %v, want PermissionDenied", c)
	}
}

func TestServerIDAndSerial(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	if got, want := ServerID(td).String(), "spiffe://example.org/signet/server"; got != want {
		t.Errorf("ServerID = %q, want %q", got, want)
	}
	if got, want := FormatSerial(big.NewInt(255)), "000000000000000000000000000000ff"; got != want {
		t.Errorf("FormatSerial = %q, want %q", got, want)
	}
}
