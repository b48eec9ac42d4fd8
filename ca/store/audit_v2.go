package store

import (
	"encoding/binary"
	"encoding/hex"
)

// auditEncodingV2 is the first byte of an audit record as Bolt stores it
// since store schema 5. It is auditEncodingV1 with the hex packed: most
// of an issuance's record is lower-case hex (its hash and the previous
// one, the serial, the key and CSR digests, the authority ID), two bytes
// a byte of data, and the audit log is the store's largest bucket. A
// string is a uvarint of its length shifted left by one, with the low bit
// set when the string is lower-case hex of even length, stored as the
// bytes it spells (half its length); otherwise its bytes follow. A record
// decodes to the same strings, so the hashes over it (package audit's
// canonical form) are those of the record as written. Records written in
// auditEncodingV1 stay readable, and MarshalAudit, what other backends
// store, keeps writing it.
const auditEncodingV2 = 2

func appendAuditStringV2(b []byte, s string) []byte {
	if isPackedHex(s) {
		b = binary.AppendUvarint(b, uint64(len(s))<<1|1)
		b, _ = hex.AppendDecode(b, []byte(s)) // isPackedHex checked every byte
		return b
	}
	b = binary.AppendUvarint(b, uint64(len(s))<<1)
	return append(b, s...)
}

// isPackedHex reports whether s is non-empty lower-case hex of even
// length: what hex.EncodeToString gives back from its bytes.
func isPackedHex(s string) bool {
	if len(s) == 0 || len(s)%2 != 0 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// strV2 reads a string of auditEncodingV2.
func (d *auditDecoder) strV2() string {
	h := d.uvarint()
	n := h >> 1
	if h&1 == 0 {
		if n > uint64(len(d.s)) {
			d.bad, d.s = true, ""
			return ""
		}
		s := d.s[:n]
		d.s = d.s[n:]
		return s
	}
	if n == 0 || n%2 != 0 || n/2 > uint64(len(d.s)) {
		d.bad, d.s = true, ""
		return ""
	}
	s := hex.EncodeToString([]byte(d.s[:n/2]))
	d.s = d.s[n/2:]
	return s
}
