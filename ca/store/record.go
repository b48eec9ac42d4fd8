package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"slices"
)

// encodeRecord is the on-disk encoding of every record: JSON with the tags
// of store.go, so a file can be read with generic tools.
func encodeRecord(v any) ([]byte, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encoding record: %w", err)
	}
	return data, nil
}

// decodeRecord decodes a record read from bucket under key into v, a
// pointer to a record type. Anything but a JSON object that fits v is
// reported as ErrCorrupt, naming where the bad bytes are so an operator can
// find them.
func decodeRecord(bucket, key, data []byte, v any) error {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return fmt.Errorf("decoding %s record %q: %w: not a JSON object", bucket, key, ErrCorrupt)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decoding %s record %q: %w: %v", bucket, key, ErrCorrupt, err)
	}
	return nil
}

// normalizeEntry returns a copy of e with its selectors sorted and without
// duplicates, the form every entry is stored in. It never changes e.
func normalizeEntry(e *Entry) *Entry {
	n := *e
	n.Selectors = slices.Clone(e.Selectors)
	slices.Sort(n.Selectors)
	n.Selectors = slices.Compact(n.Selectors)
	return &n
}

// entryKey identifies what an entry grants: its SPIFFE ID, parent ID and
// selector set (n must be normalized). It is a SHA-256 so that any number
// of selectors fits in a bbolt key; the hashed JSON array keeps fields
// apart whatever bytes they contain.
func entryKey(n *Entry) []byte {
	parts := append([]string{n.SPIFFEID, n.ParentID}, n.Selectors...)
	data, _ := json.Marshal(parts) // a []string always encodes
	sum := sha256.Sum256(data)
	return sum[:]
}

// parentPrefix is the start of every bucketEntriesByParent key of a parent.
// SPIFFE IDs cannot contain NUL, so one parent's prefix never matches
// another's (ListEntries checks ParentID anyway).
func parentPrefix(parentID string) []byte {
	return append([]byte(parentID), 0)
}

// parentKey is n's key in bucketEntriesByParent.
func parentKey(n *Entry) []byte {
	return append(parentPrefix(n.ParentID), n.ID...)
}
