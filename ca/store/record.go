package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"
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

// encodeSVID is encodeRecord for an SVIDRecord, the record written on
// every issuance: the same bytes json.Marshal writes (the fields in
// order, times in RFC 3339 with nanoseconds, entry_id omitted when
// empty), without reflection.
func encodeSVID(r *SVIDRecord) []byte {
	b := make([]byte, 0, 64+len(r.Serial)+len(r.SPIFFEID)+len(r.NodeID)+len(r.EntryID)+len(r.AuthorityID)+2*len(time.RFC3339Nano))
	b = append(b, `{"serial":`...)
	b = appendJSONString(b, r.Serial)
	b = append(b, `,"spiffe_id":`...)
	b = appendJSONString(b, r.SPIFFEID)
	b = append(b, `,"node_id":`...)
	b = appendJSONString(b, r.NodeID)
	if r.EntryID != "" {
		b = append(b, `,"entry_id":`...)
		b = appendJSONString(b, r.EntryID)
	}
	b = append(b, `,"authority_id":`...)
	b = appendJSONString(b, r.AuthorityID)
	b = append(b, `,"not_before":"`...)
	b = r.NotBefore.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","not_after":"`...)
	b = r.NotAfter.AppendFormat(b, time.RFC3339Nano)
	return append(b, `"}`...)
}

// appendJSONString appends s as a JSON string the way encoding/json
// writes it (HTML-safe escaping, invalid UTF-8 as U+FFFD).
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
