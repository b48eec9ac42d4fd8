// Package nodeapi holds what both ends of the node API rely on: the CA's
// handlers (ca/api) and the agent's client (agent/client). Keeping these
// once, in a leaf that imports neither side, means the two cannot drift:
// the mint batch limit, the server's SPIFFE ID, serial formatting, the
// limits on SPIFFE IDs and JWT-SVID audiences (CheckJWTAudience), and the
// reasons the CA refuses a node's identity for good.
//
// A node whose identity the CA refuses for good (evicted, superseded by a
// newer attestation, unknown) gets PermissionDenied with a
// google.rpc.ErrorInfo naming the reason; the agent reads it with
// NodeRejection and stops retrying that identity instead of looping:
//
//	if reason, ok := nodeapi.NodeRejection(err); ok {
//		// drop the stored identity, report not ready, say what to do
//	}
package nodeapi

import (
	"errors"
	"fmt"
	"math/big"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// MaxMintBatch bounds one MintX509SVIDs call: large enough that an agent
// with 1000 new entries needs only a couple of calls, small enough that one
// call cannot hold a CA CPU for long. The agent splits at this size and the
// CA refuses anything larger.
const MaxMintBatch = 500

// MaxSyncMessageBytes bounds one SyncEntries message: an update larger
// than this (the first full state of a node with thousands of entries) is
// split across messages (SyncEntriesResponse.more), so no message grows
// with the registry and every one stays far below gRPC's 4 MiB default.
// One entry (at most store.MaxRecordBytes) always fits.
const MaxSyncMessageBytes = 1 << 20

// Limits both ends apply to what they send and accept, so that a request
// the agent lets through is one the CA takes.
const (
	// MaxSPIFFEIDBytes and MaxTrustDomainBytes are the SPIFFE ID
	// standard's limits (section 2.3: a SPIFFE ID is at most 2048 bytes,
	// its trust domain at most 255).
	MaxSPIFFEIDBytes    = 2048
	MaxTrustDomainBytes = 255
	// MaxJWTAudiences bounds the audiences of one JWT-SVID request, and
	// MaxJWTAudienceBytes each audience: a token is a header value, and
	// its issuance record (every audience) must fit the audit log's
	// record limit.
	MaxJWTAudiences     = 16
	MaxJWTAudienceBytes = 512
)

// CheckJWTAudience checks the audiences of a JWT-SVID request against the
// limits above; the error names the limit.
func CheckJWTAudience(audience []string) error {
	switch {
	case len(audience) == 0:
		return errors.New("audience is required")
	case len(audience) > MaxJWTAudiences:
		return fmt.Errorf("%d audiences exceed the limit of %d per JWT-SVID", len(audience), MaxJWTAudiences)
	}
	for i, a := range audience {
		switch {
		case a == "":
			return fmt.Errorf("audience %d is empty", i+1)
		case len(a) > MaxJWTAudienceBytes:
			return fmt.Errorf("audience %d is %d bytes, over the limit of %d", i+1, len(a), MaxJWTAudienceBytes)
		}
	}
	return nil
}

// ServerPath is the path of the CA server's own SPIFFE ID.
const ServerPath = "/signet/server"

// ServerID returns the CA server's SPIFFE ID in td: the identity agents
// authorize when they dial the CA.
func ServerID(td spiffeid.TrustDomain) spiffeid.ID {
	id, err := spiffeid.FromPath(td, ServerPath)
	if err != nil {
		panic(err) // ServerPath is a valid constant path
	}
	return id
}

// FormatSerial renders a certificate serial as the 32 lower-case hex
// digits that the SVID index, the audit log, logs and the CLI all use.
func FormatSerial(n *big.Int) string { return fmt.Sprintf("%032x", n) }

// ErrorDomain is the google.rpc.ErrorInfo domain of signet's node API
// errors.
const ErrorDomain = "node.signet.dev"

// Reason says why the CA refuses a node's identity for good.
type Reason string

const (
	// ReasonEvicted: an operator evicted the node (`signet node evict`).
	ReasonEvicted Reason = "NODE_EVICTED"
	// ReasonSuperseded: the node name was attested again (a forced
	// token), so this older SVID no longer speaks for it.
	ReasonSuperseded Reason = "NODE_SUPERSEDED"
	// ReasonUnknown: the CA has no record of the node (a store restored
	// from before the attestation, or another CA's node).
	ReasonUnknown Reason = "NODE_UNKNOWN"
)

// RejectNode returns the PermissionDenied status the CA answers with when
// it refuses a node's identity for reason; msg is the human-readable text.
func RejectNode(reason Reason, msg string) error {
	st := status.New(codes.PermissionDenied, msg)
	if withInfo, err := st.WithDetails(&errdetails.ErrorInfo{Reason: string(reason), Domain: ErrorDomain}); err == nil {
		st = withInfo
	}
	return st.Err()
}

// NodeRejection reports whether err (possibly wrapped) is the CA refusing
// the caller's node identity for good, and why.
func NodeRejection(err error) (Reason, bool) {
	var se interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &se) {
		return "", false
	}
	st := se.GRPCStatus()
	if st.Code() != codes.PermissionDenied {
		return "", false
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Domain == ErrorDomain {
			switch r := Reason(info.Reason); r {
			case ReasonEvicted, ReasonSuperseded, ReasonUnknown:
				return r, true
			}
		}
	}
	return "", false
}

// ReasonStoreUnavailable is the ErrorInfo reason of an Unavailable the CA
// itself answers because its store cannot be reached (etcd without
// quorum), on the node and admin APIs alike: the CA is up, its store is
// not. Callers tell it from an unreachable CA (also Unavailable) by this
// reason, not by the message.
const ReasonStoreUnavailable = "STORE_UNAVAILABLE"

// StoreUnavailable returns the Unavailable status for a store that cannot
// be reached; msg names the store and what failed.
func StoreUnavailable(msg string) error {
	st := status.New(codes.Unavailable, msg)
	if withInfo, err := st.WithDetails(&errdetails.ErrorInfo{Reason: ReasonStoreUnavailable, Domain: ErrorDomain}); err == nil {
		st = withInfo
	}
	return st.Err()
}

// IsStoreUnavailable reports whether err (possibly wrapped) is
// StoreUnavailable's status.
func IsStoreUnavailable(err error) bool {
	var se interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &se) || se.GRPCStatus().Code() != codes.Unavailable {
		return false
	}
	for _, d := range se.GRPCStatus().Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Domain == ErrorDomain && info.Reason == ReasonStoreUnavailable {
			return true
		}
	}
	return false
}
