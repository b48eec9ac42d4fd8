package api

import (
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	nodev1 "github.com/signet-mesh/signet/proto/signet/node/v1"
)

// NodeMetrics are optional hooks through which the node API reports what it
// issues; ca/server wires them to Prometheus. Nil fields are skipped. They
// are called from every RPC's goroutine and must be cheap and safe for
// concurrent use.
type NodeMetrics struct {
	// SVIDIssued is called once per requested SVID with its kind
	// (SVIDKind*) and outcome (Outcome*), after the outcome is final: an
	// X.509-SVID counts as a success only once it is recorded in the
	// index.
	SVIDIssued func(kind, outcome string)
	// Signed is called after each signing call with its kind and how long
	// the CA took to sign (and check) the SVID.
	Signed func(kind string, d time.Duration)
	// NodeAttested is called once per AttestNode call with its result
	// (Attest*).
	NodeAttested func(result string)
	// RotateWindow is called when a rotate-now's window is taken, with
	// the window and the cost of one SVID it was computed from.
	RotateWindow func(window, svidCost time.Duration)
	// AdmissionRefused is called for each call admission control refuses,
	// with the kind of call (Calls*) and the bound it was over (Bound*):
	// refusals at the signing bound mean the cores are busy, at the
	// in-flight bound that commits are slow.
	AdmissionRefused func(calls, bound string)
}

// Kinds of call admission control bounds, for NodeMetrics.AdmissionRefused.
const (
	CallsAttestations = "attestations"
	CallsMintBatches  = "mint_batches"
)

// refusals returns the hook a gate of calls counts its refusals with.
func (m NodeMetrics) refusals(calls string) func(bound string) {
	f := m.AdmissionRefused
	if f == nil {
		return nil
	}
	return func(bound string) { f(calls, bound) }
}

// Kinds of SVID, for NodeMetrics.
const (
	SVIDKindWorkload = "workload"
	SVIDKindNode     = "node"
	SVIDKindJWT      = "jwt"
)

// Outcomes of an SVID request, for NodeMetrics.SVIDIssued.
const (
	OutcomeSuccess = "success"
	// OutcomeDenied: the entry is unknown or not the caller's.
	OutcomeDenied = "denied"
	// OutcomeInvalid: a bad CSR or request.
	OutcomeInvalid = "invalid"
	// OutcomeError: signing or recording failed on the CA's side.
	OutcomeError = "error"
)

// Results of a node attestation, for NodeMetrics.NodeAttested.
const (
	AttestSuccess = "success"
	// AttestUnknownToken: the join token is unknown or already used.
	AttestUnknownToken = "unknown_token"
	AttestExpiredToken = "expired_token"
	// AttestInvalid: no token or a bad CSR.
	AttestInvalid = "invalid"
	// AttestRefused: the token's node name belongs to a live node and the
	// token was not created to replace it.
	AttestRefused = "refused"
	AttestError   = "error"
	// AttestBusy: the CA was at its bound of concurrent attestations
	// (Admission) and told the agent when to retry.
	AttestBusy = "busy"
)

func (s *NodeService) issued(kind, outcome string) {
	if f := s.cfg.Metrics.SVIDIssued; f != nil {
		f(kind, outcome)
	}
}

// signed times a signing call started at start.
func (s *NodeService) signed(kind string, start time.Time) {
	if f := s.cfg.Metrics.Signed; f != nil {
		f(kind, time.Since(start))
	}
}

func (s *NodeService) attested(result string) {
	if f := s.cfg.Metrics.NodeAttested; f != nil {
		f(result)
	}
}

// issuedErr counts a single-SVID call (node renewal, JWT-SVID) by the
// status it returns.
func (s *NodeService) issuedErr(kind string, err error) {
	s.issued(kind, outcomeOf(status.Code(err)))
}

// issuedBatch counts a mint batch: each result by its code, except that
// when recording failed (recordErr) nothing was handed out.
func (s *NodeService) issuedBatch(results []*nodev1.MintX509SVIDResult, recordErr error) {
	if s.cfg.Metrics.SVIDIssued == nil {
		return
	}
	for _, r := range results {
		outcome := outcomeOf(codes.Code(r.GetCode()))
		if recordErr != nil && outcome == OutcomeSuccess {
			outcome = OutcomeError
		}
		s.issued(SVIDKindWorkload, outcome)
	}
}

func outcomeOf(c codes.Code) string {
	switch c {
	case codes.OK:
		return OutcomeSuccess
	case codes.NotFound, codes.PermissionDenied, codes.Unauthenticated, codes.ResourceExhausted:
		return OutcomeDenied
	case codes.InvalidArgument:
		return OutcomeInvalid
	default:
		return OutcomeError
	}
}
