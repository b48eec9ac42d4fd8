package store

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"time"
)

// svidEncodingBinary is the first byte of an SVID index record as Bolt
// stores it since store schema 6; a record written before is JSON (it
// starts with '{') and stays readable. The index holds a record per SVID
// issued in the last day or so, and its pages are part of the CA's
// resident memory: in JSON, field names, quotes, hex serials and IDs and
// RFC 3339 times were more than half of each record.
//
// After the byte come Serial and NodeID; SPIFFEID as the uvarint count of
// its leading bytes that are NodeID's too (the trust domain, or all of a
// node SVID's ID) followed by the rest; EntryID and AuthorityID; then
// NotBefore as varint Unix seconds and uvarint nanoseconds, and NotAfter
// as varint seconds after NotBefore's and uvarint nanoseconds. Times are
// read back in UTC. A string is a uvarint, its length shifted left by two
// with its form in the low bits (svidStr*), then its bytes in that form.
const svidEncodingBinary = 1

// The forms of a string in svidEncodingBinary.
const (
	// svidStrRaw: the string's bytes.
	svidStrRaw = 0
	// svidStrHex: non-empty lower-case hex of even length (serials,
	// authority IDs), as the bytes it spells: half its length.
	svidStrHex = 1
	// svidStrUUID: a UUID in lower-case 8-4-4-4-12 form (entry IDs), as
	// the 16 bytes it spells.
	svidStrUUID = 2
)

// uuidLen is the length of a UUID's text form; uuidDashes are where its
// dashes are.
const uuidLen = 36

var uuidDashes = [...]int{8, 13, 18, 23}

// encodeSVID is the form Bolt stores an SVID index record in. It never
// fails: every string and time has an encoding.
func encodeSVID(r *SVIDRecord) []byte {
	shared := 0
	for shared < len(r.SPIFFEID) && shared < len(r.NodeID) && r.SPIFFEID[shared] == r.NodeID[shared] {
		shared++
	}
	n := 1 + 6*binary.MaxVarintLen64 + 4*binary.MaxVarintLen64
	n += len(r.Serial) + len(r.NodeID) + len(r.SPIFFEID) - shared + len(r.EntryID) + len(r.AuthorityID)
	b := make([]byte, 0, n)
	b = append(b, svidEncodingBinary)
	b = appendSVIDString(b, r.Serial)
	b = appendSVIDString(b, r.NodeID)
	b = binary.AppendUvarint(b, uint64(shared))
	b = appendSVIDString(b, r.SPIFFEID[shared:])
	b = appendSVIDString(b, r.EntryID)
	b = appendSVIDString(b, r.AuthorityID)
	nb := r.NotBefore.Unix()
	b = binary.AppendVarint(b, nb)
	b = binary.AppendUvarint(b, uint64(r.NotBefore.Nanosecond()))
	b = binary.AppendVarint(b, r.NotAfter.Unix()-nb) // wraps back on decoding if it overflows
	return binary.AppendUvarint(b, uint64(r.NotAfter.Nanosecond()))
}

func appendSVIDString(b []byte, s string) []byte {
	switch {
	case isPackedHex(s):
		b = binary.AppendUvarint(b, uint64(len(s))<<2|svidStrHex)
		b, _ = hex.AppendDecode(b, []byte(s)) // isPackedHex checked every byte
		return b
	case isUUID(s):
		b = binary.AppendUvarint(b, uint64(len(s))<<2|svidStrUUID)
		prev := 0
		for _, d := range uuidDashes {
			b, _ = hex.AppendDecode(b, []byte(s[prev:d]))
			prev = d + 1
		}
		b, _ = hex.AppendDecode(b, []byte(s[prev:]))
		return b
	}
	b = binary.AppendUvarint(b, uint64(len(s))<<2|svidStrRaw)
	return append(b, s...)
}

// isUUID reports whether s is a UUID as hex.EncodeToString would spell
// its groups: lower-case, dashes in their places.
func isUUID(s string) bool {
	if len(s) != uuidLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if i == uuidDashes[0] || i == uuidDashes[1] || i == uuidDashes[2] || i == uuidDashes[3] {
			if c != '-' {
				return false
			}
			continue
		}
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// decodeSVID decodes an SVID index record stored under key, in either
// encoding, into r. Anything else is ErrCorrupt.
func decodeSVID(key, data []byte, r *SVIDRecord) error {
	if len(data) == 0 || data[0] != svidEncodingBinary {
		return decodeRecord(bucketSVIDs, key, data, r)
	}
	if !decodeSVIDBinary(data, r) {
		return fmt.Errorf("decoding %s record %q: %w: bad binary record", bucketSVIDs, key, ErrCorrupt)
	}
	return nil
}

// decodeSVIDBinary decodes a record of svidEncodingBinary; false when it
// is not one.
func decodeSVIDBinary(data []byte, r *SVIDRecord) bool {
	// One copy of the value, which the raw strings share.
	d := auditDecoder{s: string(data[1:])}
	r.Serial = d.strSVID()
	r.NodeID = d.strSVID()
	shared := d.uvarint()
	if shared > uint64(len(r.NodeID)) {
		return false
	}
	rest := d.strSVID()
	if shared == 0 {
		r.SPIFFEID = rest
	} else if rest == "" {
		r.SPIFFEID = r.NodeID[:shared]
	} else {
		r.SPIFFEID = r.NodeID[:shared] + rest
	}
	r.EntryID = d.strSVID()
	r.AuthorityID = d.strSVID()
	nb, nbNanos := d.varint(), d.uvarint()
	ttl, naNanos := d.varint(), d.uvarint()
	if d.bad || d.s != "" || nbNanos >= uint64(time.Second) || naNanos >= uint64(time.Second) {
		return false
	}
	r.NotBefore = time.Unix(nb, int64(nbNanos)).UTC()
	r.NotAfter = time.Unix(nb+ttl, int64(naNanos)).UTC()
	return true
}

// strSVID reads a string of svidEncodingBinary.
func (d *auditDecoder) strSVID() string {
	h := d.uvarint()
	n, form := h>>2, h&3
	var packed uint64
	switch {
	case form == svidStrRaw:
		packed = n
	case form == svidStrHex && n != 0 && n%2 == 0:
		packed = n / 2
	case form == svidStrUUID && n == uuidLen:
		packed = 16
	default:
		d.bad, d.s = true, ""
		return ""
	}
	if packed > uint64(len(d.s)) {
		d.bad, d.s = true, ""
		return ""
	}
	p := d.s[:packed]
	d.s = d.s[packed:]
	switch form {
	case svidStrHex:
		return hex.EncodeToString([]byte(p))
	case svidStrUUID:
		var u [uuidLen]byte
		hex.Encode(u[0:8], []byte(p[0:4]))
		hex.Encode(u[9:13], []byte(p[4:6]))
		hex.Encode(u[14:18], []byte(p[6:8]))
		hex.Encode(u[19:23], []byte(p[8:10]))
		hex.Encode(u[24:], []byte(p[10:]))
		u[8], u[13], u[18], u[23] = '-', '-', '-', '-'
		return string(u[:])
	}
	return p
}
