package store

import "fmt"

// What other backends (package etcdstore) share with Bolt: the stored form
// of audit records and the rules every backend applies the same way.
// Records other than audit records are stored as JSON of the types in
// store.go, which needs no helper.

// MarshalAudit returns the stored form of r, the binary encoding that
// Bolt keeps in its audit bucket (see auditEncodingV1), so that a log
// copied from one backend to another keeps its bytes.
func MarshalAudit(r *AuditRecord) []byte { return encodeAudit(r) }

// UnmarshalAudit decodes what MarshalAudit returned. Anything else is
// ErrCorrupt.
func UnmarshalAudit(data []byte) (*AuditRecord, error) {
	r, ok := decodeAuditValue(data)
	if !ok {
		return nil, fmt.Errorf("decoding audit record: %w", ErrCorrupt)
	}
	return r, nil
}

// NormalizeEntry returns a copy of e in the form every backend stores:
// selectors sorted and without duplicates. It never changes e.
func NormalizeEntry(e *Entry) *Entry { return normalizeEntry(e) }

// IsReservedMeta reports whether key is one of the meta keys a backend
// keeps for itself (schema version, revision counter, audit head), which
// Tx.PutMeta refuses.
func IsReservedMeta(key string) bool {
	return key == metaSchemaVersion || key == metaRevision || key == metaAuditHead
}
