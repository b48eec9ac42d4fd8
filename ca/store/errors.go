package store

import "errors"

var (
	// ErrNotFound: the record does not exist.
	ErrNotFound = errors.New("store: not found")
	// ErrAlreadyExists: a record with that key (or, for entries, the same
	// SPIFFE ID, parent and selectors) exists.
	ErrAlreadyExists = errors.New("store: already exists")
	// ErrReadOnly: a write was attempted in a View transaction.
	ErrReadOnly = errors.New("store: read-only transaction")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("store: closed")
	// ErrConflict: a write does not follow the state it was meant for:
	// AppendAudit of a record whose seq or prev hash is not the head's.
	ErrConflict = errors.New("store: conflict")
	// ErrCorrupt: a stored record could not be decoded.
	ErrCorrupt = errors.New("store: corrupt record")
	// ErrTooLarge: a record is larger than MaxRecordBytes. Nothing was
	// written; callers validate input so that this stays a backstop.
	ErrTooLarge = errors.New("store: record too large")
)

// MaxRecordBytes bounds one stored record (its JSON encoding): far above
// any record signet writes (an entry at its validation limits is about
// 20 KiB), a page or so for bbolt, and well inside etcd's request limit
// (1.5 MiB), so a backend never refuses what another accepts.
const MaxRecordBytes = 64 << 10

// ErrUnavailable: the backend could not be reached or had no quorum
// (etcd). Treat the operation as failed; a commit cut short this way may
// still have happened, which the CA's writes tolerate (see package
// etcdstore). Retrying later may work.
var ErrUnavailable = errors.New("store: unavailable")

// ErrLocked: Open found the file held by another process (a running
// server): nothing was read or written.
var ErrLocked = errors.New("store: held by another process")
