package store

import "fmt"

// What other backends (package etcdstore) share with Bolt: the stored form
// of audit records and the rules every backend applies the same way.
// Records other than audit records are stored as JSON of the types in
// store.go, which needs no helper: Bolt's binary SVID index records
// (encodeSVID) are Bolt's alone, so that etcd replicas of an older signet
// keep reading what a newer one writes.

// MarshalAudit returns the stored form of r in other backends, the binary
// encoding that Bolt kept in its audit bucket until store schema 5
// (auditEncodingV1). Bolt now packs hex (auditEncodingV2); an etcd
// replica of an older signet, upgraded one at a time, still reads what a
// newer one writes.
func MarshalAudit(r *AuditRecord) []byte { return encodeAuditAs(r, auditEncodingV1) }

// UnmarshalAudit decodes what MarshalAudit returned, or a record of Bolt's
// audit bucket. Anything else is ErrCorrupt.
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
