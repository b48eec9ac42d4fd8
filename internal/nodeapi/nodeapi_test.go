package nodeapi

import (
	"errors"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

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

func TestCheckJWTAudience(t *testing.T) {
	many := make([]string, MaxJWTAudiences+1)
	for i := range many {
		many[i] = "a"
	}
	tests := []struct {
		name     string
		audience []string
		wantErr  string
	}{
		{"one", []string{"db"}, ""},
		{"at the limits", append(make([]string, 0), many[:MaxJWTAudiences]...), ""},
		{"longest audience", []string{strings.Repeat("x", MaxJWTAudienceBytes)}, ""},
		{"none", nil, "audience is required"},
		{"too many", many, "17 audiences exceed the limit of 16"},
		{"too long", []string{"db", strings.Repeat("x", MaxJWTAudienceBytes+1)}, "audience 2 is 513 bytes, over the limit of 512"},
		{"empty", []string{"db", ""}, "audience 2 is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckJWTAudience(tt.audience)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("CheckJWTAudience: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("CheckJWTAudience = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestRetryHint(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want time.Duration
	}{
		{name: "overloaded", err: Overloaded("busy", 1500*time.Millisecond), want: 1500 * time.Millisecond},
		{name: "wrapped", err: fmt.Errorf("client: minting SVIDs: %w", Overloaded("busy", 2*time.Second)), want: 2 * time.Second},
		{name: "no hint", err: status.Error(codes.ResourceExhausted, "busy"), want: 0},
		{name: "other code", err: status.Error(codes.Internal, "x"), want: 0},
		{name: "not a status", err: errors.New("x"), want: 0},
		{name: "nil", err: nil, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := RetryHint(tt.err); got != tt.want {
				t.Errorf("RetryHint = %s, want %s", got, tt.want)
			}
			if tt.want > 0 && status.Code(tt.err) != codes.ResourceExhausted {
				t.Errorf("code %s, want ResourceExhausted", status.Code(tt.err))
			}
		})
	}
}
