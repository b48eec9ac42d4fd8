package audit

import (
	"errors"
	"fmt"
)

var (
	// ErrInvalidRecord: Append or Checkpoint refused a record (see
	// Append).
	ErrInvalidRecord = errors.New("audit: invalid record")
	// ErrNotExported: Prune found no complete export to prune up to.
	ErrNotExported = errors.New("audit: nothing has been exported")

	// The failures of Verify, in a *VerifyError.

	// ErrMalformed: a line is not a record in the export form.
	ErrMalformed = errors.New("audit: malformed record")
	// ErrHashMismatch: a record's fields do not hash to its hash: it was
	// edited.
	ErrHashMismatch = errors.New("audit: hash mismatch")
	// ErrBrokenChain: a record's prev_hash is not its predecessor's hash:
	// a record was edited (and rehashed), inserted or replaced.
	ErrBrokenChain = errors.New("audit: broken chain")
	// ErrMissing: records are missing between two records or at the start.
	ErrMissing = errors.New("audit: missing records")
	// ErrOrder: seqs do not increase: records were moved or duplicated.
	ErrOrder = errors.New("audit: records out of order")
	// ErrTruncated: the export does not end with a signed checkpoint, or
	// the log does not reach its head.
	ErrTruncated = errors.New("audit: truncated")
	// ErrSignature: a checkpoint's signature does not verify.
	ErrSignature = errors.New("audit: bad checkpoint signature")
	// ErrUnknownKey: the final checkpoint is signed by a key the verifier
	// was not given.
	ErrUnknownKey = errors.New("audit: unknown checkpoint key")
)

// VerifyError is the first bad record Verify or VerifyStore found. Err is
// one of the sentinels above, for errors.Is.
type VerifyError struct {
	// Line is the 1-based line of the export (the row's first line in a
	// CSV export); 0 for VerifyStore.
	Line int
	// Seq is the bad record's seq; 0 when the line did not parse.
	Seq uint64
	// Missing, for ErrMissing, is the first seq that is missing (Seq is
	// then the record found after the gap, or the missing one itself when
	// nothing follows); 0 when unknown.
	Missing uint64
	// Err is the kind of failure.
	Err error
	// Reason says what is wrong, in words.
	Reason string
}

func (e *VerifyError) Error() string {
	var where string
	switch {
	case e.Seq != 0 && e.Line != 0:
		where = fmt.Sprintf("record seq %d (line %d)", e.Seq, e.Line)
	case e.Seq != 0:
		where = fmt.Sprintf("record seq %d", e.Seq)
	case e.Line != 0:
		where = fmt.Sprintf("line %d", e.Line)
	default:
		return "audit: " + e.Reason
	}
	return "audit: " + where + ": " + e.Reason
}

func (e *VerifyError) Unwrap() error { return e.Err }

// FirstBad is the first seq the error is about: the first missing record
// for a gap, else the bad record.
func (e *VerifyError) FirstBad() uint64 {
	if e.Missing != 0 {
		return e.Missing
	}
	return e.Seq
}

// wrapErr prefixes err with the package name; nil stays nil.
func wrapErr(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("audit: %w", err)
}

// invalidf is an ErrInvalidRecord saying why.
func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidRecord, fmt.Sprintf(format, args...))
}
