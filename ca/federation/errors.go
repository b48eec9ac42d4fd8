package federation

import (
	"errors"
	"fmt"
)

// Sentinels callers act on. The refusals (ErrWrongEndpointID,
// ErrWrongTrustDomain, ErrSequenceBackwards, ErrMalformedBundle) are
// logged and audited, and the last good bundle is kept; IsRefusal tells
// them from an endpoint that is merely unreachable.
var (
	// ErrNotFound: no relationship with that trust domain.
	ErrNotFound = errors.New("federation: no such federation relationship")
	// ErrAlreadyExists: the trust domain is federated already.
	ErrAlreadyExists = errors.New("federation: the trust domain is federated already")
	// ErrWrongEndpointID: an https_spiffe endpoint presented another
	// SPIFFE ID than the relationship names.
	ErrWrongEndpointID = errors.New("federation: the bundle endpoint presented the wrong SPIFFE ID")
	// ErrWrongTrustDomain: the bundle's authorities belong to another
	// trust domain.
	ErrWrongTrustDomain = errors.New("federation: the bundle is for another trust domain")
	// ErrSequenceBackwards: the bundle's spiffe_sequence is below the
	// last good bundle's.
	ErrSequenceBackwards = errors.New("federation: the bundle's spiffe_sequence went backwards")
	// ErrMalformedBundle: the endpoint answered something that is not a
	// usable SPIFFE bundle.
	ErrMalformedBundle = errors.New("federation: the endpoint answered a malformed bundle")
)

// Refusal reasons, the DetailReason of a refused bundle's audit record.
const (
	ReasonWrongEndpointID  = "wrong_endpoint_spiffe_id"
	ReasonWrongTrustDomain = "wrong_trust_domain"
	ReasonSequenceBackward = "sequence_backwards"
	ReasonMalformed        = "malformed_bundle"
)

// refusalReason returns the audit reason of a refusal, or "" when err is
// no refusal (an unreachable endpoint, a cancelled fetch).
func refusalReason(err error) string {
	switch {
	case errors.Is(err, ErrWrongEndpointID):
		return ReasonWrongEndpointID
	case errors.Is(err, ErrWrongTrustDomain):
		return ReasonWrongTrustDomain
	case errors.Is(err, ErrSequenceBackwards):
		return ReasonSequenceBackward
	case errors.Is(err, ErrMalformedBundle):
		return ReasonMalformed
	}
	return ""
}

// IsRefusal reports whether err is a refused bundle (as opposed to an
// endpoint that could not be reached).
func IsRefusal(err error) bool { return refusalReason(err) != "" }

// InvalidError is an operator's input mistake; its message names the
// field.
type InvalidError struct {
	Field string
	Value string
	Msg   string
}

func (e *InvalidError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("%s: %s", e.Field, e.Msg)
	}
	return fmt.Sprintf("%s %q: %s", e.Field, e.Value, e.Msg)
}

func invalid(field, value, format string, args ...any) error {
	return &InvalidError{Field: field, Value: value, Msg: fmt.Sprintf(format, args...)}
}

// IsInvalid reports whether err is an input mistake.
func IsInvalid(err error) bool {
	var e *InvalidError
	return errors.As(err, &e)
}

func wrapErr(format string, args ...any) error {
	return fmt.Errorf("federation: "+format, args...)
}

// FetchError is a bundle endpoint that could not be reached or did not
// answer a bundle (connection refused, TLS failure other than a wrong
// SPIFFE ID, an HTTP error status). The last good bundle is kept and the
// fetch retried with backoff; it is logged, not audited.
type FetchError struct {
	URL string
	Err error
}

func (e *FetchError) Error() string { return fmt.Sprintf("fetching %s: %v", e.URL, e.Err) }
func (e *FetchError) Unwrap() error { return e.Err }
